"""Learning the blend each night, and choosing it only when it beats the current policy on the shop's own data.

:func:`learn_blend` gets the events before a cut-off (the model fitted on them) and the purchases of the window after
it; that window lies inside the run's training events (the job uses its promotion gate's holdout: the last
``gate_days``), never a window the served lists are judged on later. The customers who bought in the window (at most
``max_customers``, a seeded sample) are split in two halves, and each half is judged by a ranker learnt from the
other (:func:`recommender.models.blend_ranker.train_ranker`; two-fold cross-fitting): the blended list and the
current policy's list (:func:`recommender.serving.policy.production_picks`: items due again, then ALS) are scored
with the protocol's metric code on customers the ranker never saw, and every customer counts once, so a small shop's
choice rests on all its customers instead of half of them. With ``earlier`` (:func:`earlier_window`: the same
length of window just before, its own ALS fit on the events before it) the rankers also learn from that window's
buyers (each with the ranker of their half of the judged customers, if one), never judged there: twice the
outcomes, from two months rather than one (docs/QUALITY.md, "Two label windows"). The blend is chosen when its
ndcg@10 is clearly higher: a mean per-customer gain of at least ``blend_min_z`` standard errors of the paired
difference (1.645 by default, one-sided 95 %); the ranker that serves then learns from every row. It costs about
half a night's lists, and a gain within noise is no reason to pay for it. Otherwise the current policy keeps serving.
A repeat share below 1 (slots the policy must give to items not bought) set for the lists is a rule the ranker does
not follow: the policy serves. One the night's self-tuning chose is the policy's best setting, not a rule: the policy
is judged at it and the ranker orders bought and new items as it learnt (docs/QUALITY.md: held to the share, it lost).
Nothing is tuned to a particular log: the choice is made per shop, per night.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from recommender.config import ModelSettings
from recommender.evaluation import metrics
from recommender.evaluation.metrics import clearly_better, paired_gain
from recommender.evaluation.split import span_days, targets, time_split
from recommender.models.als_recommender import AlsFit, AlsRecommender
from recommender.models.blend_candidates import BlendParams, CandidateBatch, CandidateSources
from recommender.models.blend_ranker import BlendRanker, labels, ranked_picks, train_ranker, with_fallback
from recommender.models.repeat import NextPick, Pick, RepeatIndex, as_next_pick, repeat_candidates
from recommender.serving.lists import personal_picks_of
from recommender.serving.policy import production_picks

BATCH = 256
"""Customers whose candidates are built at once (dense ALS scores of a batch: BATCH x items floats)."""
LEARN_BATCH = 64
"""The same while learning, where every batch's candidates are kept until the ranker is trained and judged: a batch's
transient arrays grow with the catalogue, not the shop (256 customers of 100,000 items: about 550 MB at once, 64:
about 200 MB), and smaller batches cost no time there (measured on a generated 3M-event shop)."""
BUILDERS = 2 if (os.cpu_count() or 1) > 1 else 1
"""Threads that build the blended lists' candidate batches side by side, half a :data:`BATCH` each. On 2 cores, a
generated shop of 32,000 customers and 24,000 items: its 31,000 blended lists took 45-51 s with one builder, 37-47 s
with two (four nights each); online-retail's 4.5-4.6 s and 4.7-4.8 s, complete-journey's 12.7 s either way (within
their spread). Half a batch each was as fast as a whole one (33-36 s against 34-36 s, two nights each) and keeps the
job's peak memory where one builder had it (complete-journey 1.96 GB; two whole batches: 2.13 GB)."""
JUDGED_AT = 10


@dataclass(frozen=True)
class LabelWindow:
    """A window of purchases to learn from: the events before it, the ALS fit on them (and how long it took), and
    the window's events."""

    train: pa.Table
    window: pa.Table
    fit: AlsFit
    fit_seconds: float = 0.0


def earlier_window(train: pa.Table, days: int, items: pa.Table, settings: ModelSettings) -> LabelWindow | None:
    """The last ``days`` of ``train`` (the events before the judged window) as a second window to learn from, with an
    ALS fit of ``settings`` on the events before it; None with ``blend_windows`` 1 or when that leaves less than
    ``days`` of history."""
    if settings.lists.blend_windows < 2 or span_days(train) < 2 * days:
        return None
    inner = time_split(train, test_days=days)
    started = time.perf_counter()
    als = AlsRecommender(settings.als, settings.weights.as_dict(), settings.half_life_days)
    fit = als.fit(inner.train, items=items).fitted
    return LabelWindow(inner.train, inner.test, fit, time.perf_counter() - started)


@dataclass
class BlendOutcome:
    """What one night's learning left: the ranker (None if it could not learn), whether it serves, and why."""

    ranker: BlendRanker | None
    chosen: bool
    report: dict[str, Any] = field(default_factory=dict)


def policy_lists(
    fit: AlsFit, repeats: RepeatIndex, users: list[str], n: int, repeat_share: float
) -> dict[str, list[NextPick]]:
    """The current policy's personal list of each customer the fit knows (items due again, then ALS discovery)."""
    explore = personal_picks_of(fit.model, fit.inter, users, n, fit.bought, fit.hidden)
    gone = frozenset(fit.inter.item_ids[fit.hidden].tolist()) if len(fit.hidden) else frozenset()
    return {
        u: [as_next_pick(p) for p in production_picks(repeats, u, explore.get(u, []), n, repeat_share, gone)]
        for u in users
        if u in fit.inter.user_index
    }


def batches(sources: CandidateSources, users: list[str]) -> list[CandidateBatch]:
    """The candidates of ``users``, :data:`LEARN_BATCH` customers a batch (on one thread: with batches this small,
    two builders gained nothing on the generated 24,000-item shop and lost on online-retail)."""
    return [sources.batch(users[i : i + LEARN_BATCH]) for i in range(0, len(users), LEARN_BATCH)]


def blended(
    sources: CandidateSources,
    ranker: BlendRanker,
    users: list[str],
    fallback: Mapping[str, Iterable[Pick]],
    n: int,
) -> dict[str, list[NextPick]]:
    """The blended lists of ``users``, each topped up with its ``fallback`` list.

    The next batches' candidates are built on :data:`BUILDERS` threads while this one ranks and picks the last:
    building is numpy's and scipy's work on whole arrays (it lets go of the interpreter), the picks are Python's.
    Each builder works on ``BATCH // BUILDERS`` customers with work arrays of its own, so the transient memory is
    that of one builder of :data:`BATCH`."""
    out: dict[str, list[NextPick]] = {}
    size = max(1, BATCH // BUILDERS)  # BATCH customers in the making at once, whatever the number of builders
    parts = [users[start : start + size] for start in range(0, len(users), size)]
    with ThreadPoolExecutor(max_workers=BUILDERS) as builders:
        ahead = deque(builders.submit(sources.batch, part) for part in parts[:BUILDERS])
        for k in range(len(parts)):
            batch = ahead.popleft().result()
            if k + BUILDERS < len(parts):  # a batch ahead per builder at most: built batches wait in memory
                ahead.append(builders.submit(sources.batch, parts[k + BUILDERS]))
            out.update(ranked_lists([batch], sources, ranker, fallback, n))
    return out


def ranked_lists(
    built: list[CandidateBatch],
    sources: CandidateSources,
    ranker: BlendRanker,
    fallback: Mapping[str, Iterable[Pick]],
    n: int,
) -> dict[str, list[NextPick]]:
    """The blended lists of the customers of batches already ``built`` from ``sources``, topped up with ``fallback``."""
    out: dict[str, list[NextPick]] = {}
    item_ids = sources.fit.inter.item_ids
    for batch in built:
        picks = ranked_picks(batch, ranker.score(batch), item_ids, sources.as_of, n)
        out.update({u: with_fallback(p, fallback.get(u, []), n) for u, p in picks.items()})
    return out


def learn_blend(
    train: pa.Table,
    window: pa.Table,
    items: pa.Table,
    fit: AlsFit,
    settings: ModelSettings,
    *,
    max_customers: int = 4000,
    params: BlendParams | None = None,
    seed: int = 0,
    repeats: RepeatIndex | None = None,
    share_is_rule: bool = True,
    earlier: Callable[[], LabelWindow | None] | None = None,
) -> BlendOutcome:
    """Judge a ranker learnt on each half of the customers who bought in ``window`` on the other half against the
    current policy (see the module docstring). ``fit`` is the ALS fit on ``train``, ``repeats`` its repeat model
    when the caller has it; ``share_is_rule``: False when self-tuning chose the repeat share (see above);
    ``earlier``: makes a window before, whose buyers every ranker also learns from (called only once the window
    has enough buyers to learn from: it fits ALS)."""
    started = time.perf_counter()
    if share_is_rule and settings.repeat_share < 1.0:
        why = f"repeat share {settings.repeat_share} < 1 set for the lists, a rule the ranker does not follow"
        return BlendOutcome(None, False, {"skipped": f"{why}: the policy serves"})
    truth = _buyers(window, fit)
    users = sorted(truth)
    if len(users) < 20:
        return BlendOutcome(None, False, {"skipped": f"{len(users)} customers bought in the window: too few to learn"})
    learn, judge = halves = split_halves(users, max_customers, seed)
    if repeats is None:
        repeats = repeat_candidates(train, fit.as_of, settings.lists.next_purchase_horizon_days)
    sources = CandidateSources(train, items, fit, repeats, params)
    built = time.perf_counter()
    half_batches = [batches(sources, half) for half in halves]  # each half's candidates are built once, used twice
    rows = [_training_rows(b, sources, truth) for b in half_batches]
    if not all(r[1].any() for r in rows):
        why = "no candidate was bought in the label window by the customers of one half: too little to learn from"
        return BlendOutcome(None, False, {"skipped": why})
    before = earlier() if earlier is not None else None
    extra, earlier_customers = _earlier_rows(before, items, settings, halves, max_customers, params, seed)
    built_earlier = time.perf_counter()
    rankers = [train_ranker(*_joined([rows[k], extra[k]])) for k in (0, 1)]
    trained = time.perf_counter()
    n = JUDGED_AT
    policy: dict[str, list[NextPick]] = {}
    mixed: dict[str, list[NextPick]] = {}
    for k in (0, 1):  # each half is judged by the ranker the other half trained: every customer counts once
        held_out = policy_lists(fit, repeats, halves[1 - k], settings.lists.list_size, settings.repeat_share)
        policy.update(held_out)
        mixed.update(ranked_lists(half_batches[1 - k], sources, rankers[k], held_out, n))
    judged = [*learn, *judge]
    per_user = {  # each judged customer's figures: their means are the scores, their differences the gain
        name: {metric: metrics.per_user(metric, _ids(lists), truth, n, judged) for metric in ("ndcg", "recall")}
        for name, lists in (("blend", mixed), ("policy", policy))
    }
    score = {name: {f"{m}@{n}": round(float(v.mean()), 5) for m, v in f.items()} for name, f in per_user.items()}
    gain = paired_gain(per_user["blend"]["ndcg"], per_user["policy"]["ndcg"])
    chosen = clearly_better(gain, settings.lists.blend_min_z)
    # the judged window's bought items among the candidates (the rows left out hold no bought candidate)
    found = float(rows[0][1].sum() + rows[1][1].sum()) / max(rows[0][3] + rows[1][3], 1)
    ranker = train_ranker(*_joined([*rows, *extra])) if chosen else rankers[0]  # what serves learns from everyone
    learnt_rows = sum(len(r[1]) for r in (*rows, *extra) if r is not None)
    report = {
        "chosen": chosen,
        "validation": score,
        "gain": gain,
        "customers": {
            "learn": len(learn),
            "judge": len(judge),
            "judged": len(learn) + len(judge),
            "earlier_window": earlier_customers,
        },
        "candidate_recall": round(found, 4),
        "rows": int(learnt_rows),
        "importance": ranker.importance,
        "seconds": {
            **({"earlier_fit": round(before.fit_seconds, 2)} if before is not None else {}),
            "sources": round(built - started, 2),
            "earlier_window": round(built_earlier - built, 2),
            "train": round(trained - built_earlier, 2),
            "judge": round(time.perf_counter() - trained, 2),
        },
    }
    return BlendOutcome(ranker, chosen, report)


def split_halves(users: list[str], max_customers: int, seed: int) -> tuple[list[str], list[str]]:
    """Two halves of ``users`` (a seeded sample of ``max_customers`` at most), each sorted."""
    users = _sample(users, max_customers, seed)
    order = np.random.default_rng(seed + 1).permutation(len(users))
    return sorted(users[i] for i in order[: len(users) // 2]), sorted(users[i] for i in order[len(users) // 2 :])


def _sample(users: list[str], max_customers: int, seed: int) -> list[str]:
    """``users`` when they are at most ``max_customers``, else a seeded sample of that many, sorted."""
    if len(users) <= max_customers:
        return users
    return sorted(np.random.default_rng(seed).choice(np.array(users, dtype=object), max_customers, False))


def _buyers(window: pa.Table, fit: AlsFit) -> dict[str, set[str]]:
    """What each customer the fit knows bought in ``window`` (customers who bought nothing left out)."""
    return {u: t for u, t in targets(window, "purchase").items() if t and u in fit.inter.user_index}


Rows = tuple[np.ndarray, np.ndarray, np.ndarray, int]
"""Features, labels, query groups, and how many items the customers bought (see :func:`_training_rows`)."""


def _earlier_rows(
    earlier: LabelWindow | None,
    items: pa.Table,
    settings: ModelSettings,
    halves: tuple[list[str], list[str]],
    max_customers: int,
    params: BlendParams | None,
    seed: int,
) -> tuple[list[Rows | None], int]:
    """The training rows of the buyers of the ``earlier`` window (a seeded sample of ``max_customers`` at most) in
    two parts, one per half of the judged customers: a customer of a judged half learns with that half's ranker only,
    so no customer is judged by a ranker that learnt from them in either window (the others are dealt to the
    halves at random). ([None, None], 0) without such a window."""
    if earlier is None:
        return [None, None], 0
    fit = earlier.fit
    truth = _buyers(earlier.window, fit)
    users = _sample(sorted(truth), max_customers, seed + 2)
    side = {u: k for k in (0, 1) for u in halves[k]}
    dealt = np.random.default_rng(seed + 3).integers(0, 2, len(users))
    parts = [[u for u, d in zip(users, dealt) if side.get(u, d) == k] for k in (0, 1)]
    repeats = repeat_candidates(earlier.train, fit.as_of, settings.lists.next_purchase_horizon_days)
    sources = CandidateSources(earlier.train, items, fit, repeats, params)
    rows = [_training_rows(batches(sources, part), sources, truth) if part else None for part in parts]
    return [r if r is not None and r[1].any() else None for r in rows], len(users)


def _joined(parts: Iterable[tuple[np.ndarray, ...] | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and query groups of several row sets, one after the other (None: none)."""
    present = [p for p in parts if p is not None]
    X, y, groups = (np.concatenate([p[i] for p in present]) for i in range(3))
    return X, y, groups


def _training_rows(built: list[CandidateBatch], sources: CandidateSources, truth: dict[str, set[str]]) -> Rows:
    """Features, labels and query groups of the customers of ``built`` batches (customers none of whose candidates
    were bought are left out: they carry no ranking signal), and how many items all the batches' customers bought."""
    xs, ys, gs = [], [], []
    total = 0
    item_ids = sources.fit.inter.item_ids
    for batch in built:
        y = labels(batch, item_ids, truth)
        per_user = np.bincount(batch.user_pos, weights=y, minlength=len(batch.users))
        total += sum(len(truth[u]) for u in batch.users)
        keep = per_user[batch.user_pos] > 0
        xs.append(batch.X[keep])
        ys.append(y[keep])
        groups = batch.groups()
        gs.append(groups[(per_user > 0) & (groups > 0)])
    X = np.concatenate(xs) if xs else np.zeros((0, 0), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int32)
    return X, y, np.concatenate(gs) if gs else np.zeros(0, np.int64), total


def _ids(lists: dict[str, list[NextPick]]) -> dict[str, list[str]]:
    return {u: [p.item_id for p in picks] for u, picks in lists.items()}
