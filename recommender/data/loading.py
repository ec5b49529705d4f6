"""Validating input against the data contract (:mod:`recommender.data.schema`).

Files are read into Arrow by :mod:`recommender.data.reading` (CSV with every column as text, so a stray value
cannot abort the read; Parquet as typed), each row numbered, then checked and cast in one DuckDB query. Bad rows
are skipped and counted with a sample naming row, field and value; good rows are kept. A missing column raises
:class:`DataError` with one clear sentence. Row numbers count data rows from 1 (a CSV header line is not counted).
The same rules check live events at ``POST /events``, so a file and the API accept exactly the same events.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recommender.data.clock import TimeWindow
from recommender.data.errors import DataError
from recommender.data.reading import ROW, bad_rows_of, shorten
from recommender.data.schema import (
    EVENT_REQUIRED,
    EVENT_SCHEMA,
    ITEM_REQUIRED,
    ITEM_SCHEMA,
    MAX_ID_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
)

ID_PATTERN = r"^[A-Za-z0-9._:@+\-]+$"
"""Characters allowed in user and item ids, here and in the API (ids become part of cache keys)."""

EVENT_ALIASES: dict[str, str] = {
    "view": "view",
    "page_view": "view",
    "pageview": "view",
    "detail": "view",
    "cart": "cart",
    "add_to_cart": "cart",
    "addtocart": "cart",
    "purchase": "purchase",
    "transaction": "purchase",
    "order": "purchase",
    "buy": "purchase",
    "return": "return",
    "refund": "return",
    "impression": "impression",
    "click": "click",
}
US_DATE_FORMATS = "['%m/%d/%Y %H:%M', '%m/%d/%Y %H:%M:%S', '%m/%d/%Y']"
"""Accepted besides ISO 8601 and epoch numbers: month/day/year, as in spreadsheet exports."""
EXCLUDED = "_excluded"
SAMPLE_SIZE = 10


_local = threading.local()
# Every thread's connection is also referenced here, so a thread that ends never runs DuckDB's destructor itself: one
# that ends while the interpreter shuts down is unwound by force, and the destructor aborts the process then
# ("terminate called ... FATAL: exception not rethrown", exit 134 after a test run with idle worker threads).
_connections: list[duckdb.DuckDBPyConnection] = []


def connect() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection, with the session time zone UTC so zone-less times never follow the host's.

    Opening an in-memory database costs tens of milliseconds, which would dominate validating a small batch of
    live events, so each thread opens one and reuses it. Callers register their tables under fixed names and
    replace them on the next call.
    """
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        _connections.append(con)
        con.execute("SET TimeZone = 'UTC'")
    return con


@dataclass(frozen=True)
class BadRow:
    row: int
    field: str
    value: str | None
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}={self.value!r} {self.reason}"


@dataclass
class LoadReport:
    """What happened to the rows of one input file."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    rows_bad: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    sample: list[BadRow] = field(default_factory=list)

    @property
    def bad_share(self) -> float:
        checked = self.rows_read - sum(self.excluded.values())
        return self.rows_bad / checked if checked else 0.0

    def check(self, max_bad_share: float) -> None:
        """Raise DataError when the share of bad rows exceeds ``max_bad_share``."""
        if self.rows_bad and self.bad_share > max_bad_share:
            sample = "; ".join(str(b) for b in self.sample[:3])
            raise DataError(
                f"{self.source}: {self.rows_bad} of {self.rows_read - sum(self.excluded.values())} rows are bad "
                f"({self.bad_share:.1%}, more than the allowed {max_bad_share:.1%}), e.g. {sample}."
            )


def require_columns(table: pa.Table, required: tuple[str, ...] | list[str], source: str) -> None:
    """Raise DataError naming the first missing column."""
    missing = [c for c in required if c not in table.column_names]
    if missing:
        found = shorten(", ".join(c for c in table.column_names if c != ROW))
        raise DataError(f"{source} has no column '{missing[0]}' (required: {', '.join(required)}; found: {found}).")


def _text(col: str, present: bool) -> str:
    return f"NULLIF(TRIM(CAST(\"{col}\" AS VARCHAR)), '')" if present else "CAST(NULL AS VARCHAR)"


def _timestamp_expr(col: str, arrow_type: pa.DataType | None) -> str:
    """SQL turning a text or timestamp column into a UTC timestamp without zone (NULL when absent or unparsable)."""
    if arrow_type is not None and pa.types.is_timestamp(arrow_type):
        return f"timezone('UTC', \"{col}\")" if arrow_type.tz else f'CAST("{col}" AS TIMESTAMP)'
    raw = _text(col, arrow_type is not None)
    # Epoch seconds (10 digits) or milliseconds (13 digits), else any ISO-like text with optional zone.
    return (
        f"CASE WHEN regexp_full_match({raw}, '\\d{{9,11}}') THEN to_timestamp(CAST({raw} AS DOUBLE))::TIMESTAMP "
        f"WHEN regexp_full_match({raw}, '\\d{{12,13}}') THEN to_timestamp(CAST({raw} AS DOUBLE) / 1000)::TIMESTAMP "
        f"ELSE coalesce(timezone('UTC', TRY_CAST({raw} AS TIMESTAMPTZ)), try_strptime({raw}, {US_DATE_FORMATS})) END"
    )


def _excluded_counts(con: duckdb.DuckDBPyConnection, has_excluded: bool) -> dict[str, int]:
    if not has_excluded:
        return {}
    rows = con.execute(
        f"SELECT {EXCLUDED}, count(*) FROM raw WHERE {EXCLUDED} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    return {reason: int(n) for reason, n in rows}


def _finish(
    con: duckdb.DuckDBPyConnection,
    report: LoadReport,
    checked_sql: str,
    select_good: str,
    schema: pa.Schema,
    sample_size: int = SAMPLE_SIZE,
    sort: bool = True,
) -> pa.Table:
    """Run ``checked_sql`` (rows with an ``err`` list [field, reason, value]) once; count and sample the bad rows
    and return the good ones cast to ``schema``, in input order.

    Without ``sort`` the query must keep its input's order by itself (DuckDB keeps insertion order through
    projections and filters by default, not through window functions): sorting ten million events by row number
    costs about as much memory again as the events themselves."""
    order = f" ORDER BY {ROW}" if sort else ""
    table = con.sql(f"SELECT {select_good}, {ROW}, err FROM ({checked_sql}){order}").to_arrow_table()
    bad_mask = pc.is_valid(table["err"])
    bad = table.filter(bad_mask).select([ROW, "err"])
    if bad.num_rows:
        fields, reasons, values = (pc.list_element(bad["err"], k) for k in range(3))
        counts = pc.value_counts(pc.binary_join_element_wise(fields, reasons, " ")).to_pylist()
        for entry in sorted(counts, key=lambda c: -c["counts"]):
            report.bad_by_reason[entry["values"]] = int(entry["counts"])
        report.rows_bad = bad.num_rows
        head = slice(0, sample_size)
        report.sample = [
            BadRow(int(r), f, v, why)
            for r, f, why, v in zip(
                bad[ROW].to_pylist()[head],
                fields.to_pylist()[head],
                reasons.to_pylist()[head],
                [shorten(v) for v in values.to_pylist()[head]],
            )
        ]
    good = table.filter(pc.invert(bad_mask)).select(schema.names)
    report.rows_kept = good.num_rows
    return good.cast(schema)


def _read_bad_rows(table: pa.Table, report: LoadReport, sample_size: int) -> None:
    """Add the lines skipped while reading (wrong number of fields, not UTF-8) to the report's counts and sample."""
    rows = [BadRow(int(r), f, v, why) for r, f, v, why in bad_rows_of(table)]
    if rows:
        report.rows_read += len(rows)
        report.rows_bad += len(rows)
        for bad in rows:
            reason = f"{bad.field} {bad.reason}"
            report.bad_by_reason[reason] = report.bad_by_reason.get(reason, 0) + 1
        report.sample = sorted(report.sample + rows, key=lambda b: b.row)[:sample_size]


def _start(
    raw: pa.Table, source: str, required: tuple[str, ...]
) -> tuple[duckdb.DuckDBPyConnection, LoadReport, set[str], str]:
    """Common start of a validation: required columns, the report with rows excluded by format rules, the
    connection with ``raw`` registered, the present columns and the WHERE clause skipping excluded rows."""
    require_columns(raw, required, source)
    report = LoadReport(source=source, rows_read=raw.num_rows)
    has = set(raw.column_names)
    con = connect()
    con.register("raw", raw)
    report.excluded = _excluded_counts(con, EXCLUDED in has)
    return con, report, has, f"WHERE {EXCLUDED} IS NULL" if EXCLUDED in has else ""


def _time_checks(name: str, ts: str, raw: str, window: TimeWindow) -> str:
    """CASE branches flagging a time outside the plausible window."""
    earliest, latest = window.sql_literals()
    return (
        f"WHEN {ts} > {latest} THEN ['{name}', '{window.too_late()}', {raw}] "
        f"WHEN {ts} < {earliest} THEN ['{name}', '{window.too_early()}', {raw}]"
    )


def _amount_checks(name: str, value: str, raw: str, bound: float, positive: bool) -> str:
    """CASE branches for a number: parsable, positive (or non-negative), finite and at most ``bound``."""
    low, sign = (f"{value} <= 0", "is not positive") if positive else (f"{value} < 0", "is negative")
    return (
        f"WHEN {raw} IS NOT NULL AND ({value} IS NULL OR isnan({value})) THEN ['{name}', 'is not a number', {raw}] "
        f"WHEN {low} THEN ['{name}', '{sign}', {raw}] "
        f"WHEN {value} > {bound:.0f} THEN ['{name}', 'is larger than {bound:,.0f}', {raw}]"
    )


def _id_checks(name: str, value: str) -> str:
    return (
        f"WHEN {value} IS NULL THEN ['{name}', 'is empty', {value}] "
        f"WHEN length({value}) > {MAX_ID_LENGTH} THEN ['{name}', 'is longer than {MAX_ID_LENGTH} characters', {value}] "
        f"WHEN NOT regexp_full_match({value}, '{ID_PATTERN}') "
        f"THEN ['{name}', 'has characters outside A-Z a-z 0-9 . _ : @ + -', {value}]"
    )


def _text_checks(name: str, value: str) -> str:
    longer = f"is longer than {MAX_TEXT_LENGTH} characters"
    return f"WHEN length({value}) > {MAX_TEXT_LENGTH} THEN ['{name}', '{longer}', {value}]"


def validate_events(
    raw: pa.Table, source: str, sample_size: int = SAMPLE_SIZE, window: TimeWindow | None = None
) -> tuple[pa.Table, LoadReport]:
    """Check and cast events in generic column names; return the good rows (EVENT_SCHEMA) and a report whose
    sample holds the first ``sample_size`` bad rows. Times must fall in ``window`` (default: up to the wall clock
    plus the default skew)."""
    window = window or TimeWindow.ending_now()
    con, report, has, where = _start(raw, source, EVENT_REQUIRED)
    aliases = ", ".join(f"'{k}': '{v}'" for k, v in EVENT_ALIASES.items())
    ts_raw = _text("timestamp", True)
    checked = f"""
    WITH s AS (
      SELECT {ROW}, {_text("user_id", True)} AS u, {_text("item_id", True)} AS i,
             {_text("event_type", True)} AS e_raw, MAP {{{aliases}}}[lower({_text("event_type", True)})] AS e,
             {ts_raw} AS ts_raw, {_timestamp_expr("timestamp", raw.schema.field("timestamp").type)} AS ts,
             {_text("quantity", "quantity" in has)} AS q_raw, TRY_CAST(q_raw AS DOUBLE) AS q,
             {_text("price", "price" in has)} AS p_raw, TRY_CAST(p_raw AS DOUBLE) AS p,
             {_text("order_id", "order_id" in has)} AS o
      FROM raw {where})
    SELECT *, CASE
      {_id_checks("user_id", "u")}
      {_id_checks("item_id", "i")}
      WHEN e IS NULL THEN ['event_type', 'is not one of view, cart, purchase, return, impression, click', e_raw]
      WHEN ts IS NULL THEN ['timestamp', 'is not a date-time', ts_raw]
      {_time_checks("timestamp", "ts", "ts_raw", window)}
      {_amount_checks("quantity", "q", "q_raw", MAX_QUANTITY, positive=True)}
      {_amount_checks("price", "p", "p_raw", MAX_PRICE, positive=False)}
      {_text_checks("order_id", "o")}
    END AS err FROM s"""
    select = (
        "u AS user_id, i AS item_id, e AS event_type, ts AS timestamp, coalesce(q, 1.0) AS quantity, p AS price, "
        "CASE WHEN o IS NULL AND e IN ('purchase', 'return') THEN u || '|' || strftime(ts, '%Y-%m-%dT%H:%M:%S') "
        "ELSE o END AS order_id"
    )
    events = _finish(con, report, checked, select, EVENT_SCHEMA, sample_size, sort=False)  # projections only
    _read_bad_rows(raw, report, sample_size)
    return events, report


def validate_items(raw: pa.Table, source: str, window: TimeWindow | None = None) -> tuple[pa.Table, LoadReport]:
    """Check and cast a catalogue in generic column names; duplicates keep their first row. ``created_at`` must fall
    in ``window`` (default: up to the wall clock plus the default skew)."""
    window = window or TimeWindow.ending_now()
    con, report, has, where = _start(raw, source, ITEM_REQUIRED)
    created_type = raw.schema.field("created_at").type if "created_at" in has else None
    checked = f"""
    WITH s AS (
      SELECT {ROW}, {_text("item_id", True)} AS i, {_text("title", "title" in has)} AS t,
             {_text("category", "category" in has)} AS c,
             {_text("price", "price" in has)} AS p_raw, TRY_CAST(p_raw AS DOUBLE) AS p,
             {_text("available", "available" in has)} AS a_raw, TRY_CAST(a_raw AS BOOLEAN) AS a,
             {_text("created_at", "created_at" in has)} AS ca_raw, {_timestamp_expr("created_at", created_type)} AS ca
      FROM raw {where}),
    e AS (
      SELECT *, CASE
        {_id_checks("item_id", "i")}
        {_text_checks("title", "t")}
        {_text_checks("category", "c")}
        {_amount_checks("price", "p", "p_raw", MAX_PRICE, positive=False)}
        WHEN a_raw IS NOT NULL AND a IS NULL THEN ['available', 'is not true/false', a_raw]
        WHEN ca_raw IS NOT NULL AND ca IS NULL THEN ['created_at', 'is not a date-time', ca_raw]
        {_time_checks("created_at", "ca", "ca_raw", window)}
      END AS own_err FROM s)
    SELECT *, coalesce(own_err, CASE
      WHEN row_number() OVER (PARTITION BY i, own_err IS NULL ORDER BY {ROW}) > 1
      THEN ['item_id', 'appears again (the first valid row is kept)', i] END) AS err
    FROM e"""
    select = "i AS item_id, t AS title, c AS category, p AS price, coalesce(a, true) AS available, ca AS created_at"
    items = _finish(con, report, checked, select, ITEM_SCHEMA)
    _read_bad_rows(raw, report, SAMPLE_SIZE)
    return items, report


def latest(value: str, at: str = "ts") -> str:
    """SQL for ``value`` at the newest ``at`` among the rows where both are set, ties by the lowest value: DuckDB's
    ``arg_max`` skips the same NULLs but picks any of the tied rows, so a derived catalogue changed between runs."""
    return f"first({value} ORDER BY {at} DESC, {value}) FILTER (WHERE {value} IS NOT NULL AND {at} IS NOT NULL)"


def complete_catalogue(events: pa.Table, items: pa.Table) -> pa.Table:
    """Every item of the catalogue or the events, with created_at defaulting to first seen and price to last seen."""
    con = connect()
    con.register("ev", events)
    con.register("cat", items)
    out = con.sql(
        f"""
        WITH seen AS (
          SELECT item_id, min(timestamp) AS first_seen,
                 {latest("price", "timestamp")} AS last_price
          FROM ev GROUP BY item_id)
        SELECT coalesce(cat.item_id, seen.item_id) AS item_id, cat.title, cat.category,
               coalesce(cat.price, seen.last_price) AS price, coalesce(cat.available, true) AS available,
               coalesce(cat.created_at, seen.first_seen) AS created_at
        FROM cat FULL OUTER JOIN seen USING (item_id)
        ORDER BY item_id
        """
    ).to_arrow_table()
    return out.cast(ITEM_SCHEMA)


def apply_item_updates(items: pa.Table, updates: dict[str, dict[str, Any]]) -> pa.Table:
    """The catalogue with live updates (``POST /items``) laid over it: each given field replaces the catalogue's,
    items the catalogue lacks are added. The updates were validated when they were accepted."""
    if not updates:
        return items
    rows = {row["item_id"]: row for row in items.to_pylist()}
    for item_id, update in updates.items():
        row = rows.setdefault(item_id, dict.fromkeys(ITEM_SCHEMA.names) | {"item_id": item_id})
        for name in ("title", "category", "price", "available"):
            if update.get(name) is not None:
                row[name] = update[name]
        if update.get("created_at"):
            row["created_at"] = datetime.fromisoformat(update["created_at"])
        if row.get("available") is None:
            row["available"] = True
    return pa.Table.from_pylist(list(rows.values()), schema=ITEM_SCHEMA)
