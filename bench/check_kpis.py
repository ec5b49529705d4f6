"""Check the monthly KPIs and the RFM segments on the UCI Online Retail invoice log against plain SQL.

Usage (from the repository root)::

    python bench/check_kpis.py [PATH]

PATH is the invoice log as Parquet with the raw UCI columns (InvoiceNo, StockCode, Quantity, InvoiceDate,
UnitPrice, CustomerID, ...); it defaults to ``../shared/data/online-retail/online_retail.parquet`` relative to the
repository root.

Two computations of the same figures:

* **project**: ``load_dataset(PATH, None, "online-retail")``, then ``compute_kpis(events, "month")`` and
  ``compute_rfm(events)`` (the code behind ``reco report``, ``GET /kpis`` and ``GET /customers/{id}/segment``);
* **independent**: plain DuckDB SQL straight over the raw file, re-implementing the documented rules (see
  ``docs/KPIS.md``) without importing anything from the project. It is written differently on purpose: months
  are explicit ``[start, end)`` ranges compared with ``<`` / ``>=`` instead of ``date_trunc`` keys, the second
  order comes from ``row_number()`` instead of a list, the trailing year is a range join.

Checks: every KPI column of every month (relative tolerance 1e-6); the kept purchase and return lines; RFM covers
every customer with a purchase exactly once (same ids as the raw SQL, no duplicate, no missing segment); per
customer recency, frequency, monetary, the three scores and the segment. Prints the monthly KPI table and the
segment summary as Markdown; exits 1 naming month/customer and column on any mismatch, 2 when the file is missing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import duckdb

from recommender.marketing.kpis import (
    KPI_SCHEMA,  # only the column names; the independent SQL below imports nothing else
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = Path("../shared/data/online-retail/online_retail.parquet")
REL_TOL = 1e-6
ABS_TOL = 1e-9

KPI_COLUMNS = tuple(KPI_SCHEMA.names[1:])  # every KPI column (after period_start)

# ------------------------------------------------------------------------------------------ independent SQL
# Only DuckDB and the raw column names from here to the project section.

NON_PRODUCT = ("POST", "DOT", "M", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS")
"""Stock codes that are not products (postage, fees, manual lines, bad-debt adjustments); gift% vouchers too."""

LINES_SQL = f"""
CREATE OR REPLACE TEMP TABLE lines AS
WITH raw AS (
    SELECT CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer,
           CAST(InvoiceNo AS VARCHAR) AS invoice,
           CAST(InvoiceNo AS VARCHAR) LIKE 'C%' AS is_return,        -- cancellation invoice = return
           CAST(InvoiceDate AS TIMESTAMP) AS ts,
           upper(trim(CAST(StockCode AS VARCHAR))) AS code,
           lower(CAST(StockCode AS VARCHAR)) LIKE 'gift%' AS voucher,
           Quantity, UnitPrice
    FROM read_parquet($path)
), kept AS (
    SELECT customer, invoice, is_return, ts, code,
           coalesce(abs(Quantity), 1) AS qty, UnitPrice AS unit_price
    FROM raw
    WHERE customer IS NOT NULL                                       -- guest checkout
      AND code NOT IN ({", ".join(f"'{c}'" for c in NON_PRODUCT)}) AND NOT voucher
      AND ts IS NOT NULL
      -- a purchase line needs a positive quantity, a cancellation line a negative one
      AND (Quantity IS NULL OR (is_return AND Quantity < 0) OR (NOT is_return AND Quantity > 0))
      AND (UnitPrice IS NULL OR UnitPrice >= 0)
), code_price AS (   -- a missing price is the product's average price
    SELECT code, avg(unit_price) AS avg_price FROM kept WHERE unit_price IS NOT NULL GROUP BY code
)
SELECT k.customer, k.invoice, k.is_return, k.ts,
       (CASE WHEN k.is_return THEN -1 ELSE 1 END) * k.qty * coalesce(k.unit_price, p.avg_price, 0) AS net
FROM kept k LEFT JOIN code_price p USING (code)
"""

MONTHLY_SQL = """
WITH orders AS (                -- one invoice of one customer, dated by its first line
    SELECT customer, invoice, min(ts) AS ts, sum(net) AS gross
    FROM lines WHERE NOT is_return GROUP BY customer, invoice
), numbered AS (
    SELECT customer, ts, row_number() OVER (PARTITION BY customer ORDER BY ts, invoice) AS k FROM orders
), customers AS (               -- first and second order of each customer (second NULL if only one)
    SELECT customer, min(ts) FILTER (WHERE k = 1) AS first_ts, min(ts) FILTER (WHERE k = 2) AS second_ts
    FROM numbered GROUP BY customer
), span AS (
    SELECT CAST(strftime(min(ts), '%Y-%m-01') AS DATE) AS lo, CAST(strftime(max(ts), '%Y-%m-01') AS DATE) AS hi
    FROM lines
), months AS (                  -- [m_start, m_end); trailing year = [t_start, m_end)
    SELECT CAST(m AS TIMESTAMP) AS m_start,
           CAST(m + INTERVAL 1 MONTH AS TIMESTAMP) AS m_end,
           CAST(m - INTERVAL 11 MONTH AS TIMESTAMP) AS t_start
    FROM span, generate_series(lo, hi, INTERVAL 1 MONTH) AS g(m)
), base AS (
    SELECT m.m_start,
        (SELECT count(DISTINCT o.customer) FROM orders o
          WHERE o.ts >= m.m_start AND o.ts < m.m_end) AS n_active,
        (SELECT count(DISTINCT o.customer) FROM orders o JOIN customers c USING (customer)
          WHERE o.ts >= m.m_start AND o.ts < m.m_end AND c.first_ts >= m.m_start) AS n_new,
        (SELECT count(DISTINCT o.customer) FROM orders o JOIN customers c USING (customer)
          WHERE o.ts >= m.m_start AND o.ts < m.m_end AND c.first_ts < m.m_start) AS n_returning,
        (SELECT count(*) FROM orders o WHERE o.ts >= m.m_start AND o.ts < m.m_end) AS n_orders,
        (SELECT coalesce(sum(o.gross), 0) FROM orders o WHERE o.ts >= m.m_start AND o.ts < m.m_end) AS gross,
        (SELECT coalesce(sum(l.net), 0) FROM lines l WHERE l.ts >= m.m_start AND l.ts < m.m_end) AS revenue,
        (SELECT coalesce(sum(l.net), 0) FROM lines l JOIN customers c USING (customer)
          WHERE l.ts >= m.m_start AND l.ts < m.m_end AND c.first_ts < m.m_start) AS returning_revenue,
        (SELECT count(*) FROM customers c WHERE c.first_ts < m.m_end) AS customers_to_date,
        (SELECT count(*) FROM customers c WHERE c.second_ts < m.m_end) AS repeaters_to_date,
        (SELECT coalesce(sum(l.net), 0) FROM lines l WHERE l.ts < m.m_end) AS revenue_to_date,
        (SELECT coalesce(sum(l.net), 0) FROM lines l WHERE l.ts >= m.t_start AND l.ts < m.m_end) AS t_revenue,
        (SELECT count(*) FROM (SELECT o.customer FROM orders o WHERE o.ts >= m.t_start AND o.ts < m.m_end
                               GROUP BY o.customer)) AS t_customers,
        (SELECT count(*) FROM (SELECT o.customer FROM orders o WHERE o.ts >= m.t_start AND o.ts < m.m_end
                               GROUP BY o.customer HAVING count(*) >= 2)) AS t_repeaters
    FROM months m
), rated AS (
    SELECT *, CASE WHEN t_customers > 0 THEN least(t_repeaters / t_customers, 0.9) END AS retention FROM base
)
SELECT m_start AS period_start,
       n_active AS active_customers,
       n_new AS new_customers,
       n_returning AS returning_customers,
       CASE WHEN n_active > 0 THEN n_returning / n_active ELSE 0 END AS repeat_purchase_rate,
       CASE WHEN customers_to_date > 0 THEN repeaters_to_date / customers_to_date ELSE 0 END
           AS cumulative_repeat_rate,
       CASE WHEN n_active > 0 THEN n_orders / n_active ELSE 0 END AS purchase_frequency,
       n_orders AS orders,
       CASE WHEN n_orders > 0 THEN gross / n_orders ELSE 0 END AS average_order_value,
       revenue,
       returning_revenue,
       CASE WHEN revenue > 0 THEN returning_revenue / revenue ELSE 0 END AS returning_revenue_share,
       CASE WHEN customers_to_date > 0 THEN revenue_to_date / customers_to_date ELSE 0 END
           AS historic_customer_value,
       CASE WHEN t_customers > 0 THEN 1 / (1 - retention) ELSE 0 END AS expected_lifetime_years,
       CASE WHEN t_customers > 0 THEN t_revenue / t_customers / (1 - retention) ELSE 0 END
           AS predicted_customer_value
FROM rated ORDER BY m_start
"""

# The documented 11-segment map: rows R 5..1, columns FM 1..5.
SEGMENT_MAP = {
    5: ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"),
    3: ("about_to_sleep", "about_to_sleep", "needs_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "lost", "at_risk", "at_risk", "cant_lose"),
}

RFM_SQL = """
WITH as_of AS (SELECT max(ts) AS t FROM lines),
cust AS (
    SELECT customer,
           max(ts) FILTER (WHERE NOT is_return) AS last_purchase,
           count(DISTINCT invoice) FILTER (WHERE NOT is_return) AS frequency,
           sum(net) AS monetary
    FROM lines, as_of WHERE ts <= as_of.t
    GROUP BY customer
    HAVING count(*) FILTER (WHERE NOT is_return) > 0
), measured AS (
    SELECT customer, frequency, monetary,
           date_diff('day', CAST(last_purchase AS DATE), CAST(as_of.t AS DATE)) AS recency_days
    FROM cust, as_of
), ranked AS (   -- rank() from worst to best, ties share the lowest rank
    SELECT *, count(*) OVER () AS n,
           rank() OVER (ORDER BY recency_days DESC) AS r_rank,
           rank() OVER (ORDER BY frequency) AS f_rank,
           rank() OVER (ORDER BY round(monetary, 4)) AS m_rank
    FROM measured
), scored AS (
    SELECT customer, recency_days, frequency, monetary,
           CAST(1 + floor(5 * (r_rank - 1) / n) AS INTEGER) AS r_score,
           CAST(1 + floor(5 * (f_rank - 1) / n) AS INTEGER) AS f_score,
           CAST(1 + floor(5 * (m_rank - 1) / n) AS INTEGER) AS m_score
    FROM ranked
)
SELECT s.*, g.segment
FROM scored s
LEFT JOIN segment_map g ON g.r = s.r_score AND g.fm = CAST(floor((s.f_score + s.m_score) / 2 + 0.5) AS INTEGER)
ORDER BY customer
"""


def independent(path: Path) -> tuple[list[dict], list[dict], dict]:
    """Monthly KPIs, per-customer RFM and line counts from the raw file, in plain SQL."""
    con = duckdb.connect()
    try:
        con.execute(LINES_SQL.replace("$path", "?"), [str(path)])
        con.execute("CREATE TEMP TABLE segment_map (r INTEGER, fm INTEGER, segment VARCHAR)")
        con.executemany(
            "INSERT INTO segment_map VALUES (?, ?, ?)",
            [(r, fm + 1, seg) for r, row in SEGMENT_MAP.items() for fm, seg in enumerate(row)],
        )
        monthly = _records(con.execute(MONTHLY_SQL))
        rfm = _records(con.execute(RFM_SQL))
        counts = dict(
            zip(
                ("purchase_lines", "return_lines", "buyers", "returns_only_customers"),
                con.execute(
                    """
                    SELECT count(*) FILTER (WHERE NOT is_return), count(*) FILTER (WHERE is_return),
                           count(DISTINCT customer) FILTER (WHERE NOT is_return),
                           count(DISTINCT customer) - count(DISTINCT customer) FILTER (WHERE NOT is_return)
                    FROM lines
                    """
                ).fetchone(),
            )
        )
    finally:
        con.close()
    return monthly, rfm, counts


def _records(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# ---------------------------------------------------------------------------------------------- project code


def project(path: Path):
    """Monthly KPIs, RFM, segment summary and event counts computed by the project code."""
    import pyarrow.compute as pc

    from recommender.data.dataset import load_dataset
    from recommender.marketing.kpis import compute_kpis
    from recommender.marketing.rfm import compute_rfm, monetary_unit, segment_summary

    data = load_dataset(path, None, "online-retail")
    events = data.events
    kpis = compute_kpis(events, "month")
    rfm = compute_rfm(events)
    types = events.column("event_type")
    counts = {
        "purchase_lines": pc.sum(pc.equal(types, "purchase")).as_py() or 0,
        "return_lines": pc.sum(pc.equal(types, "return")).as_py() or 0,
        "unit": monetary_unit(kpis),
        "report": data.reports[0],
    }
    return kpis.to_pylist(), rfm.to_pylist(), segment_summary(rfm).to_pylist(), counts


# -------------------------------------------------------------------------------------------------- checks


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare_kpis(mine: list[dict], sql: list[dict]) -> tuple[list[str], int]:
    problems: list[str] = []
    if [r["period_start"] for r in mine] != [r["period_start"] for r in sql]:
        months = [[f"{r['period_start']:%Y-%m}" for r in rows] for rows in (mine, sql)]
        problems.append(f"months differ: project {months[0]} vs SQL {months[1]}")
        return problems, 0
    compared = 0
    for p, s in zip(mine, sql):
        for col in KPI_COLUMNS:
            compared += 1
            if not _close(p[col], s[col]):
                problems.append(f"month {p['period_start']:%Y-%m}, column {col}: project {p[col]!r} != SQL {s[col]!r}")
    return problems, compared


def compare_rfm(mine: list[dict], sql: list[dict]) -> list[str]:
    problems: list[str] = []
    ids = [r["user_id"] for r in mine]
    if len(ids) != len(set(ids)):
        dups = sorted({i for i in ids if ids.count(i) > 1})[:5]
        problems.append(f"RFM has {len(ids) - len(set(ids))} duplicate customer rows, e.g. {dups}")
    missing_seg = [r["user_id"] for r in mine if r["segment"] is None]
    if missing_seg:
        problems.append(f"{len(missing_seg)} RFM rows have no segment, e.g. {missing_seg[:5]}")
    unmapped = [r["customer"] for r in sql if r["segment"] is None]
    if unmapped:
        problems.append(f"SQL: {len(unmapped)} customers fall outside the segment map, e.g. {unmapped[:5]}")
    want = {r["customer"] for r in sql}
    if len(want) != len(set(ids)) or want != set(ids):
        only_sql = sorted(want - set(ids))[:5]
        only_rfm = sorted(set(ids) - want)[:5]
        problems.append(
            f"customers with a purchase: SQL {len(want)}, RFM {len(set(ids))} "
            f"(only in SQL e.g. {only_sql}, only in RFM e.g. {only_rfm})"
        )
    by_id = {r["user_id"]: r for r in mine}
    cols = (
        ("recency_days", "recency_days"),
        ("frequency", "frequency"),
        ("monetary", "monetary"),
        ("r_score", "r_score"),
        ("f_score", "f_score"),
        ("m_score", "m_score"),
        ("segment", "segment"),
    )
    diffs: dict[str, list[str]] = {}
    for s in sql:
        p = by_id.get(s["customer"])
        if p is None:
            continue
        for pc_, sc in cols:
            same = p[pc_] == s[sc] if pc_ == "segment" else _close(p[pc_], s[sc])
            if not same:
                diffs.setdefault(pc_, []).append(f"{s['customer']} (project {p[pc_]!r}, SQL {s[sc]!r})")
    for col, rows in diffs.items():
        problems.append(f"RFM column {col} differs for {len(rows)} customers, e.g. customer " + "; ".join(rows[:3]))
    return problems


# -------------------------------------------------------------------------------------------------- output


def _fmt(value, col: str, unit: str) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if col.endswith(("rate", "share")):
        return f"{value:.1%}"
    if col == "purchase_frequency" or col == "expected_lifetime_years":
        return f"{value:.2f}"
    return f"{value:,.0f}" if unit == "currency" else f"{value:,.1f}"


SHORT = {
    "active_customers": "active",
    "new_customers": "new",
    "returning_customers": "returning",
    "repeat_purchase_rate": "repeat rate",
    "cumulative_repeat_rate": "cum. repeat rate",
    "purchase_frequency": "orders/cust.",
    "orders": "orders",
    "average_order_value": "AOV",
    "revenue": "net revenue",
    "returning_revenue": "returning rev.",
    "returning_revenue_share": "returning share",
    "historic_customer_value": "historic CV",
    "expected_lifetime_years": "lifetime (y)",
    "predicted_customer_value": "predicted CV",
}


def kpi_table(rows: list[dict], unit: str) -> str:
    head = ["month"] + [SHORT[c] for c in KPI_COLUMNS]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(KPI_COLUMNS)) + "|"]
    for r in rows:
        cells = [f"{r['period_start']:%Y-%m}"] + [_fmt(r[c], c, unit) for c in KPI_COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def segment_table(summary: list[dict], unit: str) -> str:
    total = sum(r["monetary"] for r in summary) or 1.0
    out = [
        "| segment | customers | share of customers | net revenue | share of revenue | e-mail strategy |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in summary:
        out.append(
            f"| {r['segment']} | {r['customers']:,} | {r['share']:.1%} | {_fmt(r['monetary'], 'monetary', unit)} "
            f"| {r['monetary'] / total:.1%} | {r['strategy']} |"
        )
    n = sum(r["customers"] for r in summary)
    out.append(
        f"| **total** | **{n:,}** | 100.0% | **{_fmt(sum(r['monetary'] for r in summary), 'm', unit)}** | 100.0% | |"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=None,
        help=f"raw invoice log (Parquet); default {DEFAULT_PATH} relative to the repository root",
    )
    args = parser.parse_args(argv)
    path = args.path if args.path is not None else REPO_ROOT / DEFAULT_PATH
    if not path.is_file():
        print(f"error: the invoice log '{path}' does not exist", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    kpis, rfm, summary, pcounts = project(path)
    t1 = time.perf_counter()
    sql_kpis, sql_rfm, scounts = independent(path)
    t2 = time.perf_counter()
    unit = pcounts["unit"]
    report = pcounts["report"]

    problems: list[str] = []
    for key in ("purchase_lines", "return_lines"):
        if pcounts[key] != scounts[key]:
            problems.append(f"kept {key.replace('_', ' ')}: project {pcounts[key]:,} != SQL {scounts[key]:,}")
    kpi_problems, compared = compare_kpis(kpis, sql_kpis)
    problems += kpi_problems
    problems += compare_rfm(rfm, sql_rfm)

    print(f"# KPI check: {path.name}\n")
    print(
        f"Rows read {report.rows_read:,}, kept {report.rows_kept:,} "
        f"({pcounts['purchase_lines']:,} purchase lines, {pcounts['return_lines']:,} return lines), "
        f"bad {report.rows_bad:,}; excluded: "
        + ", ".join(f"{reason} {n:,}" for reason, n in report.excluded.items())
        + f". Money unit: {unit}.\n"
    )
    print("## Monthly KPIs (project code)\n")
    print(kpi_table(kpis, unit))
    print("\n## RFM segments (project code)\n")
    print(segment_table(summary, unit))
    print(
        f"\n{scounts['buyers']:,} customers with a purchase in the raw log; "
        f"{scounts['returns_only_customers']:,} more customers only have returns (no purchase, so no segment)."
    )
    print("\n## Independent check (plain DuckDB SQL over the raw file)\n")
    print(
        f"{len(kpis)} months x {len(KPI_COLUMNS)} KPI columns = {compared} values compared "
        f"(relative tolerance {REL_TOL:g}); {len(sql_rfm):,} customers x 7 RFM columns compared. "
        f"Project {t1 - t0:.1f} s, SQL {t2 - t1:.1f} s."
    )
    if problems:
        print(f"\nMISMATCH ({len(problems)}):", file=sys.stderr)
        for line in problems[:50]:
            print(f"  - {line}", file=sys.stderr)
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more", file=sys.stderr)
        return 1
    print(
        "\nOK: every KPI of every month matches; RFM segments cover every customer with a purchase exactly once "
        "and recency, frequency, monetary, scores and segment match per customer."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
