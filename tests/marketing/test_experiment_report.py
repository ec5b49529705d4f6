"""The experiment report on generated shops whose true lift is known."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from cache.live import FEEDBACK_SCHEMA
from recommender.data.schema import EVENT_SCHEMA
from recommender.marketing.experiment_report import experiment_report
from recommender.serving.experiment import CONTROL, TREATMENT, make_rec_id, variant_of

AS_OF = datetime(2026, 11, 30)


def shop(n: int, uplift: float, seed: int, share: float = 0.5) -> tuple[pa.Table, pa.Table, float]:
    """Customers who bought once before the window; in it each buys again with probability 0.3, raised by ``uplift``
    (relative) in treatment. Returns events, feedback and the true lift of the repeat-purchase rate."""
    rng = np.random.default_rng(seed)
    users = [f"c{seed}-{k}" for k in range(n)]
    arms = np.array([variant_of(u, "s", share) for u in users])
    p = np.where(arms == TREATMENT, 0.3 * (1 + uplift), 0.3)
    again = rng.random(n) < p
    rows, fb = [], []
    for k, user in enumerate(users):
        rows.append((user, "i1", "purchase", AS_OF - timedelta(days=40), 1.0, 10.0, f"{user}-a"))
        seen = AS_OF - timedelta(days=5)
        fb.append((user, "i2", "impression", seen, make_rec_id("recommend", "v1", arms[k]), 1))
        if again[k]:
            fb.append((user, "i2", "click", seen, make_rec_id("recommend", "v1", arms[k]), 1))
            rows.append((user, "i2", "purchase", AS_OF - timedelta(days=3), 1.0, 10.0, f"{user}-b"))
    events = pa.Table.from_pylist([dict(zip(EVENT_SCHEMA.names, r)) for r in rows], schema=EVENT_SCHEMA)
    feedback = pa.Table.from_pylist([dict(zip(FEEDBACK_SCHEMA.names, r)) for r in fb], schema=FEEDBACK_SCHEMA)
    return events, feedback, uplift


def report(n: int, uplift: float, seed: int) -> dict:
    events, feedback, _ = shop(n, uplift, seed)
    return experiment_report(events, feedback, lambda u: variant_of(u, "s", 0.5), AS_OF, control_share=0.5)


def rate(r: dict) -> dict:
    return next(x for x in r["lifts"] if x["metric"] == "repeat_purchase_rate")


def test_a_clear_effect_is_found_and_the_interval_covers_it():
    found = rate(report(8000, 0.2, seed=1))
    assert found["significant"] and found["ci_low"] > 0
    assert found["ci_low"] <= 0.2 <= found["ci_high"]
    assert found["verdict"].startswith("lift +")


def test_without_an_effect_few_runs_are_called_significant():
    calls = [rate(report(1500, 0.0, seed))["significant"] for seed in range(20)]
    assert sum(calls) <= 1


def test_feedback_attribution_and_counts_per_variant():
    r = report(2000, 0.2, seed=3)
    for arm in (TREATMENT, CONTROL):
        v = r["variants"][arm]
        assert v["customers"] > 800 and v["impressions"] == v["customers"]
        assert 0 < v["clicks"] < v["impressions"] and v["ctr"] == pytest.approx(v["clicks"] / v["impressions"])
        assert v["by_list"]["recommend"]["impressions"] == v["impressions"] and "1" in v["by_position"]
        assert v["attributed"]["clicked"]["purchases"] == v["clicks"]  # every repeat purchase was clicked first
        assert v["attributed"]["shown"]["purchases"] == 0
    assert (
        r["variants"][TREATMENT]["kpis"]["repeat_purchase_rate"]
        > r["variants"][CONTROL]["kpis"]["repeat_purchase_rate"]
    )


def test_small_samples_say_how_many_more_customers_are_needed():
    found = rate(report(200, 0.05, seed=4))
    assert not found["significant"] and "more customers needed" in found["verdict"]
