"""The experiment report: feedback, attributed sales and repeat-sales KPIs per variant, and the lift of treatment
over control with 95% intervals.

Customers in the report are those with any event in the report window (visits, feedback or purchases), each in
the variant the stateless assignment gives them (:mod:`recommender.serving.experiment`). Per customer, over the
window: whether they made a repeat purchase (a purchase after an earlier one, before or within the window), their
revenue, and their revenue if they had bought before the window. The KPIs are the means of the first two and the
share of revenue from repeat customers (a ratio of sums). Intervals come from a Poisson bootstrap over customers,
each arm resampled apart; a lift is significant when its interval excludes 0.

Attribution (counted apart): a purchase is "clicked" when the customer clicked that item in a recommendation within
``attribution_days`` before buying it, else "shown" when it was shown to them (an impression) in that time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from recommender.serving.experiment import CONTROL, TREATMENT, parse_rec_id

BOOTSTRAP_ROUNDS = 1000
METRICS = ("repeat_purchase_rate", "revenue_per_customer", "repeat_revenue_share")


def customer_table(events: pa.Table, feedback: pa.Table, start: datetime, end: datetime) -> pa.Table:
    """One row per customer with an event or feedback in [start, end]: repeat (0/1), revenue, revenue_returning."""
    con = duckdb.connect()
    con.register("ev", events)
    con.register("fb", feedback.select(["user_id", "timestamp"]))
    return con.sql(
        """
        WITH buys AS (
          SELECT user_id, timestamp, coalesce(quantity, 1) * coalesce(price, 1) AS value,
                 count(*) FILTER (WHERE timestamp < ?) OVER (PARTITION BY user_id) AS before_window,
                 row_number() OVER (PARTITION BY user_id ORDER BY timestamp) AS nth
          FROM ev WHERE event_type = 'purchase' AND timestamp <= ?),
        per AS (
          SELECT user_id,
                 max(CASE WHEN timestamp >= ? AND nth > 1 THEN 1 ELSE 0 END) AS repeat,
                 sum(CASE WHEN timestamp >= ? THEN value ELSE 0 END) AS revenue,
                 sum(CASE WHEN timestamp >= ? AND before_window > 0 THEN value ELSE 0 END) AS revenue_returning
          FROM buys GROUP BY user_id),
        active AS (SELECT user_id FROM ev WHERE timestamp >= ? AND timestamp <= ?
                   UNION SELECT user_id FROM fb WHERE timestamp >= ? AND timestamp <= ?)
        SELECT a.user_id, coalesce(p.repeat, 0)::DOUBLE AS repeat, coalesce(p.revenue, 0)::DOUBLE AS revenue,
               coalesce(p.revenue_returning, 0)::DOUBLE AS revenue_returning
        FROM active a LEFT JOIN per p USING (user_id) ORDER BY a.user_id
        """,
        params=[start, end, start, start, start, start, end, start, end],
    ).to_arrow_table()


def _stats(x: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """KPIs of customer rows ``x`` (repeat, revenue, revenue_returning), once or per bootstrap round."""
    sums = x.sum(axis=0) if weights is None else weights @ x
    n = x.shape[0] if weights is None else weights.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "repeat_purchase_rate": sums[..., 0] / n,
            "revenue_per_customer": sums[..., 1] / n,
            "repeat_revenue_share": sums[..., 2] / sums[..., 1],
        }


def _bootstrap(x: np.ndarray, rounds: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Poisson bootstrap: each customer counts Poisson(1) times per round (in blocks, to bound memory)."""
    sums = np.zeros((rounds, x.shape[1]))
    n = np.zeros(rounds)
    for at in range(0, x.shape[0], 20_000):
        block = x[at : at + 20_000]
        w = rng.poisson(1.0, size=(rounds, block.shape[0])).astype(np.float64)
        sums += w @ block
        n += w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "repeat_purchase_rate": sums[:, 0] / n,
            "revenue_per_customer": sums[:, 1] / n,
            "repeat_revenue_share": sums[:, 2] / sums[:, 1],
        }


def lift(
    treatment: np.ndarray, control: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> list[dict[str, Any]]:
    """Per KPI: both arms' values, the relative lift of treatment over control, its 95% interval and a verdict."""
    rng = np.random.default_rng(seed)
    point_t, point_c = _stats(treatment), _stats(control)
    boot_t, boot_c = _bootstrap(treatment, rounds, rng), _bootstrap(control, rounds, rng)
    out = []
    for metric in METRICS:
        t, c = float(point_t[metric]), float(point_c[metric])
        with np.errstate(divide="ignore", invalid="ignore"):
            draws = boot_t[metric] / boot_c[metric] - 1
        draws = draws[np.isfinite(draws)]
        value = t / c - 1 if c else float("nan")
        if len(draws) < rounds // 2 or not np.isfinite(value):
            out.append(
                {
                    "metric": metric,
                    "treatment": t,
                    "control": c,
                    "lift": None,
                    "ci_low": None,
                    "ci_high": None,
                    "significant": False,
                    "verdict": "not enough data yet",
                }
            )
            continue
        low, high = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
        significant = low > 0 or high < 0
        entry = {
            "metric": metric,
            "treatment": t,
            "control": c,
            "lift": value,
            "ci_low": low,
            "ci_high": high,
            "significant": significant,
        }
        entry["verdict"] = _verdict(entry, len(treatment) + len(control))
        out.append(entry)
    return out


def _verdict(entry: dict[str, Any], customers: int) -> str:
    interval = f"[{entry['ci_low']:+.1%}, {entry['ci_high']:+.1%}]"
    if entry["significant"]:
        return f"{'lift' if entry['lift'] > 0 else 'drop'} {entry['lift']:+.1%} {interval}"
    # The interval narrows with the square root of the sample: customers needed for it to exclude 0 at this effect
    # (or at a 5% effect when the estimate is about nothing).
    half = (entry["ci_high"] - entry["ci_low"]) / 2
    effect = max(abs(entry["lift"]), 0.05)
    needed = int(customers * (half / effect) ** 2) - customers
    return f"not significant yet ({entry['lift']:+.1%} {interval}); about {max(needed, 1):,} more customers needed"


def feedback_summary(feedback: pa.Table, variant_of: Callable[[str], str]) -> dict[str, dict[str, Any]]:
    """Impressions, clicks and CTR per variant, and per list kind and position (from the recommendation ids)."""
    out: dict[str, dict[str, Any]] = {
        v: {"impressions": 0, "clicks": 0, "by_list": {}, "by_position": {}} for v in (TREATMENT, CONTROL)
    }
    rows = feedback.select([c for c in ("user_id", "event_type", "rec_id", "position") if c in feedback.column_names])
    for row in rows.to_pylist():
        arm = out[variant_of(row["user_id"])]
        kind = "clicks" if row["event_type"] == "click" else "impressions"
        arm[kind] += 1
        parsed = parse_rec_id(row.get("rec_id") or "")
        if parsed is not None:
            arm["by_list"].setdefault(parsed.kind, {"impressions": 0, "clicks": 0})[kind] += 1
        if row.get("position"):
            arm["by_position"].setdefault(str(row["position"]), {"impressions": 0, "clicks": 0})[kind] += 1
    for arm in out.values():
        arm["ctr"] = arm["clicks"] / arm["impressions"] if arm["impressions"] else None
        for group in (*arm["by_list"].values(), *arm["by_position"].values()):
            group["ctr"] = group["clicks"] / group["impressions"] if group["impressions"] else None
    return out


def attributed(events: pa.Table, feedback: pa.Table, start: datetime, days: float) -> pa.Table:
    """Purchases in the window with how they are attributed: 'clicked', 'shown' or none."""
    con = duckdb.connect()
    con.register("ev", events)
    con.register("fb", feedback.select(["user_id", "item_id", "event_type", "timestamp"]))
    return con.sql(
        """
        SELECT p.user_id, p.order_id, coalesce(p.quantity, 1) * coalesce(p.price, 1) AS value,
               CASE WHEN bool_or(f.event_type = 'click') THEN 'clicked'
                    WHEN bool_or(f.event_type = 'impression') THEN 'shown' END AS attributed
        FROM ev p LEFT JOIN fb f ON f.user_id = p.user_id AND f.item_id = p.item_id
             AND f.timestamp <= p.timestamp AND f.timestamp > p.timestamp - to_microseconds(CAST(? AS BIGINT))
        WHERE p.event_type = 'purchase' AND p.timestamp >= ?
        GROUP BY ALL
        """,
        params=[int(days * 86_400 * 1_000_000), start],
    ).to_arrow_table()


def _attributed(mine: np.ndarray, how: np.ndarray, value: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for kind in ("clicked", "shown"):
        rows = mine & (how == kind)
        out[kind] = {"purchases": int(rows.sum()), "revenue": float(value[rows].sum())}
    return out


def experiment_report(
    events: pa.Table,
    feedback: pa.Table,
    variant_of: Callable[[str], str],
    as_of: datetime,
    window_days: int = 28,
    attribution_days: float = 7.0,
    control_share: float = 0.0,
) -> dict[str, Any]:
    """The whole report (JSON-ready): what GET /experiment/report answers and `reco report` shows."""
    start = as_of - timedelta(days=window_days)
    customers = customer_table(events, feedback, start, as_of)
    arms = np.array([variant_of(u) for u in customers["user_id"].to_pylist()])
    x = np.column_stack([customers[c].to_numpy() for c in ("repeat", "revenue", "revenue_returning")])
    sales = attributed(events, feedback, start, attribution_days)
    sale_arms = np.array([variant_of(u) for u in sales["user_id"].to_pylist()])
    how = np.array(sales["attributed"].to_pylist(), dtype=object)
    value = sales["value"].to_numpy() if sales.num_rows else np.zeros(0)
    fb = feedback_summary(feedback, variant_of)
    variants: dict[str, Any] = {}
    for arm in (TREATMENT, CONTROL):
        kpis = _stats(x[arms == arm]) if (arms == arm).any() else dict.fromkeys(METRICS)
        mine = sale_arms == arm
        variants[arm] = {
            "customers": int((arms == arm).sum()),
            **fb[arm],
            "attributed": _attributed(mine, how, value),
            "kpis": {m: (None if v is None or not np.isfinite(v) else float(v)) for m, v in kpis.items()},
        }
    both = (arms == TREATMENT).sum() >= 2 and (arms == CONTROL).sum() >= 2
    return {
        "as_of": as_of.isoformat(),
        "window": {"start": start.isoformat(), "end": as_of.isoformat(), "days": window_days},
        "control_share": control_share,
        "attribution_days": attribution_days,
        "variants": variants,
        "lifts": lift(x[arms == TREATMENT], x[arms == CONTROL]) if both else [],
    }
