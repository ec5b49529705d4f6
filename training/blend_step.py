"""The job's blend step: learn the ranker on the gate's holdout (or reuse the current version's while fresh), and
build the blended lists when it serves.

The ranker learns from the events before the promotion gate's holdout (the last ``gate_days``) and the purchases in
it, reusing the gate's ALS fit on exactly those events; without a gate fit it fits one itself. With ``blend_windows``
2 (the default) it also learns from the ``gate_days`` before the holdout, with an ALS fit of its own on the events
before them (judged on the holdout only). :func:`recommender.evaluation.blend_learning.learn_blend` decides, on
customers held out of its training, whether the blend beats the current policy; the manifest's ``blend`` block says
what it measured and chose.

Learning is the costly part of the step, so it is kept like self-tuning's settings (:mod:`training.self_tune`): the
version stores the ranker (:data:`cache.keys.Keys.BLEND_RANKER`, its checksum in the block) and the following nights
reuse ranker and decision (``reused``, ``reused_from``) until it is ``blend_max_age_days`` old, the night re-tunes,
the settings it was learnt with change, or the stored ranker cannot be read; the block's ``learnt_because`` says
which. A reused "the policy serves" builds no candidates at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import scipy.sparse as sp

from cache.keys import Keys
from cache.publisher import current_version, manifest
from recommender.config import ModelSettings
from recommender.data.clock import age_days
from recommender.evaluation.blend_learning import BlendOutcome, blended, earlier_window, learn_blend
from recommender.models.als_recommender import AlsFit, AlsRecommender
from recommender.models.blend_candidates import CandidateSources, Neighbours
from recommender.models.blend_ranker import BlendRanker
from recommender.models.repeat import NextPick, Pick, RepeatIndex
from recommender.models.weighting import Interactions, latest_timestamp
from recommender.serving.blended import recent_buyers
from training.night_holdout import NightHoldout

BlendLists = Callable[[list[str], Mapping[str, Iterable[Pick]]], dict[str, list[NextPick]]]
"""(customers, their policy lists) -> their blended lists."""
PolicyPicks = tuple[list[Pick], list[Pick]]
"""A customer's (personal, next-purchase) picks, as the job publishes them."""


NOT_LEARNT_FROM = frozenset(
    {
        "active_days",
        "blend_days",
        "blend_max_age_days",
        "bestseller_days",
        "new_arrival_days",
        "similar_size",
        "similar_exact_max_items",
    }
)
"""List settings the ranker and its decision do not depend on (which lists are precomputed, the other lists): a
change of one of them does not make the night learn again."""


@dataclass
class NightBlend:
    """The night's blend: the outcome that builds the served lists, the manifest's ``blend`` block, and the ranker as
    the version stores it (None when there is none to store)."""

    outcome: BlendOutcome | None
    block: dict[str, Any]
    stored: bytes | None = None


def night_blend(
    client: Any,
    keys: Keys,
    holdout: NightHoldout,
    items: pa.Table,
    settings: ModelSettings,
    tuned: dict[str, Any] | None,
    share_is_rule: bool = True,
) -> NightBlend:
    """The serving version's ranker and decision while they are fresh (see the module docstring), else learnt now
    on the night's holdout (the gate's split, and its ALS fit when it left one); ``share_is_rule``: see
    :func:`recommender.evaluation.blend_learning.learn_blend`."""
    if not settings.lists.blend:
        return NightBlend(None, {"skipped": "off (RECO_BLEND=false)"})
    version = current_version(client, keys)[0]
    previous = (manifest(client, keys, version) or {}).get("blend") if version else None
    depends_on = learnt_with(settings, holdout.days, share_is_rule)
    why = stale_because(previous, tuned, depends_on, datetime.now(timezone.utc), settings.lists.blend_max_age_days)
    if why is None and previous is not None and version is not None:
        try:
            return reused(client, keys, version, previous)
        except ValueError as exc:  # missing or damaged: learn again, and say so
            why = str(exc)
    outcome, block = learn(holdout, items, settings, share_is_rule)
    if "skipped" in block:
        return NightBlend(outcome, block)
    stored = outcome.ranker.to_bytes() if outcome is not None and outcome.ranker is not None else None
    block |= {
        "learnt_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "learnt_with": depends_on,
        "learnt_because": why,
        "reused": False,
    }
    if stored is not None:
        block["ranker_sha256"] = _digest(stored)
    return NightBlend(outcome, block, stored)


def learnt_with(settings: ModelSettings, gate_days: int, share_is_rule: bool = True) -> dict[str, Any]:
    """The settings a ranker and its decision depend on, as the manifest keeps them (JSON values): whether the repeat
    share is a rule too (:func:`recommender.evaluation.blend_learning.learn_blend`)."""
    values = settings.as_dict()
    values["lists"] = {k: v for k, v in values["lists"].items() if k not in NOT_LEARNT_FROM}
    depends = {**values, "gate_days": gate_days, "repeat_share_is_rule": share_is_rule}
    return orjson.loads(orjson.dumps(depends))


def stale_because(
    previous: dict[str, Any] | None,
    tuned: dict[str, Any] | None,
    settings: dict[str, Any],
    now: datetime,
    max_age_days: float,
) -> str | None:
    """Why the night learns the ranker again (the serving version's ``blend`` block is ``previous``), or None when
    it may reuse it."""
    if not previous or "skipped" in previous or not previous.get("learnt_at") or "chosen" not in previous:
        return "the serving version has no learned blend"
    if tuned and "skipped" not in tuned and not tuned.get("reused"):
        return "the night re-tuned its settings"
    if previous.get("learnt_with") != settings:
        return "the model settings changed since it was learned"
    age = age_days(previous["learnt_at"], now)
    if age is None:
        return f"its learning time {previous['learnt_at']!r} is unreadable"
    if age < 0:
        return f"it is dated {previous['learnt_at']}, after now"
    if age >= max_age_days:
        return f"it was {age:.1f} days old (the age limit is {max_age_days:g} days)"
    return None


def reused(client: Any, keys: Keys, version: str, previous: dict[str, Any]) -> NightBlend:
    """The serving ``version``'s decision, and its ranker when the blend serves; ValueError saying why when that
    ranker is missing or unreadable. A reused "the policy serves" needs no ranker (and the new version keeps none)."""
    drop = ("seconds", "learnt_because", "ranker_sha256", "neighbours")
    block = {k: v for k, v in previous.items() if k not in drop} | {"reused": True, "reused_from": version}
    if not previous["chosen"]:
        return NightBlend(BlendOutcome(None, False, block), block)
    raw = client.get(keys.key(version, Keys.BLEND_RANKER))
    if raw is None:
        raise ValueError(f"the ranker of version {version} is missing")
    # Checked before LightGBM reads it: LightGBM aborts the process on some damaged model strings.
    if _digest(raw) != previous.get("ranker_sha256"):
        raise ValueError(f"the ranker of version {version} does not match its checksum (damaged)")
    try:
        ranker = BlendRanker.from_bytes(raw, previous.get("importance"))
    except ValueError as exc:
        raise ValueError(f"the ranker of version {version} could not be read: {exc}") from None
    block["ranker_sha256"] = previous["ranker_sha256"]
    return NightBlend(BlendOutcome(ranker, True, block), block, raw)


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def learn(
    holdout: NightHoldout, items: pa.Table, settings: ModelSettings, share_is_rule: bool = True
) -> tuple[BlendOutcome | None, dict[str, Any]]:
    """A ranker learnt tonight and the manifest's ``blend`` block (the blend is on)."""
    if holdout.too_short:
        return None, {"skipped": f"less than {2 * holdout.days} days of history to learn the blend on"}
    split = holdout.split()
    fit, repeats = holdout.fit, holdout.repeats
    if fit is None:  # no gate tonight (or it fitted on Spark): fit on the events before the holdout
        als = AlsRecommender(settings.als, settings.weights.as_dict(), settings.half_life_days)
        fit = als.fit(split.train, items=items).fitted
    customers, rule = settings.lists.blend_customers, share_is_rule
    outcome = learn_blend(
        split.train,
        split.test,
        items,
        fit,
        settings,
        max_customers=customers,
        repeats=repeats,
        share_is_rule=rule,
        earlier=lambda: earlier_window(split.train, holdout.days, items, settings),
    )
    block = dict(outcome.report)
    if "skipped" in block:
        return outcome, block
    gain = block.get("gain", {})
    z = gain.get("z", 0.0)
    if outcome.chosen:
        block["decision"] = f"the blend serves (its gain z {z:.1f})"
    elif gain.get("mean", 0.0) <= 0:
        block["decision"] = f"the policy serves (it did as well as the blend or better on validation, z {z:.1f})"
    else:
        block["decision"] = f"the policy serves (the blend's gain on validation, z {z:.1f}, is not clearly above noise)"
    return outcome, block


def blend_lists(
    outcome: BlendOutcome | None,
    events: pa.Table,
    items: pa.Table,
    inter: Interactions,
    model: Any,
    bought: sp.csr_matrix,
    hidden: np.ndarray,
    repeats: RepeatIndex,
    n: int,
    neighbours: Neighbours | None = None,
) -> BlendLists | None:
    """What builds the served blended lists from the run's own fit, or None when the policy serves (``neighbours``:
    the co-purchase neighbours kept with the ranker, :mod:`training.blend_neighbours`; computed without)."""
    if outcome is None or not outcome.chosen or outcome.ranker is None:
        return None
    ranker = outcome.ranker
    fit = AlsFit(inter, model, bought, bought, hidden, latest_timestamp(events))
    sources = CandidateSources(events, items, fit, repeats, neighbours=neighbours)
    return lambda users, fallback: blended(sources, ranker, users, fallback, n)


def published_lists(blend: BlendLists, policy: Mapping[str, Callable[[], PolicyPicks]]) -> dict[str, PolicyPicks]:
    """The blended (personal, next-purchase) picks of the customers of ``policy``, the blended list serving as both;
    a customer's policy picks (``policy[customer]()``) are computed only when their blended list is short of the list
    size and is topped up from them, not for every customer."""
    mixed = blend(list(policy), {u: _next_picks(picks_of) for u, picks_of in policy.items()})
    return {u: (list(mixed[u]), list(mixed[u])) for u in policy}


def _next_picks(picks_of: Callable[[], PolicyPicks]) -> Iterator[Pick]:
    """The policy's next-purchase picks, computed when first asked for (as the policy gives them: the top-up wraps
    the few it takes)."""
    yield from picks_of()[1]


def blend_rows(events: pa.Table, inter: Interactions, days: int) -> np.ndarray:
    """Matrix rows of customers who bought within ``days`` of the newest event (their lists are precomputed)."""
    users = recent_buyers(events, latest_timestamp(events), days) if days > 0 else frozenset()
    return np.array(sorted(inter.user_index[u] for u in users if u in inter.user_index), dtype=np.int64)


def describe(block: dict[str, Any] | None) -> str:
    """One line for ``reco status`` and the job summary: the decision, its validation figures, when it was learnt."""
    if not block:
        return "not learned"
    if "skipped" in block:
        return f"not learned: {block['skipped']}"
    v = block.get("validation", {})
    figures = ", ".join(f"{name} ndcg@10 {v[name]['ndcg@10']:.4f}" for name in ("blend", "policy") if name in v)
    if block.get("reused"):
        how = f"reused from {block.get('reused_from')}"
    else:
        seconds = sum(block.get("seconds", {}).values())
        how = f"learned in {seconds:.0f} s: {block.get('learnt_because')}"
    return f"{block.get('decision')} ({figures} on customers held out of its training; {block.get('learnt_at')}, {how})"
