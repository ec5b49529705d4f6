"""Reading input files and validating them against the data contract (:mod:`recommender.data.schema`).

Files are read into Arrow (CSV with every column as text, so a stray value cannot abort the read; Parquet as
typed), each row numbered, then checked and cast in one DuckDB query. Bad rows are skipped and counted with a
sample naming row, field and value; good rows are kept. A missing file or column raises :class:`DataError` with
one clear sentence. Row numbers count data rows from 1 (a CSV header line is not counted).
"""

from __future__ import annotations

import csv
import gzip
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recommender.data.schema import EVENT_REQUIRED, EVENT_SCHEMA, ITEM_REQUIRED, ITEM_SCHEMA, MAX_ID_LENGTH

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
}
US_DATE_FORMATS = "['%m/%d/%Y %H:%M', '%m/%d/%Y %H:%M:%S', '%m/%d/%Y']"
"""Accepted besides ISO 8601 and epoch numbers: month/day/year, as in spreadsheet exports."""
ROW = "_row"
EXCLUDED = "_excluded"
SAMPLE_SIZE = 10


_local = threading.local()


def connect() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection, with the session time zone UTC so zone-less times never follow the host's.

    Opening an in-memory database costs tens of milliseconds, which would dominate validating a small batch of
    live events, so each thread opens one and reuses it. Callers register their tables under fixed names and
    replace them on the next call.
    """
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
    return con


class DataError(Exception):
    """Input that cannot be used at all (missing file or column, too many bad rows)."""


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


def read_table(path: Path | str, what: str = "events") -> pa.Table:
    """Read a CSV or Parquet file into Arrow and add the 1-based ``_row`` column.

    Malformed CSV lines (wrong number of fields) are skipped; their row numbers travel in the schema metadata
    and are reported as bad rows by the validators.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The {what} file '{path}' does not exist.")
    suffix = path.suffix.lower()
    malformed: list[int] = []
    if suffix in {".parquet", ".pq"}:
        table = pq.read_table(path)
        rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    elif suffix in {".csv", ".txt", ".gz"}:
        table, malformed = _read_csv_as_text(path, use_threads=True)
        if malformed and min(malformed) < 0:  # line numbers are only known to the single-threaded reader
            table, malformed = _read_csv_as_text(path, use_threads=False)
        # Data row numbers of the kept rows skip those of the malformed lines.
        all_rows = np.arange(1, table.num_rows + len(malformed) + 1, dtype=np.int64)
        rows = np.setdiff1d(all_rows, np.array(malformed, dtype=np.int64), assume_unique=True)
    else:
        raise DataError(f"The {what} file '{path}' is neither CSV nor Parquet (by its extension).")
    table = table.append_column(ROW, pa.array(rows))
    return table.replace_schema_metadata({b"malformed_rows": ",".join(map(str, malformed)).encode()})


def _read_csv_as_text(path: Path, use_threads: bool) -> tuple[pa.Table, list[int]]:
    """Every column as text; returns the table and the data row numbers (-1 if unknown) of skipped lines."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise DataError(f"The file '{path}' is empty (no header line).")
    malformed: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append(row.number - 1 if row.number is not None else -1)
        return "skip"

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=use_threads),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table, sorted(malformed)


def require_columns(table: pa.Table, required: tuple[str, ...] | list[str], source: str) -> None:
    """Raise DataError naming the first missing column."""
    missing = [c for c in required if c not in table.column_names]
    if missing:
        found = ", ".join(c for c in table.column_names if c != ROW)
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
) -> pa.Table:
    """Run ``checked_sql`` (rows with an ``err`` list [field, reason, value]) once; count and sample the bad rows
    and return the good ones cast to ``schema``."""
    table = con.sql(f"SELECT {select_good}, {ROW}, err FROM ({checked_sql}) ORDER BY {ROW}").to_arrow_table()
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
                values.to_pylist()[head],
            )
        ]
    good = table.filter(pc.invert(bad_mask)).select(schema.names)
    report.rows_kept = good.num_rows
    return good.cast(schema)


def _malformed(table: pa.Table, report: LoadReport) -> None:
    meta = (table.schema.metadata or {}).get(b"malformed_rows", b"")
    rows = [int(r) for r in meta.decode().split(",") if r]
    if rows:
        report.rows_read += len(rows)
        report.rows_bad += len(rows)
        report.bad_by_reason["line has the wrong number of fields"] = len(rows)
        report.sample = sorted(
            report.sample + [BadRow(r, "line", None, "has the wrong number of fields") for r in rows],
            key=lambda b: b.row,
        )[:SAMPLE_SIZE]


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


def validate_events(raw: pa.Table, source: str, sample_size: int = SAMPLE_SIZE) -> tuple[pa.Table, LoadReport]:
    """Check and cast events in generic column names; return the good rows (EVENT_SCHEMA) and a report whose
    sample holds the first ``sample_size`` bad rows."""
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
      WHEN u IS NULL THEN ['user_id', 'is empty', u]
      WHEN length(u) > {MAX_ID_LENGTH} THEN ['user_id', 'is longer than {MAX_ID_LENGTH} characters', u]
      WHEN NOT regexp_full_match(u, '{ID_PATTERN}') THEN ['user_id', 'has characters outside A-Z a-z 0-9 . _ : @ + -', u]
      WHEN i IS NULL THEN ['item_id', 'is empty', i]
      WHEN length(i) > {MAX_ID_LENGTH} THEN ['item_id', 'is longer than {MAX_ID_LENGTH} characters', i]
      WHEN NOT regexp_full_match(i, '{ID_PATTERN}') THEN ['item_id', 'has characters outside A-Z a-z 0-9 . _ : @ + -', i]
      WHEN e IS NULL THEN ['event_type', 'is not one of view, cart, purchase, return', e_raw]
      WHEN ts IS NULL THEN ['timestamp', 'is not a date-time', ts_raw]
      WHEN q_raw IS NOT NULL AND q IS NULL THEN ['quantity', 'is not a number', q_raw]
      WHEN q IS NOT NULL AND (q <= 0 OR isnan(q) OR isinf(q)) THEN ['quantity', 'is not positive', q_raw]
      WHEN p_raw IS NOT NULL AND p IS NULL THEN ['price', 'is not a number', p_raw]
      WHEN p IS NOT NULL AND (p < 0 OR isnan(p) OR isinf(p)) THEN ['price', 'is negative', p_raw]
    END AS err FROM s"""
    select = (
        "u AS user_id, i AS item_id, e AS event_type, ts AS timestamp, coalesce(q, 1.0) AS quantity, p AS price, "
        "CASE WHEN o IS NULL AND e IN ('purchase', 'return') THEN u || '|' || strftime(ts, '%Y-%m-%dT%H:%M:%S') ELSE o END AS order_id"
    )
    events = _finish(con, report, checked, select, EVENT_SCHEMA, sample_size)
    _malformed(raw, report)
    return events, report


def validate_items(raw: pa.Table, source: str) -> tuple[pa.Table, LoadReport]:
    """Check and cast a catalogue in generic column names; duplicates keep their first row."""
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
        WHEN i IS NULL THEN ['item_id', 'is empty', i]
        WHEN length(i) > {MAX_ID_LENGTH} THEN ['item_id', 'is longer than {MAX_ID_LENGTH} characters', i]
        WHEN NOT regexp_full_match(i, '{ID_PATTERN}') THEN ['item_id', 'has characters outside A-Z a-z 0-9 . _ : @ + -', i]
        WHEN p_raw IS NOT NULL AND p IS NULL THEN ['price', 'is not a number', p_raw]
        WHEN p IS NOT NULL AND (p < 0 OR isnan(p) OR isinf(p)) THEN ['price', 'is negative', p_raw]
        WHEN a_raw IS NOT NULL AND a IS NULL THEN ['available', 'is not true/false', a_raw]
        WHEN ca_raw IS NOT NULL AND ca IS NULL THEN ['created_at', 'is not a date-time', ca_raw]
      END AS own_err FROM s)
    SELECT *, coalesce(own_err, CASE
      WHEN row_number() OVER (PARTITION BY i, own_err IS NULL ORDER BY {ROW}) > 1
      THEN ['item_id', 'appears again (the first valid row is kept)', i] END) AS err
    FROM e"""
    select = "i AS item_id, t AS title, c AS category, p AS price, coalesce(a, true) AS available, ca AS created_at"
    items = _finish(con, report, checked, select, ITEM_SCHEMA)
    _malformed(raw, report)
    return items, report


def complete_catalogue(events: pa.Table, items: pa.Table) -> pa.Table:
    """Every item of the catalogue or the events, with created_at defaulting to first seen and price to last seen."""
    con = connect()
    con.register("ev", events)
    con.register("cat", items)
    out = con.sql(
        """
        WITH seen AS (
          SELECT item_id, min(timestamp) AS first_seen, arg_max(price, timestamp) FILTER (WHERE price IS NOT NULL) AS last_price
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
