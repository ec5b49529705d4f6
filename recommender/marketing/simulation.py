"""A simulated shop with a known effect of the recommendations, to check the experiment report against the truth.

Every customer bought once before the simulation. On each simulated day they visit with probability ``visit_prob``
and are shown ``shown`` recommended items; they click a shown item with probability ``click_prob`` and buy it with
probability ``buy_prob``, raised by the relative ``uplift`` in the treatment group (a bought item is clicked first).
All random numbers are drawn once per customer, day and position (common random numbers), so the same customers can
be played under both arms: the relative difference of their repeat-purchase rates is the true lift that the
service's report should find from the events of the arms the customers actually got.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from recommender.serving.experiment import CONTROL, TREATMENT


@dataclass(frozen=True)
class ShopParams:
    """How simulated customers behave; the defaults give a repeat-purchase rate of about 15% in a week."""

    customers: int = 1000
    days: int = 7
    shown: int = 4
    visit_prob: float = 0.3
    click_prob: float = 0.1
    buy_prob: float = 0.02
    uplift: float = 0.0


@dataclass(frozen=True)
class Plan:
    """The random numbers of every customer: visits (customers x days) and, per shown position, the draws that decide
    clicks and purchases (customers x days x shown)."""

    params: ShopParams
    visits: np.ndarray
    click_draw: np.ndarray
    buy_draw: np.ndarray


def plan(params: ShopParams, seed: int) -> Plan:
    """Draw the plan of a simulated shop (same params and seed, same plan)."""
    rng = np.random.default_rng(seed)
    n, d, k = params.customers, params.days, params.shown
    return Plan(params, rng.random((n, d)) < params.visit_prob, rng.random((n, d, k)), rng.random((n, d, k)))


def buy_prob(params: ShopParams, variant: str) -> float:
    """The chance to buy a shown item in a variant."""
    return min(params.buy_prob * (1 + params.uplift) if variant == TREATMENT else params.buy_prob, 1.0)


def outcomes(p: Plan, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """Clicks and purchases (customers x days x shown, bool) if every customer were in ``variant``."""
    seen = p.visits[:, :, None]
    bought = seen & (p.buy_draw < buy_prob(p.params, variant))
    clicked = bought | (seen & (p.click_draw < p.params.click_prob))
    return clicked, bought


def repeat_rate(p: Plan, variant: str) -> float:
    """Share of customers who buy again during the simulation if all were in ``variant``."""
    return float(outcomes(p, variant)[1].any(axis=(1, 2)).mean())


def true_lift(p: Plan) -> float:
    """The relative lift of the repeat-purchase rate that the uplift causes: the same customers under both arms."""
    control = repeat_rate(p, CONTROL)
    return repeat_rate(p, TREATMENT) / control - 1 if control else float("nan")


PRICE = 10.0


def first_purchase(user: str, item: str, at: datetime) -> dict[str, Any]:
    """The purchase every simulated customer made before the simulation (so a later one is a repeat purchase)."""
    return _event(user, item, "purchase", at, price=PRICE, order_id=f"{user}-0")


def visit_events(
    p: Plan, customer: int, day: int, user: str, variant: str, items: list[str], rec_id: str, at: datetime
) -> list[dict[str, Any]]:
    """The feedback and purchases of one visit: an impression per shown item (position from 1), then the clicks, then
    the purchases, a second apart from ``at``; ``items`` are the recommended items in order (at most ``shown``)."""
    seen = bool(p.visits[customer, day])
    bought = seen & (p.buy_draw[customer, day] < buy_prob(p.params, variant))
    clicked = bought | (seen & (p.click_draw[customer, day] < p.params.click_prob))
    shown = items[: p.params.shown]
    out = [_event(user, i, "impression", at, rec_id=rec_id, position=k + 1) for k, i in enumerate(shown)]
    out += [
        _event(user, i, "click", at + timedelta(seconds=1), rec_id=rec_id, position=k + 1)
        for k, i in enumerate(shown)
        if clicked[k]
    ]
    out += [
        _event(user, i, "purchase", at + timedelta(seconds=2), rec_id=rec_id, price=PRICE, order_id=f"{user}-{day}-{k}")
        for k, i in enumerate(shown)
        if bought[k]
    ]
    return out


def _event(user: str, item: str, kind: str, at: datetime, **more: Any) -> dict[str, Any]:
    return {"user_id": user, "item_id": item, "event_type": kind, "timestamp": at, **more}
