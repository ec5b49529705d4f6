"""The job's self-tuning step: reuse the current version's searched settings while fresh, else search again.

Precedence: options typed on the command line (``JobConfig.pinned``) > a tuned-settings file (the CLI then turns
self-tuning off) > self-tuned settings > environment > defaults: self-tuned settings take the place of a file. The
search itself is :func:`recommender.evaluation.self_tuning.search`; what it found travels in the version manifest's
``tuned`` block.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cache.keys import Keys
from cache.publisher import current_version, manifest
from recommender.config import ModelSettings
from recommender.evaluation.self_tuning import is_fresh, search, too_short, with_settings

if TYPE_CHECKING:
    from training.job import JobConfig


def apply_settings(cfg: JobConfig, settings: dict[str, Any]) -> JobConfig:
    """``cfg`` with tuned ``settings`` (layout of a tuned-settings file) except what ``cfg.pinned`` holds."""
    model = with_settings(cfg.settings.model, settings, keep=set(cfg.pinned))
    return replace(cfg, settings=cfg.settings.model_copy(update={"model": model}))


def self_tune(
    cfg: JobConfig, client: Any, keys: Keys, events: pa.Table, items: pa.Table
) -> tuple[JobConfig, dict[str, Any] | None]:
    """The configuration to train with and the manifest's ``tuned`` block (None when self-tuning is off)."""
    if not cfg.self_tune:
        return cfg, None
    version = current_version(client, keys)[0]
    previous = (manifest(client, keys, version) or {}).get("tuned") if version else None
    now = datetime.now(timezone.utc)
    if is_fresh(previous, now, cfg.tune_max_age_days):
        block = {**previous, "reused": True, "reused_from": version}  # type: ignore[arg-type]
        return apply_settings(cfg, block["settings"]), block
    gate_days = cfg.settings.job.gate_days
    if reason := too_short(events, gate_days):
        return cfg, {"skipped": reason}
    warm = None
    if previous and isinstance(previous.get("settings"), dict):
        warm = ModelSettings.from_dict(previous["settings"])
    block = search(
        events,
        items,
        start=cfg.settings.model,
        warm=warm,
        test_days=gate_days,
        candidates=cfg.tune_candidates,
        budget_seconds=cfg.tune_budget_seconds,
        progress=cfg.show_progress,
    )
    block["reused"] = False
    return apply_settings(cfg, block["settings"]), block


def share_was_tuned(cfg: JobConfig, tuned: dict[str, Any] | None) -> bool:
    """Whether tonight's repeat share is the one self-tuning chose (not pinned by an option, nor a file's or the
    environment's because self-tuning was off or skipped)."""
    return tuned is not None and "settings" in tuned and "repeat_share" not in cfg.pinned


def describe(tuned: dict[str, Any] | None) -> str:
    """One line for ``reco status`` and the job summary."""
    if not tuned:
        return "not self-tuned (settings file, options or defaults)"
    if "skipped" in tuned:
        return f"not self-tuned: {tuned['skipped']}"
    s = tuned["settings"]
    als = s.get("als", {})
    how = "reused" if tuned.get("reused") else f"searched in {tuned.get('seconds', 0):.0f} s"
    values = {
        "factors": als.get("factors"),
        "regularization": als.get("regularization"),
        "alpha": als.get("alpha"),
        "iterations": als.get("iterations"),
        "half_life_days": s.get("half_life_days"),
        "repeat_share": s.get("repeat_share"),
    }
    line = f"tuned {tuned.get('tuned_at')} ({how}): " + " ".join(f"{k}={v}" for k, v in values.items())
    incumbent = tuned.get("incumbent")
    if isinstance(incumbent, dict) and incumbent.get("kept"):
        z = incumbent.get("winner_gain", {}).get("z")
        line += f" (kept: the search's winner was not clearly better, z {z})"
    return line
