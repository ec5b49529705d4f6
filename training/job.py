"""The nightly job: load, weight, fit ALS, compute every list and publish them as one new version."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from tqdm import tqdm

from cache import codec, live, merch
from cache.keys import Keys
from cache.lock import JobLock
from cache.publisher import Publisher, cleanup, manifest, unfinished_versions
from cache.publisher import current_version as current
from cache.publisher import manifest as manifest_of
from cache.status import record_quality
from recommender.config import ListParams, Settings
from recommender.data.clock import TimeWindow, utc_now
from recommender.data.dataset import Dataset, load_dataset
from recommender.data.errors import DataError
from recommender.data.loading import LoadReport, apply_item_updates, complete_catalogue, validate_events
from recommender.data.reading import ROW
from recommender.data.schema import split_feedback
from recommender.evaluation.gate import GateDecision, decide, holdout_context, score_holdout
from recommender.marketing import activity, kpis, rfm
from recommender.marketing.experiment_report import experiment_report
from recommender.models import repeat
from recommender.models.als import fit_als
from recommender.models.weighting import Interactions, build_interactions, latest_timestamp, purchase_matrix
from recommender.serving import customer_lists, lists
from recommender.serving.experiment import variant_of
from recommender.serving.policy import purchaser_picks
from training import blend_step
from training.blend_neighbours import KeptNeighbours
from training.gate_fit import GateWarmStart, serving_fit
from training.memory import give_back
from training.night_holdout import NightHoldout
from training.nightly_fit import NightlyFit
from training.self_tune import self_tune, share_was_tuned


@dataclass
class JobConfig:
    """One run of the job: its input files and switches. Every tunable is in ``settings`` (see
    :func:`recommender.config.load_settings`)."""

    events: Path
    items: Path | None = None
    fmt: str = "generic"
    settings: Settings = field(default_factory=Settings)
    as_of: datetime | None = None
    show_progress: bool = True
    gate: bool = False
    force_publish: bool = False
    engine: str = "implicit"  # or "spark": loading, weighting, fit and top-k on Spark (training/spark_engine.py)
    spark_master: str = "local[*]"
    self_tune: bool = False
    """Search the model settings on a validation window when the current version's are missing or stale."""
    tune_max_age_days: float = 7.0
    tune_budget_seconds: float | None = None
    tune_candidates: int = 9
    pinned: frozenset[str] = frozenset()
    """Model settings given on the command line, which self-tuning must not change (see training/self_tune.py)."""


class GateRefused(Exception):
    """The promotion gate kept the current version: the candidate scored worse on the recent holdout."""

    def __init__(self, decision: GateDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


@dataclass
class JobResult:
    version: str | None
    replaced: str | None
    reports: list[LoadReport]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    as_of: datetime | None = None
    gate: dict[str, Any] | None = None
    tuned: dict[str, Any] | None = None
    blend: dict[str, Any] | None = None
    fit: str | None = None  # how the nightly fit ran (warm start or full fit)


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            give_back()  # what the stage freed, for the next stage and for Redis (training/memory.py)
            self.seconds[name] = round(time.perf_counter() - start, 3)


def item_metadata(items: pa.Table) -> Iterator[tuple[str, dict[str, Any]]]:
    """(item_id, {title, category, price}) for every catalogue item, as the API returns them."""
    for row in items.select(["item_id", "title", "category", "price"]).to_pylist():
        yield row["item_id"], {"title": row["title"], "category": row["category"], "price": row["price"]}


def run_job(cfg: JobConfig, client: Any, data: Dataset | None = None) -> JobResult:
    """Run the whole job against a Redis client and publish, holding the job lock of the key prefix (waiting up to
    ``lock_wait_seconds`` for it); raises DataError on unusable input, LockHeld while another job runs,
    IncompleteVersion when the new version lost keys before its switch."""
    s = cfg.settings
    keys = Keys(s.redis.key_prefix)
    now = utc_now()  # the job's wall clock: no event, and not the model's "as of", may be later
    if cfg.as_of and cfg.as_of > now:
        raise DataError(f"--as-of {cfg.as_of} is later than now ({now:%Y-%m-%d %H:%M:%S} UTC).")
    with JobLock(client, keys.job_lock, s.job.job_lock_seconds).acquired(s.job.lock_wait_seconds) as lock:
        if unfinished_versions(client, keys):  # a run died before finishing: sweep before adding a version
            cleanup(client, keys)
        spark = None
        if cfg.engine == "spark":
            from training.spark_engine import SparkEngine

            spark = SparkEngine(cfg.spark_master)
        try:
            return _run_locked(cfg, client, keys, lock, s.time_window(now), data, spark)
        finally:
            if spark is not None:
                spark.close()


def checked_live_events(
    client: Any, keys: Keys, cfg: JobConfig, window: TimeWindow
) -> tuple[pa.Table, dict[str, str], LoadReport]:
    """Every live event not yet trained on, checked again by the file rules (an event stored before a rule existed,
    e.g. one dated in the future, is skipped and reported, never trained on)."""
    taken, upto = live.take_live_events(client, keys, cfg.settings.live_dir)
    raw = taken.append_column(ROW, pa.array(np.arange(1, taken.num_rows + 1, dtype=np.int64)))
    events, report = validate_events(raw, "live events", window=window)
    return events, upto, report


@dataclass
class _Inputs:
    """The events the run learns from (files plus live events, up to ``as_of``), the catalogue and the load
    reports."""

    events: pa.Table
    items: pa.Table
    as_of: datetime
    reports: list[LoadReport]
    live_events: int
    live_upto: dict[str, str]  # per live-stream shard, the last entry id taken
    live_taken_ms: int  # when they were taken: batches announced later are not in this version
    feedback: pa.Table  # impressions and clicks (cache.live.FEEDBACK_SCHEMA), for the experiment report

    def let_go_of_events(self) -> None:
        """Drop the events (the job's largest table) once every list and figure made from them is built: the stages
        after write to a Redis that still holds the serving version."""
        self.events = None  # type: ignore[assignment]


@dataclass
class _Fitted:
    """The confidence matrix, the customers' bought items, the hidden (unavailable) columns and the ALS model."""

    inter: Interactions
    bought: sp.csr_matrix
    hidden: np.ndarray
    model: Any
    pick_batches: Any = lists.personal_pick_batches  # the personal top-k: here, or on Spark
    nightly: NightlyFit | None = None  # how the fit ran, and its factors for the next night's start

    def let_go_of_customers(self) -> None:
        """Drop the customers' side of the fit once their lists are published: their factors, purchases, matrix rows
        and id map (about 500 MB at a million customers; the version keeps item factors only, the next night's start
        is written first). The stages after write to a Redis that still holds the serving version: what the job
        holds then is the night's peak."""
        if self.nightly is not None:
            self.nightly.write()
        self.model.user_factors = None
        self.bought = None  # type: ignore[assignment]
        self.inter.matrix, self.inter.user_ids, self.inter.user_index = None, None, {}  # type: ignore[assignment]


def _run_locked(
    cfg: JobConfig, client: Any, keys: Keys, lock: JobLock, window: TimeWindow, data: Dataset | None, spark: Any
) -> JobResult:
    timer = _Timer()
    with timer.stage("load"):
        if data is None and spark is not None:
            data = spark.load(cfg.events, cfg.items, cfg.fmt, cfg.settings.job.max_bad_share)
        inputs = _load_inputs(cfg, client, keys, window, data)
        data = None  # the job goes on with inputs' copy only
    with timer.stage("tune"):
        cfg, tuned = self_tune(cfg, client, keys, inputs.events, inputs.items)
    gate = None
    holdout = NightHoldout(inputs.events, cfg.settings.job.gate_days)
    if cfg.gate:
        with timer.stage("gate"):
            try:
                gate = promotion_gate(cfg, client, keys, holdout, inputs.items, window.now, spark)
            except GateRefused as refused:
                record_quality(client, keys, quality_entry(None, inputs.as_of, refused.decision.as_dict()))
                raise
    with timer.stage("blend"):
        if spark is None:
            s = cfg.settings
            rule = not share_was_tuned(cfg, tuned)
            night = blend_step.night_blend(client, keys, holdout, inputs.items, s.model, tuned, share_is_rule=rule)
        else:
            night = blend_step.NightBlend(None, {"skipped": "not on the Spark engine"})
        outcome, blend = night.outcome, night.block
        holdout.release()  # the split and the gate's fit are not needed past the blend
    nightly = NightlyFit(cfg.settings, keys.prefix, inputs.as_of) if spark is None else None
    fitted = _fit(cfg, inputs, timer, spark, nightly)
    grace = cfg.settings.redis.pointer_ttl_ms / 1000 + cfg.settings.redis.version_grace_seconds
    publisher = Publisher(client, keys, cfg.settings.job.publish_batch_size, lock, grace_seconds=grace)
    try:
        kept = KeptNeighbours(cfg.settings.redis.data_dir, keys.prefix, blend, inputs.as_of)
        counts, examples, report = _publish_lists(cfg, publisher, inputs, fitted, timer, outcome, kept)
        if kept.how is not None:
            blend = blend | {"neighbours": kept.how}
        with timer.stage("publish"):
            publisher.put_items(item_metadata(inputs.items))
            publisher.put_raw(Keys.FACTORS, fitted.model.item_factors.astype("float32").tobytes())
            publisher.put(Keys.FACTOR_ITEMS, fitted.inter.item_ids.tolist())
            if night.stored is not None:  # the following nights reuse it while fresh (training/blend_step.py)
                publisher.put_raw(Keys.BLEND_RANKER, night.stored)
            manifest = _manifest(cfg, inputs, fitted, gate, counts, examples, timer) | {"tuned": tuned, "blend": blend}
            manifest["fit"] = nightly.how if nightly is not None else "full fit on Spark"
            replaced = publisher.commit(manifest, stored_keys(counts))
            if nightly is not None:
                nightly.keep()  # the next night starts from the published version's factors
            kept.keep()  # the nights that reuse tonight's ranker reuse its co-purchase neighbours
        live.trim_taken(client, keys, inputs.live_upto)
        if replaced:  # the replaced version is kept for rollback: keep the visitors with events it has not seen
            live.trim_index(client, keys, (manifest_of(client, keys, replaced) or {}).get("live_taken_ms"))
        with timer.stage("experiment"):
            publish_experiment_report(client, keys, report)
        if gate is not None:
            record_quality(client, keys, quality_entry(publisher.version, inputs.as_of, gate))
    except BaseException:
        publisher.abort()
        raise
    result = JobResult(publisher.version, replaced, inputs.reports, counts, timer.seconds, inputs.as_of, gate, tuned)
    result.blend, result.fit = blend, manifest.get("fit")
    return result


def _load_inputs(cfg: JobConfig, client: Any, keys: Keys, window: TimeWindow, data: Dataset | None) -> _Inputs:
    """Load and check the files, take the live events not trained on yet and the catalogue updates, cut at
    ``as_of``."""
    data = data or load_dataset(cfg.events, cfg.items, cfg.fmt, cfg.settings.job.max_bad_share, window)
    live_taken_ms = int(time.time() * 1000)  # before the take: every batch not taken is announced after it
    live_events, live_upto, live_report = checked_live_events(client, keys, cfg, window)
    reports = [*data.reports, live_report] if live_report.rows_read else data.reports
    events = pa.concat_tables([data.events, live_events]) if live_events.num_rows else data.events
    items = complete_catalogue(events, data.items) if live_events.num_rows else data.items
    items = apply_item_updates(items, merch.item_updates(client, keys))
    as_of = cfg.as_of or min(latest_timestamp(events), window.now)
    if events.num_rows and latest_timestamp(events) > as_of:  # a filter copies the whole log: only when it cuts
        events = events.filter(pc.less_equal(events["timestamp"], pa.scalar(as_of, pa.timestamp("us"))))
    # Impressions and clicks are feedback for the experiment report, never training data (the live ones come with
    # their rec_id and position from the archive).
    events, _ = split_feedback(events)
    in_files = live.with_feedback_extras(split_feedback(data.events)[1])
    feedback = pa.concat_tables([in_files, live.archived_feedback(cfg.settings.live_dir)])
    return _Inputs(events, items, as_of, reports, live_events.num_rows, live_upto, live_taken_ms, feedback)


def _fit(
    cfg: JobConfig, inputs: _Inputs, timer: _Timer, spark: Any = None, nightly: NightlyFit | None = None
) -> _Fitted:
    """Weighting and the ALS fit: here (warm-started by ``nightly`` when it can be), or on Spark (where live events,
    which only the driver has, are weighted on the driver and the matrix sent to Spark)."""
    m = cfg.settings.model
    on_spark = spark is not None and not inputs.live_events
    with timer.stage("weight"):
        if on_spark:
            inter = spark.weight(m.weights.as_dict(), m.half_life_days, inputs.as_of)
        else:
            inter = build_interactions(inputs.events, m.weights.as_dict(), m.half_life_days, inputs.as_of)
        bought = purchase_matrix(inputs.events, inter)
        hidden = lists.hidden_item_indices(inputs.items, inter)
    with timer.stage("fit"):
        if spark is None:
            full = lambda: fit_als(inter.matrix, m.als, show_progress=cfg.show_progress)
            model = nightly.fit(inter, full) if nightly is not None else full()
        else:
            model = spark.fit(m.als) if on_spark else spark.fit_matrix(inter, m.als)
    picks = spark.pick_batches if spark is not None else lists.personal_pick_batches
    return _Fitted(inter, bought, hidden, model, picks, nightly)


def _publish_lists(
    cfg: JobConfig,
    publisher: Publisher,
    inputs: _Inputs,
    fitted: _Fitted,
    timer: _Timer,
    blend: blend_step.BlendOutcome | None = None,
    kept: KeptNeighbours | None = None,
) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Every list of the version, stage by stage; returns the counts and example ids for the manifest, and the
    experiment report. The parts that depend on the events alone (:func:`event_figures`) are computed in a thread of
    their own meanwhile (DuckDB and numpy release the GIL): their stages below are what is left to wait for and
    publish."""
    p, inter, model, hidden = cfg.settings.model.lists, fitted.inter, fitted.model, fitted.hidden
    counts: dict[str, int] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="event-figures") as pool:
        later = pool.submit(event_figures, cfg.settings, inputs)
        with timer.stage("personal+next"):
            cat, example_user = _publish_customers(cfg, publisher, inputs, fitted, counts, blend, kept)
            n_users = len(inter.user_ids)
            example_user = example_user or (str(inter.user_ids[0]) if n_users else None)
            fitted.let_go_of_customers()
        with timer.stage("similar"):
            recent = active_item_columns(inputs.events, inter, inputs.as_of, p.similar_active_days)
            counts["similar_lists"] = publisher.put_many(
                tqdm(
                    similar_lists(model, inter, p, hidden, cat, recent),
                    total=len(inter.item_ids) if recent is None else len(recent),
                    desc="similar items",
                    unit="item",
                    disable=not cfg.show_progress,
                )
            )
        with timer.stage("bestsellers+new"):
            figures = later.result()
            best, fresh = figures.bestsellers, figures.new_arrivals
            for category, ranked in best.items():
                publisher.put(Keys.best(category), ranked)
            categories = sorted(c for c in best if c is not None)
            publisher.put(Keys.CATEGORIES, categories)
            publisher.put(Keys.NEW, fresh)
            counts.update(bestseller_categories=len(categories), bestsellers=len(best[None]), new_arrivals=len(fresh))
            n_events = inputs.events.num_rows
            inputs.let_go_of_events()
    with timer.stage("segments+kpis"):
        counts["segmented_customers"] = publish_segments_and_kpis(publisher, figures)
    with timer.stage("activity"):
        counts.update(publish_activity(publisher, figures))
    counts.update(
        live_events=inputs.live_events,
        events=n_events,
        users=n_users,
        items=len(inter.item_ids),
        catalogue=inputs.items.num_rows,
    )
    examples = {
        "user_id": example_user,
        "item_id": best[None][0][0] if best[None] else None,
        "category": categories[0] if categories else None,
    }
    return counts, examples, figures.experiment


@dataclass
class EventFigures:
    """What the version holds that depends on the events alone, not on the fit: bestsellers, new arrivals, RFM
    scores, KPI rows per period, the rows of customer histories and item repeat figures (formatted while they are
    published), and the experiment report."""

    bestsellers: dict[str | None, lists.Ranked]
    new_arrivals: lists.Ranked
    rfm: pa.Table
    kpis: dict[str, pa.Table]
    history_rows: pa.Table
    item_stat_rows: list[tuple[Any, ...]]
    experiment: dict[str, Any]


def event_figures(settings: Settings, inputs: _Inputs) -> EventFigures:
    """Compute :class:`EventFigures` (no Redis, no shared state: safe in a thread beside the list building)."""
    p, events, as_of = settings.model.lists, inputs.events, inputs.as_of
    weights = settings.model.weights.as_dict()
    exp = settings.api
    return EventFigures(
        lists.bestsellers(events, inputs.items, p.bestseller_days, as_of, p.list_size),
        lists.new_arrivals(events, inputs.items, p.new_arrival_days, as_of, p.list_size, weights),
        rfm.compute_rfm(events, rfm.RfmConfig(as_of=as_of)),
        {period: kpis.compute_kpis(events, period) for period in kpis.PERIODS},
        activity.recent_event_rows(events),
        activity.item_repeat_rows(events),
        experiment_report(
            events,
            inputs.feedback,
            lambda u: variant_of(u, exp.experiment_salt, exp.control_share),
            as_of,
            exp.experiment_days,
            exp.attribution_days,
            exp.control_share,
        ),
    )


def _publish_customers(
    cfg: JobConfig,
    publisher: Publisher,
    inputs: _Inputs,
    fitted: _Fitted,
    counts: dict[str, int],
    outcome: blend_step.BlendOutcome | None = None,
    kept: KeptNeighbours | None = None,
) -> tuple[Catalogue, str | None]:
    """Personal and next-purchase lists of the customers active lately, and what the API needs to compute everyone
    else's on request; returns the version's catalogue and the first customer with purchases."""
    p, events = cfg.settings.model.lists, inputs.events
    inter, model, bought, hidden = fitted.inter, fitted.model, fitted.bought, fitted.hidden
    repeats = repeat.repeat_candidates(events, inputs.as_of, p.next_purchase_horizon_days)
    cat = Catalogue.build(inter, inputs.items, repeats)
    publisher.put(Keys.CATALOGUE, cat.ids)
    purchasers = set(pc.unique(events.filter(pc.equal(events["event_type"], "purchase"))["user_id"]).to_pylist())
    active = active_rows(events, inter, inputs.as_of, p.active_days)
    neighbours = kept.neighbours(inter.item_ids) if kept is not None else None
    blend = blend_step.blend_lists(
        outcome, events, inputs.items, inter, model, bought, hidden, repeats, p.list_size, neighbours
    )
    if blend is not None and p.active_days > 0:  # the blend's customers get precomputed lists
        active = np.union1d(active, blend_step.blend_rows(events, inter, p.blend_days))
    n_personal, n_next, example_user = publish_personal_and_next(
        publisher,
        model,
        inter,
        bought,
        hidden,
        repeats,
        purchasers,
        p,
        cat,
        active,
        cfg.show_progress,
        fitted.pick_batches,
        blend,
    )
    rest = np.setdiff1d(np.arange(len(inter.user_ids)), active)
    unavailable = frozenset(inter.item_ids[hidden].tolist())
    n_lazy, n_lazy_buyers = publish_on_request(
        publisher, model, inter, bought, repeats, purchasers, p, cat, unavailable, rest
    )
    counts.update(
        personal_lists=n_personal,
        next_purchase_lists=n_next,
        blended_lists=n_next if blend is not None else 0,
        on_request_customers=n_lazy,
        next_purchase_customers=n_next + n_lazy_buyers,
    )
    return cat, example_user


def _manifest(
    cfg: JobConfig,
    inputs: _Inputs,
    fitted: _Fitted,
    gate: dict[str, Any] | None,
    counts: dict[str, int],
    examples: dict[str, Any],
    timer: _Timer,
) -> dict[str, Any]:
    """What the version says about itself: when, from what, sizes, parameters, the gate's figures."""
    m = cfg.settings.model
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "as_of": inputs.as_of.isoformat(),
        "source": {"events": str(cfg.events), "items": str(cfg.items) if cfg.items else None, "format": cfg.fmt},
        "engine": cfg.engine,
        "counts": counts,
        "examples": examples,
        "params": {
            "als": m.als.model_dump(),
            "weights": m.weights.as_dict(),
            "half_life_days": m.half_life_days,
            "lists": m.lists.model_dump(),
        },
        "hidden_items": [str(fitted.inter.item_ids[j]) for j in fitted.hidden],
        "evaluation": gate,
        "live_upto": inputs.live_upto,
        "live_taken_ms": inputs.live_taken_ms,
        "seconds": dict(timer.seconds),  # every stage but publishing itself, which is still running
        "load": [load_summary(r) for r in inputs.reports],
    }


def stored_keys(counts: dict[str, int]) -> dict[str, int]:
    """The lists the manifest counts, as keys of each kind the version must hold before it is made current."""
    return {
        "user": counts["personal_lists"],
        "next": counts["next_purchase_lists"],
        "cust": counts["on_request_customers"],
        "sim": counts["similar_lists"],
        "seg": counts["segmented_customers"],
        "best": counts["bestseller_categories"] + 1,  # overall and one per category
        "kpis": len(kpis.PERIODS),
        "hist": counts["customer_histories"],
        "istat": counts["item_stats"],
        Keys.ITEMS: counts["catalogue"],
    }


@dataclass
class Catalogue:
    """The version's item ids in catalogue order (the matrix columns first, so a column is its own position) and the
    compact encoding of lists against it (:mod:`cache.codec`)."""

    ids: list[str]
    index: dict[str, int]

    @classmethod
    def build(cls, inter: Interactions, items: pa.Table, repeats: repeat.RepeatIndex) -> Catalogue:
        ids = inter.item_ids.tolist()
        index = {item: j for j, item in enumerate(ids)}
        for item in [*items["item_id"].to_pylist(), *repeats.item_ids.tolist()]:
            if item not in index:
                index[item] = len(ids)
                ids.append(item)
        return cls(ids, index)

    def pairs(self, ranked: lists.Ranked) -> bytes:
        return codec.encode_pairs(ranked, self.index, len(self.ids))

    def picks(self, picks: list[dict[str, Any]]) -> bytes:
        return codec.encode_picks(picks, self.index, len(self.ids))

    def next_picks(self, picks: list[repeat.Pick]) -> bytes:
        """:meth:`picks` of the picks' published dicts (:func:`repeat.pick_dict`), without building them."""
        return codec.encode_pick_rows([repeat.pick_row(x) for x in picks], self.index, len(self.ids))


def similar_lists(
    model: Any, inter: Interactions, p: ListParams, hidden: np.ndarray, cat: Catalogue, items: np.ndarray | None = None
) -> Iterator[tuple[str, bytes]]:
    """(key, compact list) of the similar items of every item (or the matrix columns ``items``), encoded from the
    top-k arrays (a matrix column is its own catalogue position), without Python pairs in between."""
    for rows, ids, scores, keep in lists.similar_item_rows(
        model, inter, p.similar_size, hidden, p.similar_exact_max_items, items
    ):
        encoded = codec.encode_rows(ids, scores, keep, len(cat.ids))
        yield from zip((Keys.similar(i) for i in inter.item_ids[rows].tolist()), encoded)


def publish_personal_and_next(
    publisher: Publisher,
    model: Any,
    inter: Interactions,
    bought: sp.csr_matrix,
    hidden: np.ndarray,
    repeats: repeat.RepeatIndex,
    purchasers: set[str],
    p: ListParams,
    cat: Catalogue,
    active: np.ndarray,
    show_progress: bool,
    pick_batches: Any = lists.personal_pick_batches,
    blend: blend_step.BlendLists | None = None,
) -> tuple[int, int, str | None]:
    """Personal lists of the ``active`` matrix rows, and a next-purchase list for those with purchases, batch by batch;
    every other customer gets what the API needs to compute the same lists on request (:func:`publish_on_request`).

    With ``blend`` (the learned blend won on validation) the customers with purchases get the blended lists, topped
    up with the policy's. Returns (personal lists, next-purchase lists, the first customer with purchases).
    """
    exclude = bought if p.exclude_purchased else None
    unavailable = frozenset(inter.item_ids[hidden].tolist())
    n_personal = n_next = 0
    example_user: str | None = None
    with tqdm(total=len(active), desc="personal + next", unit="user", disable=not show_progress) as bar:
        for users, ranked in pick_batches(model, inter, p.list_size, exclude, hidden, active):
            # nothing bought, nothing due again: the ALS list as it is
            publisher.put_many((Keys.user(u), cat.pairs(r)) for u, r in zip(users, ranked) if u not in purchasers)
            policy_of = {
                user_id: partial(
                    purchaser_picks,
                    repeats,
                    user_id,
                    mine,
                    lambda r=inter.user_index[user_id]: set(inter.item_ids[bought[r].indices].tolist()),
                    p,
                    unavailable,
                )
                for user_id, mine in zip(users, ranked)
                if user_id in purchasers
            }
            if blend is None:
                policy = {user_id: picks_of() for user_id, picks_of in policy_of.items()}
            else:  # the policy's picks only where a blended list needs topping up
                policy = blend_step.published_lists(blend, policy_of)
            for user_id, (personal, nxt) in policy.items():
                publisher.put(Keys.user(user_id), cat.pairs([repeat.pick_pair(x) for x in personal]))
                publisher.put(Keys.next(user_id), cat.next_picks(nxt))
                n_next += 1
                example_user = example_user or user_id
            n_personal += len(users)
            bar.update(len(users))
    return n_personal, n_next, example_user


def publish_on_request(
    publisher: Publisher,
    model: Any,
    inter: Interactions,
    bought: sp.csr_matrix,
    repeats: repeat.RepeatIndex,
    purchasers: set[str],
    p: ListParams,
    cat: Catalogue,
    unavailable: frozenset[str],
    rows: np.ndarray,
) -> tuple[int, int]:
    """For customers whose lists are not precomputed: their ALS factors, bought items and items due again
    (:func:`cache.codec.encode_customer`). Returns (customers, of whom with purchases)."""
    factors = model.user_factors
    size = len(cat.ids)
    n_buyers = 0
    indptr, indices = bought.indptr, bought.indices  # a row's items without a scipy row slice (~50 us each)

    def rows_out() -> Iterator[tuple[str, bytes]]:
        nonlocal n_buyers
        for r in rows.tolist():
            user_id = inter.user_ids[r]
            mine = indices[indptr[r] : indptr[r + 1]]
            if user_id not in purchasers:
                yield Keys.customer(user_id), codec.encode_customer(factors[r], mine, b"", False, size)
                continue
            n_buyers += 1
            due = customer_lists.kept_due_items(repeats, user_id, p.list_size, unavailable)
            due_raw = cat.picks([x.as_dict() for x in due]) if due else b""
            yield Keys.customer(user_id), codec.encode_customer(factors[r], mine, due_raw, True, size)

    return publisher.put_many(rows_out()), n_buyers


def active_rows(events: pa.Table, inter: Interactions, as_of: datetime, days: int) -> np.ndarray:
    """Matrix rows of customers with an event within ``days`` of ``as_of`` (every row for 0)."""
    if days <= 0:
        return np.arange(len(inter.user_ids))
    return _recent_positions(events, "user_id", inter.user_index, as_of, days)


def active_item_columns(events: pa.Table, inter: Interactions, as_of: datetime, days: int) -> np.ndarray | None:
    """Matrix columns of items with an event within ``days`` of ``as_of`` (None, meaning every item, for 0)."""
    if days <= 0:
        return None
    return _recent_positions(events, "item_id", inter.item_index, as_of, days)


def _recent_positions(events: pa.Table, column: str, index: dict[str, int], as_of: datetime, days: int) -> np.ndarray:
    """Sorted positions in ``index`` of the ``column`` values with an event within ``days`` of ``as_of``."""
    since = pa.scalar(as_of - timedelta(days=days), pa.timestamp("us"))
    recent = pc.unique(events.filter(pc.greater(events["timestamp"], since))[column]).to_pylist()
    return np.array(sorted(index[k] for k in recent if k in index), dtype=np.int64)


UNPAIRED_USERS = 4
"""How many times ``gate_users`` the gate scores when it can only compare with the serving version's stored figure
(another sample): on the generated 3M-event shop a customer's ndcg@10 spreads by 0.26, the difference between two
fits on the same customer by 0.03 (docs/PERFORMANCE.md, "The promotion gate's sample")."""


def promotion_gate(
    cfg: JobConfig,
    client: Any,
    keys: Keys,
    holdout: NightHoldout,
    items: pa.Table,
    now: datetime,
    spark: Any = None,
) -> dict[str, Any]:
    """Score the candidate settings on the recent holdout and compare with the serving version and recent popularity.

    Raises GateRefused when the candidate must not be published; returns what was measured (kept in the manifest,
    so the next run compares against it). The serving version is scored on tonight's holdout and customers when its
    gate fit is at hand (:func:`serving_fit`), else its own night's figure is the comparison. A serving version
    dated after ``now`` was trained on events from the future (before such events were refused): its figure means
    nothing and is not compared against. The gate's ALS fit is left in ``holdout.fit`` for the blend learning.
    """
    job = cfg.settings.job
    if holdout.too_short:
        return {"skipped": f"less than {2 * job.gate_days} days of history for a {job.gate_days}-day holdout"}
    split = holdout.split()
    warm = GateWarmStart(cfg.settings, keys.prefix, split.cutoff)
    fit = warm.fit if spark is None else (lambda inter: spark.fit_matrix(inter, cfg.settings.model.als))
    current_version = current(client, keys)[0]
    serving = (manifest(client, keys, current_version) or {}) if current_version else {}
    future = bool(serving.get("as_of")) and datetime.fromisoformat(serving["as_of"]) > now
    previous = None if future else serving.get("evaluation")
    earlier = serving_fit(warm, previous) if spark is None else None
    # Scored on the same customers, the serving version and the candidate differ by little per customer: a few
    # thousand decide as well as all. Against a figure of another night's sample, each customer's own spread counts.
    paired = earlier is not None or previous is None
    users = job.gate_users * (1 if paired else UNPAIRED_USERS)
    ctx = holdout_context(split.train, items, test_days=job.gate_days, max_users=users or None, split=split)
    # TIFU-KNN is a reference beside the decision (it never refuses) and costs about two ALS fits: it is scored on
    # the nights whose gate fits from scratch (the first, and after a settings change or a re-tune), not on the
    # nights that warm-start, which would otherwise cost several times the fit they save.
    measured, holdout.fit, holdout.repeats = score_holdout(
        ctx, cfg.settings.model, fit=fit, reference=not warm.warm, earlier=earlier
    )
    del ctx
    if spark is not None:
        warm.how, holdout.fit = "full fit on Spark", None
    current_metric, versus = compared_with(measured, previous)
    decision = decide(
        measured["candidate"],
        current_metric,
        measured["recent_popularity"],
        job.gate_margin,
        cfg.force_publish,
        tifu_knn_metric=measured.get("tifu_knn"),
    )
    if not decision.publish:
        raise GateRefused(decision)  # the factors kept on disk stay the serving version's
    if spark is None:
        warm.save()
    # Every metric of the two models for warm and cold customers (the dashboard's Quality page shows them).
    figures = {group: measured["figures"][group] for group in ("warm", "cold") if group in measured["figures"]}
    note = (
        f"; the serving version {current_version} is dated {serving['as_of']}, after now: not compared"
        if future
        else versus
    )
    return {k: v for k, v in measured.items() if k != "figures"} | {
        "current": current_metric,
        "decision": decision.reason + note,
        "figures": figures,
        "fit": warm.how,
    }


def compared_with(measured: dict[str, Any], previous: dict[str, Any] | None) -> tuple[float | None, str]:
    """The serving version's figure the candidate is held against, and how it was measured (for the reason).

    Scored on tonight's holdout when it could be (``measured["current"]``): the same customers and purchases as
    the candidate, so the margin is not spent on the difference between two nights' holdout samples. Otherwise
    the figure its own night measured, when it is the same metric."""
    if previous is None or previous.get("metric") != measured["metric"]:
        return None, ""
    own = previous.get("candidate")
    tonight = measured.get("current")
    if tonight is not None and not math.isnan(tonight):
        figure = f"{own:.4f}" if isinstance(own, (int, float)) else "unknown"
        return tonight, f"; the published model scored on tonight's holdout (its own night measured {figure})"
    return own, "; the published model's figure from its own night's holdout"


def publish_experiment_report(client: Any, keys: Keys, report: dict[str, Any]) -> None:
    """The experiment report over the latest window (:func:`event_figures`), stored apart from the versions
    (GET /experiment/report)."""
    client.set(keys.experiment_report, orjson.dumps(report))


def quality_entry(version: str | None, as_of: datetime, gate: dict[str, Any]) -> dict[str, Any]:
    """One line of the quality log: the gate's main figures of a run, published (``version``) or refused (None)."""
    decision = gate.get("decision") if isinstance(gate.get("decision"), str) else gate.get("reason")
    return {
        "version": version,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "as_of": as_of.isoformat(),
        "published": version is not None,
        "metric": gate.get("metric"),
        "target": gate.get("target"),
        "candidate": gate.get("candidate"),
        "recent_popularity": gate.get("recent_popularity", gate.get("baseline")),
        "users": gate.get("users"),
        "decision": decision or gate.get("skipped"),
    }


def load_summary(report: LoadReport) -> dict[str, Any]:
    """What the manifest keeps of a file's load report."""
    return {
        "source": report.source,
        "rows_read": report.rows_read,
        "rows_kept": report.rows_kept,
        "rows_bad": report.rows_bad,
        "excluded": dict(report.excluded),
    }


def publish_activity(publisher: Publisher, figures: EventFigures) -> dict[str, int]:
    """Each customer's latest events and every bought item's repeat-buyer figures (for the dashboard)."""
    return {
        "customer_histories": publisher.put_many(
            (Keys.history(user_id), rows) for user_id, rows in activity.histories(figures.history_rows)
        ),
        "item_stats": publisher.put_many(
            (Keys.item_stats(i), s) for i, s in activity.repeat_stats(figures.item_stat_rows)
        ),
    }


def publish_segments_and_kpis(publisher: Publisher, figures: EventFigures) -> int:
    """RFM scores and segment per customer, the segment summary, and KPI rows for every period length."""
    scores = figures.rfm
    unit = rfm.monetary_unit(scores)
    n = publisher.put_many(
        (Keys.segment(row.pop("user_id")), {**row, "monetary_unit": unit}) for row in scores.to_pylist()
    )
    publisher.put(Keys.SEGMENTS, {"monetary_unit": unit, "segments": rfm.segment_summary(scores).to_pylist()})
    for period, table in figures.kpis.items():
        rows = table.to_pylist()
        for row in rows:
            row["period_start"] = row["period_start"].date().isoformat()
        publisher.put(Keys.kpis(period), {"monetary_unit": unit, "rows": rows})
    return n
