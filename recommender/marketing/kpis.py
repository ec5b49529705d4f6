"""Repeat-sales KPIs per period (week, month, quarter, year), computed with DuckDB over the canonical events.

Money is net value as in :mod:`recommender.marketing.rfm` (purchases ``quantity * price`` minus returns; units when
no row has a price, see the table's ``monetary_unit`` metadata). An order belongs to the period of its first line.
The covered range runs from the period of the first event (any type) to the period of the last one; periods
without sales inside it appear with zeros.

Definitions, for a period P:

* ``active_customers``: customers with at least one order in P.
* ``new_customers``: active customers whose first order ever (in the data) is in P.
* ``returning_customers``: active customers who had ordered before P (``new + returning = active``).
* ``repeat_purchase_rate`` (primary definition): ``returning_customers / active_customers``, the share of this
  period's buyers who had bought before.
* ``cumulative_repeat_rate`` (second definition, the usual "repeat customer rate"): share of all customers up to
  the end of P who have placed at least two orders by then.
* ``purchase_frequency``: ``orders / active_customers``.
* ``orders``: distinct orders in P; ``average_order_value``: gross order value (before returns) / orders.
* ``revenue``: net of returns: purchases in P minus returns in P (whoever returns).
* ``returning_revenue``: net revenue in P of customers whose first order was before P (their returns in P count
  against it even when they did not buy in P); ``returning_revenue_share = returning_revenue / revenue``
  (0 when revenue <= 0).
* ``historic_customer_value``: cumulative net revenue up to the end of P / customers (with an order) up to then.
* ``predicted_customer_value``: simple retention-based lifetime value over the trailing year T (the last 12
  months, 52 weeks, 4 quarters or 1 year up to and including P)::

      annual value  = net revenue in T / customers with an order in T
                    (= net revenue per order x orders per customer per year)
      retention r   = share of T's customers with at least 2 orders in T, capped at 0.9
      lifetime      = 1 / (1 - r) years                      (``expected_lifetime_years``, 1 to 10)
      predicted     = annual value x lifetime

  With less than a year of data, T is shorter and the estimate is conservative.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pyarrow as pa

from recommender.data.schema import PURCHASE
from recommender.marketing.rfm import open_sales, to_arrow, with_monetary_unit

PERIODS: dict[str, tuple[str, str, int]] = {
    # period: (date_trunc unit, one period as an interval, periods in the trailing year)
    "week": ("week", "INTERVAL 7 DAY", 52),
    "month": ("month", "INTERVAL 1 MONTH", 12),
    "quarter": ("quarter", "INTERVAL 3 MONTH", 4),
    "year": ("year", "INTERVAL 1 YEAR", 1),
}
"""Supported periods. Weeks start on Monday (ISO)."""

MAX_RETENTION = 0.9
"""Cap on the retention used for the predicted customer value (lifetime at most 10 years)."""

KPI_SCHEMA = pa.schema(
    [
        ("period_start", pa.timestamp("us")),
        ("active_customers", pa.int64()),
        ("new_customers", pa.int64()),
        ("returning_customers", pa.int64()),
        ("repeat_purchase_rate", pa.float64()),
        ("cumulative_repeat_rate", pa.float64()),
        ("purchase_frequency", pa.float64()),
        ("orders", pa.int64()),
        ("average_order_value", pa.float64()),
        ("revenue", pa.float64()),
        ("returning_revenue", pa.float64()),
        ("returning_revenue_share", pa.float64()),
        ("historic_customer_value", pa.float64()),
        ("expected_lifetime_years", pa.float64()),
        ("predicted_customer_value", pa.float64()),
    ]
)


def _period_spec(period: str) -> tuple[str, str, int]:
    try:
        return PERIODS[period]
    except (KeyError, TypeError):
        raise ValueError(f"unknown period {period!r}; expected one of: {', '.join(PERIODS)}") from None


_KPI_SQL = """
    WITH bounds AS (
        SELECT date_trunc('{unit}', min(timestamp)) AS lo, date_trunc('{unit}', max(timestamp)) AS hi
        FROM events
    ), periods AS (
        SELECT CAST(g.generate_series AS TIMESTAMP) AS ps
        FROM bounds, generate_series(bounds.lo, bounds.hi, {step}) AS g
        WHERE bounds.lo IS NOT NULL
    ), orders AS (
        SELECT user_id, order_id, min(ts) AS ts, sum(value) AS gross
        FROM sales WHERE event_type = '{purchase}' GROUP BY user_id, order_id
    ), firsts AS (
        SELECT user_id,
               date_trunc('{unit}', min(ts)) AS first_ps,
               date_trunc('{unit}', (list(ts ORDER BY ts))[2]) AS second_ps
        FROM orders GROUP BY user_id
    ), cp AS (   -- per customer and period: orders, gross order value, net value
        SELECT user_id, ps, sum(n_orders) AS n_orders, sum(gross) AS gross, sum(net) AS net
        FROM (
            SELECT user_id, date_trunc('{unit}', ts) AS ps, 1 AS n_orders, gross, 0.0 AS net FROM orders
            UNION ALL
            SELECT user_id, date_trunc('{unit}', ts), 0, 0.0, value FROM sales
        ) GROUP BY user_id, ps
    ), per AS (
        SELECT cp.ps,
               count(*) FILTER (WHERE n_orders > 0) AS n_active,
               count(*) FILTER (WHERE n_orders > 0 AND f.first_ps = cp.ps) AS n_new,
               count(*) FILTER (WHERE n_orders > 0 AND f.first_ps < cp.ps) AS n_returning,
               sum(n_orders) AS orders, sum(gross) AS gross, sum(net) AS revenue,
               coalesce(sum(net) FILTER (WHERE f.first_ps < cp.ps), 0.0) AS returning_revenue
        FROM cp LEFT JOIN firsts f USING (user_id)
        GROUP BY cp.ps
    ), firsts_per AS (
        SELECT first_ps AS ps, count(*) AS firsts FROM firsts GROUP BY first_ps
    ), seconds_per AS (
        SELECT second_ps AS ps, count(*) AS seconds FROM firsts WHERE second_ps IS NOT NULL GROUP BY second_ps
    ), trailing_cust AS (  -- per period P and customer: activity in the trailing year ending with P
        SELECT p.ps, cp.user_id, sum(cp.n_orders) AS n_orders, sum(cp.net) AS net
        FROM periods p JOIN cp ON cp.ps <= p.ps AND cp.ps > p.ps - {trailing} * {step}
        GROUP BY p.ps, cp.user_id
    ), trail AS (
        SELECT ps, sum(net) AS net,
               count(*) FILTER (WHERE n_orders > 0) AS customers,
               count(*) FILTER (WHERE n_orders > 1) AS repeaters
        FROM trailing_cust GROUP BY ps
    ), joined AS (
        SELECT p.ps,
               coalesce(per.n_active, 0) AS n_active, coalesce(per.n_new, 0) AS n_new,
               coalesce(per.n_returning, 0) AS n_returning, coalesce(per.orders, 0) AS orders,
               coalesce(per.gross, 0.0) AS gross, coalesce(per.revenue, 0.0) AS revenue,
               coalesce(per.returning_revenue, 0.0) AS returning_revenue,
               sum(coalesce(fp.firsts, 0)) OVER w AS customers_to_date,
               sum(coalesce(sp.seconds, 0)) OVER w AS repeaters_to_date,
               sum(coalesce(per.revenue, 0.0)) OVER w AS revenue_to_date,
               coalesce(t.net, 0.0) AS t_net, coalesce(t.customers, 0) AS t_customers,
               CASE WHEN t.customers > 0 THEN least(t.repeaters / t.customers, {max_retention})
                    ELSE 0.0 END AS retention
        FROM periods p
        LEFT JOIN per USING (ps)
        LEFT JOIN firsts_per fp USING (ps)
        LEFT JOIN seconds_per sp USING (ps)
        LEFT JOIN trail t USING (ps)
        WINDOW w AS (ORDER BY p.ps ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT ps AS period_start,
           n_active AS active_customers, n_new AS new_customers, n_returning AS returning_customers,
           CASE WHEN n_active > 0 THEN n_returning / n_active ELSE 0.0 END AS repeat_purchase_rate,
           CASE WHEN customers_to_date > 0 THEN repeaters_to_date / customers_to_date ELSE 0.0 END
               AS cumulative_repeat_rate,
           CASE WHEN n_active > 0 THEN orders / n_active ELSE 0.0 END AS purchase_frequency,
           orders,
           CASE WHEN orders > 0 THEN gross / orders ELSE 0.0 END AS average_order_value,
           revenue, returning_revenue,
           CASE WHEN revenue > 0 THEN returning_revenue / revenue ELSE 0.0 END AS returning_revenue_share,
           CASE WHEN customers_to_date > 0 THEN revenue_to_date / customers_to_date ELSE 0.0 END
               AS historic_customer_value,
           CASE WHEN t_customers > 0 THEN 1.0 / (1.0 - retention) ELSE 0.0 END AS expected_lifetime_years,
           CASE WHEN t_customers > 0 THEN t_net / t_customers / (1.0 - retention) ELSE 0.0 END
               AS predicted_customer_value
    FROM joined
    ORDER BY ps
    """
"""Every KPI row per period in one query; ``unit``, ``step`` and ``trailing`` come from :data:`PERIODS`."""


def _kpis(con: duckdb.DuckDBPyConnection, period: str) -> pa.Table:
    unit, step, trailing = _period_spec(period)
    sql = _KPI_SQL.format(unit=unit, step=step, trailing=trailing, purchase=PURCHASE, max_retention=MAX_RETENTION)
    return to_arrow(con.sql(sql)).cast(KPI_SCHEMA)


def compute_kpis(events: pa.Table, period: str = "month") -> pa.Table:
    """One row per period ("week", "month", "quarter" or "year") with the KPIs of the module docstring.

    Raises ValueError for an unknown period. The schema metadata ``monetary_unit`` is "currency" or "units".
    """
    _period_spec(period)
    con, unit = open_sales(events)
    try:
        return with_monetary_unit(_kpis(con, period), unit)
    finally:
        con.close()


def kpi_summary(events: pa.Table) -> dict[str, Any]:
    """Headline figures for the whole span of the events.

    Keys: start, end (first and last event), monetary_unit, customers (with an order), orders, gross_revenue,
    returns (value returned, positive), revenue (net), average_order_value (gross / orders), purchase_frequency
    (orders per customer), repeat_customers (customers with 2+ orders), repeat_customer_rate, historic_customer_value
    (net revenue / customers), and expected_lifetime_years and predicted_customer_value of the last month.
    """
    con, unit = open_sales(events)
    try:
        start, end = con.execute("SELECT min(timestamp), max(timestamp) FROM events").fetchall()[0]
        row = con.execute(
            f"""
            WITH per_customer AS (
                SELECT user_id, count(DISTINCT order_id) FILTER (WHERE event_type = '{PURCHASE}') AS n_orders
                FROM sales GROUP BY user_id
            )
            SELECT (SELECT count(*) FROM per_customer WHERE n_orders > 0),
                   (SELECT sum(n_orders) FROM per_customer),
                   (SELECT count(*) FROM per_customer WHERE n_orders > 1),
                   (SELECT coalesce(sum(value) FILTER (WHERE event_type = '{PURCHASE}'), 0) FROM sales),
                   (SELECT coalesce(-sum(value) FILTER (WHERE event_type <> '{PURCHASE}'), 0) FROM sales)
            """
        ).fetchall()[0]
        monthly = _kpis(con, "month")
    finally:
        con.close()
    customers, orders, repeaters, gross, returns = (int(row[0]), int(row[1] or 0), int(row[2]), row[3], row[4])
    last: dict[str, Any] = monthly.slice(monthly.num_rows - 1).to_pylist()[0] if monthly.num_rows else {}
    revenue = float(gross - returns)
    return {
        "start": start,
        "end": end,
        "monetary_unit": unit,
        "customers": customers,
        "orders": orders,
        "gross_revenue": float(gross),
        "returns": float(returns),
        "revenue": revenue,
        "average_order_value": float(gross) / orders if orders else 0.0,
        "purchase_frequency": orders / customers if customers else 0.0,
        "repeat_customers": repeaters,
        "repeat_customer_rate": repeaters / customers if customers else 0.0,
        "historic_customer_value": revenue / customers if customers else 0.0,
        "expected_lifetime_years": last.get("expected_lifetime_years", 0.0),
        "predicted_customer_value": last.get("predicted_customer_value", 0.0),
    }


def period_end(period_start: dt.datetime, period: str) -> dt.datetime:
    """The (exclusive) end of the period that starts at ``period_start``."""
    _, step, _ = _period_spec(period)
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT CAST(? AS TIMESTAMP) + {step}", [period_start]).fetchall()[0][0]
    finally:
        con.close()
