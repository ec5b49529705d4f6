"""RFM segmentation of the shop's customers, computed with DuckDB over the canonical events table.

Measures (per customer with at least one purchase up to ``as_of``):

* ``recency_days``: calendar days between the day of the last purchase and the day of ``as_of``
  (bought on the ``as_of`` day = 0).
* ``frequency``: number of distinct orders (``order_id``; purchases without one count as ``user_id|timestamp``).
* ``monetary``: net value = sum of ``quantity * price`` over purchases minus the same over returns. A missing
  price is filled with the item's average price in the events (0 if the item never has one). When no purchase or
  return row has a price at all, monetary counts net *units* instead; the result's schema metadata then says
  ``monetary_unit=units`` (else ``currency``), see :func:`monetary_unit`. Returns do not change ``frequency``.

Scores (1-5, 5 = best: most recent, most orders, highest spend) are rank-based quintiles that keep ties together:
with customers sorted from worst to best and ``rank`` the SQL ``rank()`` (ties share the lowest rank of their
group), ``score = 1 + floor(5 * (rank - 1) / n)``. Without ties this is exactly ``ntile(5)`` (for ``n`` divisible
by 5); customers with equal values always get equal scores, and a tie group gets the score of its first member,
so a large tie at the bottom (e.g. the many one-order customers) all get 1 and some higher scores may stay unused.

Segments come from a 5x5 grid on R and FM, where FM is ``round_half_up((F + M) / 2)`` (or just F with
``RfmConfig(fm_basis="frequency")``). The default grid (rows R, columns FM) is the widely used 11-segment map::

    R\\FM  1               2                    3                    4          5
    5     new             potential_loyalists  potential_loyalists  champions  champions
    4     promising       potential_loyalists  potential_loyalists  loyal      loyal
    3     about_to_sleep  about_to_sleep       needs_attention      loyal      loyal
    2     hibernating     hibernating          at_risk              at_risk    cant_lose
    1     lost            lost                 at_risk              at_risk    cant_lose

The grid is configurable through ``RfmConfig.rules`` (ordered, first match wins, must cover all 25 cells), so
every customer gets exactly one segment. Each segment in :data:`SEGMENTS` carries a suggested action and an
e-mail list strategy:

===================  ============  ==============================================================
segment              strategy      why
===================  ============  ==============================================================
champions            new_arrivals  best customers: reward with early access to what is new
loyal                new_arrivals  regular buyers: upsell with new arrivals
potential_loyalists  personal      recent with a few orders: personal recommendations build habit
new                  bestsellers   little history yet: onboard with proven bestsellers
promising            bestsellers   recent, low spend: bestsellers and an incentive
needs_attention      personal      average and slipping: offers based on their own history
about_to_sleep       due_again     lapsing: remind them of what they are due to buy again
at_risk              due_again     used to buy often: win back with their regular products
cant_lose            personal      biggest spenders gone quiet: hand-picked personal win-back
hibernating          bestsellers   low value, long ago: generic popular items, mail rarely
lost                 bestsellers   lowest scores: one cheap reactivation attempt
===================  ============  ==============================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recommender.data.schema import EVENT_SCHEMA, MAX_PRICE, MAX_QUANTITY, PURCHASE, RETURN

STRATEGIES: tuple[str, ...] = ("new_arrivals", "personal", "due_again", "bestsellers")
"""E-mail list strategies a segment can be mailed with."""

MONETARY_UNIT_KEY = b"monetary_unit"


@dataclass(frozen=True)
class Segment:
    """A named customer segment with what marketing should do with it."""

    name: str
    label: str
    description: str
    action: str
    strategy: str


SEGMENTS: dict[str, Segment] = {
    s.name: s
    for s in (
        Segment(
            "champions",
            "Champions",
            "Bought recently, buy often and spend the most.",
            "Reward them: early access to new arrivals, loyalty perks; ask for reviews.",
            "new_arrivals",
        ),
        Segment(
            "loyal",
            "Loyal",
            "Buy regularly and spend well; responsive to offers.",
            "Upsell higher-value products; early access to new arrivals.",
            "new_arrivals",
        ),
        Segment(
            "potential_loyalists",
            "Potential loyalists",
            "Recent customers with a few orders and average spend.",
            "Recommend products that fit what they bought; offer the loyalty programme.",
            "personal",
        ),
        Segment(
            "new",
            "New",
            "Bought very recently, but only once or for little so far.",
            "Onboard them: welcome series with bestsellers; make the second order easy.",
            "bestsellers",
        ),
        Segment(
            "promising",
            "Promising",
            "Recent shoppers who have not bought much yet.",
            "Build awareness: bestsellers, free-shipping threshold, a small incentive.",
            "bestsellers",
        ),
        Segment(
            "needs_attention",
            "Needs attention",
            "Average recency, frequency and spend; starting to slip.",
            "Limited-time offers based on their purchase history.",
            "personal",
        ),
        Segment(
            "about_to_sleep",
            "About to sleep",
            "Below-average recency and frequency; lapsing.",
            "Remind them of products they are due to buy again; a reactivation discount.",
            "due_again",
        ),
        Segment(
            "at_risk",
            "At risk",
            "Used to buy often and spend well, but not for a long time.",
            "Win them back: reminders of their regular products, renewals, helpful content.",
            "due_again",
        ),
        Segment(
            "cant_lose",
            "Can't lose",
            "Made the biggest, most frequent purchases but have not come back.",
            "Personal win-back with hand-picked products and a strong offer; ask what went wrong.",
            "personal",
        ),
        Segment(
            "hibernating",
            "Hibernating",
            "Last purchase long ago, few orders, low spend.",
            "Bestsellers and relevant discounts; mail them rarely.",
            "bestsellers",
        ),
        Segment(
            "lost",
            "Lost",
            "Lowest recency, frequency and spend.",
            "One reactivation campaign with bestsellers; otherwise leave them alone.",
            "bestsellers",
        ),
    )
}


@dataclass(frozen=True)
class SegmentRule:
    """Customers with ``r[0] <= R <= r[1]`` and ``fm[0] <= FM <= fm[1]`` (inclusive) belong to ``segment``."""

    segment: str
    r: tuple[int, int]
    fm: tuple[int, int]


DEFAULT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("champions", (5, 5), (4, 5)),
    SegmentRule("loyal", (3, 4), (4, 5)),
    SegmentRule("potential_loyalists", (4, 5), (2, 3)),
    SegmentRule("new", (5, 5), (1, 1)),
    SegmentRule("promising", (4, 4), (1, 1)),
    SegmentRule("needs_attention", (3, 3), (3, 3)),
    SegmentRule("about_to_sleep", (3, 3), (1, 2)),
    SegmentRule("cant_lose", (1, 2), (5, 5)),
    SegmentRule("at_risk", (1, 2), (3, 4)),
    SegmentRule("hibernating", (2, 2), (1, 2)),
    SegmentRule("lost", (1, 1), (1, 2)),
)


@dataclass(frozen=True)
class RfmConfig:
    """How scores map to segments, and the reference time.

    ``rules`` are tried in order (first match wins) and must cover every (R, FM) cell from 1 to 5 with a segment
    from :data:`SEGMENTS`. ``fm_basis="average"`` uses FM = round-half-up of (F + M) / 2, ``"frequency"`` uses F.
    ``as_of`` defaults to the latest timestamp in the events; events after it are ignored.
    """

    rules: tuple[SegmentRule, ...] = DEFAULT_RULES
    fm_basis: Literal["average", "frequency"] = "average"
    as_of: dt.datetime | dt.date | None = None
    _grid: dict[tuple[int, int], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.fm_basis not in ("average", "frequency"):
            raise ValueError(f"fm_basis must be 'average' or 'frequency', not {self.fm_basis!r}")
        grid: dict[tuple[int, int], str] = {}
        for rule in self.rules:
            if rule.segment not in SEGMENTS:
                raise ValueError(f"unknown segment {rule.segment!r} in RFM rules; known: {', '.join(SEGMENTS)}")
            for r in range(rule.r[0], rule.r[1] + 1):
                for fm in range(rule.fm[0], rule.fm[1] + 1):
                    grid.setdefault((r, fm), rule.segment)
        missing = [(r, fm) for r in range(1, 6) for fm in range(1, 6) if (r, fm) not in grid]
        if missing:
            raise ValueError(f"RFM rules leave (R, FM) cells without a segment: {missing}")
        object.__setattr__(self, "_grid", {k: grid[k] for k in sorted(grid) if 1 <= k[0] <= 5 and 1 <= k[1] <= 5})

    def segment_for(self, r: int, fm: int) -> str:
        """The segment of the (R, FM) cell."""
        return self._grid[(r, fm)]


RFM_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("recency_days", pa.int64()),
        ("frequency", pa.int64()),
        ("monetary", pa.float64()),
        ("r_score", pa.int8()),
        ("f_score", pa.int8()),
        ("m_score", pa.int8()),
        ("segment", pa.string()),
    ]
)


# --------------------------------------------------------------------------------------------- shared helpers


def to_arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A DuckDB relation as an Arrow table (works across DuckDB 1.x and 2.x)."""
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()


def as_timestamp(value: dt.datetime | dt.date) -> dt.datetime:
    """A naive UTC datetime; a plain date means the end of that day (events of the whole day included)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    return dt.datetime.combine(value, dt.time.max)


def _conform(events: pa.Table) -> pa.Table:
    """The events with every EVENT_SCHEMA column present and typed (missing optional columns become null)."""
    columns = []
    for f in EVENT_SCHEMA:
        if f.name in events.column_names:
            columns.append(events.column(f.name).cast(f.type))
        else:
            columns.append(pa.nulls(events.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)


def open_sales(events: pa.Table) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A DuckDB connection with ``events`` (all rows) and ``sales`` (purchase and return rows) registered.

    ``sales`` has user_id, item_id, event_type, ts, order_id, qty and ``value``: positive for purchases, negative
    for returns, in currency (missing prices filled with the item's average price, else 0) or, when no row has a
    price, in units. Lines with a quantity beyond ``MAX_QUANTITY`` (or NaN) are left out and prices beyond
    ``MAX_PRICE`` count as missing. Returns the connection and the unit ("currency" or "units").
    """
    con = duckdb.connect()
    con.register("events", _conform(events))
    # Prices and quantities outside the data contract's bounds (possible only in tables that skipped validation)
    # count as missing, so no sum can overflow to infinity and every figure stays a finite number.
    price = f"CASE WHEN price BETWEEN 0 AND {MAX_PRICE:.0f} THEN price END"
    has_price = con.execute(
        f"SELECT count({price}) > 0 FROM events WHERE event_type IN ('{PURCHASE}', '{RETURN}')"
    ).fetchall()[0][0]
    unit = "currency" if has_price else "units"
    amount = "qty * coalesce(e.price, ip.avg_price, 0)" if has_price else "qty"
    con.execute(
        f"""
        CREATE TEMP TABLE sales AS
        WITH e AS (
            SELECT user_id, item_id, event_type, timestamp AS ts, {price} AS price,
                   abs(coalesce(quantity, 1.0)) AS qty,
                   coalesce(order_id, user_id || '|' || CAST(timestamp AS VARCHAR)) AS order_id
            FROM events
            WHERE event_type IN ('{PURCHASE}', '{RETURN}') AND user_id IS NOT NULL AND timestamp IS NOT NULL
              AND abs(coalesce(quantity, 1.0)) <= {MAX_QUANTITY:.0f}
        ), ip AS (
            SELECT item_id, avg(price) AS avg_price FROM e WHERE price IS NOT NULL GROUP BY item_id
        )
        SELECT e.user_id, e.item_id, e.event_type, e.ts, e.order_id, e.qty,
               CASE WHEN e.event_type = '{RETURN}' THEN -1 ELSE 1 END * {amount} AS value
        FROM e LEFT JOIN ip USING (item_id)
        """
    )
    return con, unit


def monetary_unit(table: pa.Table) -> str:
    """ "currency" or "units": what the money columns of an RFM or KPI table count."""
    meta = table.schema.metadata or {}
    return meta.get(MONETARY_UNIT_KEY, b"currency").decode()


def with_monetary_unit(table: pa.Table, unit: str) -> pa.Table:
    """The table with its ``monetary_unit`` schema metadata set."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), MONETARY_UNIT_KEY: unit.encode()})


# ------------------------------------------------------------------------------------------------------ RFM


def _rfm(con: duckdb.DuckDBPyConnection, as_of: dt.datetime, config: RfmConfig, unit: str) -> pa.Table:
    grid = pa.table(
        {
            "r": pa.array([k[0] for k in config._grid], pa.int64()),
            "fm": pa.array([k[1] for k in config._grid], pa.int64()),
            "segment": list(config._grid.values()),
        }
    )
    con.register("rfm_grid", grid)
    fm = "(f_score + m_score + 1) // 2" if config.fm_basis == "average" else "f_score"
    rel = con.sql(
        f"""
        WITH cust AS (
            SELECT user_id,
                   max(ts) FILTER (WHERE event_type = '{PURCHASE}') AS last_purchase,
                   count(DISTINCT order_id) FILTER (WHERE event_type = '{PURCHASE}') AS frequency,
                   coalesce(sum(value), 0) AS monetary
            FROM sales WHERE ts <= TIMESTAMP '{as_of.isoformat(sep=" ")}'
            GROUP BY user_id
            HAVING count(*) FILTER (WHERE event_type = '{PURCHASE}') > 0
        ), ranked AS (
            SELECT user_id, frequency, monetary,
                   date_diff('day', CAST(last_purchase AS DATE), DATE '{as_of.date().isoformat()}') AS recency_days,
                   count(*) OVER () AS n,
                   rank() OVER (ORDER BY date_diff('day', CAST(last_purchase AS DATE),
                                                   DATE '{as_of.date().isoformat()}') DESC) AS r_rank,
                   rank() OVER (ORDER BY frequency) AS f_rank,
                   rank() OVER (ORDER BY round(monetary, 6)) AS m_rank
            FROM cust
        ), scored AS (
            SELECT user_id, recency_days, frequency, monetary,
                   1 + (r_rank - 1) * 5 // n AS r_score,
                   1 + (f_rank - 1) * 5 // n AS f_score,
                   1 + (m_rank - 1) * 5 // n AS m_score
            FROM ranked
        )
        SELECT s.user_id, s.recency_days, s.frequency, s.monetary,
               s.r_score, s.f_score, s.m_score, g.segment
        FROM scored s JOIN rfm_grid g ON g.r = s.r_score AND g.fm = {fm}
        ORDER BY s.user_id
        """
    )
    return with_monetary_unit(to_arrow(rel).cast(RFM_SCHEMA), unit)


def _default_as_of(con: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    return con.execute("SELECT max(timestamp) FROM events").fetchall()[0][0]


def compute_rfm(events: pa.Table, config: RfmConfig = RfmConfig()) -> pa.Table:
    """One row per customer with a purchase up to ``config.as_of``: measures, 1-5 scores and segment.

    Columns: user_id, recency_days, frequency, monetary, r_score, f_score, m_score, segment (sorted by user_id).
    The schema metadata ``monetary_unit`` says whether monetary is "currency" or "units".
    """
    con, unit = open_sales(events)
    try:
        as_of = as_timestamp(config.as_of) if config.as_of is not None else _default_as_of(con)
        if as_of is None:
            return with_monetary_unit(RFM_SCHEMA.empty_table(), unit)
        return _rfm(con, as_of, config, unit)
    finally:
        con.close()


def segment_summary(rfm: pa.Table) -> pa.Table:
    """Per segment (all of :data:`SEGMENTS`, in their order, empty ones with 0): customers, share, monetary, strategy.

    ``share`` is the fraction of all customers in the table; ``monetary`` is the segment's total.
    """
    order = pa.table(
        {
            "segment": list(SEGMENTS),
            "pos": list(range(len(SEGMENTS))),
            "strategy": [s.strategy for s in SEGMENTS.values()],
        }
    )
    con = duckdb.connect()
    try:
        con.register("rfm", rfm.select(["segment", "monetary"]))
        con.register("seg_order", order)
        rel = con.sql(
            """
            WITH agg AS (SELECT segment, count(*) AS customers, sum(monetary) AS monetary FROM rfm GROUP BY segment),
                 tot AS (SELECT count(*) AS n FROM rfm)
            SELECT o.segment, coalesce(a.customers, 0) AS customers,
                   CASE WHEN tot.n > 0 THEN coalesce(a.customers, 0) / tot.n ELSE 0.0 END AS share,
                   coalesce(a.monetary, 0.0) AS monetary, o.strategy
            FROM seg_order o LEFT JOIN agg a USING (segment), tot
            ORDER BY o.pos
            """
        )
        table = to_arrow(rel).cast(
            pa.schema(
                [
                    ("segment", pa.string()),
                    ("customers", pa.int64()),
                    ("share", pa.float64()),
                    ("monetary", pa.float64()),
                    ("strategy", pa.string()),
                ]
            )
        )
    finally:
        con.close()
    return with_monetary_unit(table, monetary_unit(rfm))


def segment_movement(
    events: pa.Table,
    as_of_a: dt.datetime | dt.date,
    as_of_b: dt.datetime | dt.date,
    config: RfmConfig = RfmConfig(),
) -> pa.Table:
    """How customers moved between segments from RFM at ``as_of_a`` to RFM at ``as_of_b``.

    Each RFM uses only events up to its date (a plain date includes that whole day; ``config.as_of`` is ignored).
    Columns: from_segment (null for customers whose first purchase came after ``as_of_a``), to_segment (null for
    customers only present at ``as_of_a``, possible when ``as_of_b`` is earlier), customers. Only non-empty pairs,
    ordered by the segment order of :data:`SEGMENTS`.
    """
    con, unit = open_sales(events)
    try:
        a = _rfm(con, as_timestamp(as_of_a), config, unit).select(["user_id", "segment"])
        b = _rfm(con, as_timestamp(as_of_b), config, unit).select(["user_id", "segment"])
        con.register("rfm_a", a)
        con.register("rfm_b", b)
        con.register("seg_order", pa.table({"segment": list(SEGMENTS), "pos": list(range(len(SEGMENTS)))}))
        rel = con.sql(
            """
            WITH moves AS (
                SELECT a.segment AS from_segment, b.segment AS to_segment, count(*) AS customers
                FROM rfm_a a FULL OUTER JOIN rfm_b b USING (user_id)
                GROUP BY ALL
            )
            SELECT m.from_segment, m.to_segment, m.customers
            FROM moves m
            LEFT JOIN seg_order oa ON oa.segment = m.from_segment
            LEFT JOIN seg_order ob ON ob.segment = m.to_segment
            ORDER BY oa.pos NULLS FIRST, ob.pos NULLS FIRST
            """
        )
        return to_arrow(rel).cast(
            pa.schema([("from_segment", pa.string()), ("to_segment", pa.string()), ("customers", pa.int64())])
        )
    finally:
        con.close()


def segment_strategies(rfm: pa.Table) -> pa.Table:
    """user_id, segment and its e-mail list ``strategy`` for every customer of an RFM table."""
    positions = pc.index_in(rfm.column("segment"), value_set=pa.array(list(SEGMENTS)))
    strategy = pa.array([s.strategy for s in SEGMENTS.values()]).take(positions)
    return pa.table({"user_id": rfm.column("user_id"), "segment": rfm.column("segment"), "strategy": strategy})


__all__: Sequence[str] = (
    "DEFAULT_RULES",
    "RFM_SCHEMA",
    "SEGMENTS",
    "STRATEGIES",
    "RfmConfig",
    "Segment",
    "SegmentRule",
    "compute_rfm",
    "monetary_unit",
    "segment_movement",
    "segment_strategies",
    "segment_summary",
)
