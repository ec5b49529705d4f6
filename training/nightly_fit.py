"""The nightly ALS fit, started from the serving version's factors when it can be.

From one night to the next a shop's log grows by a day, so the serving version's factors are an excellent start:
``fit_warm_iterations`` iterations from them land where a full fit from random factors lands (docs/PERFORMANCE.md,
"The nightly fit: warm start"), as they do for the promotion gate's fit (training/gate_fit.py: ``GateWarmStart``), which
judges tonight's candidate fitted the same way. The start is used only with the same settings (ALS but iterations,
weights, half-life), an earlier ``as_of`` and at most ``fit_warm_max_days`` old; anything else (the first night, a
re-tune, a settings change, a run by hand with an earlier ``--as-of``) fits from scratch. The published version's
factors are kept in ``<data dir>/fit/<key prefix>.npz`` for the next night; a refused or failed night leaves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from recommender.config import Settings
from recommender.models import warm_start
from recommender.models.weighting import Interactions

log = logging.getLogger(__name__)


class NightlyFit:
    """Tonight's fit (warm or full) and how it ran; :meth:`keep` stores it once its version is published."""

    def __init__(self, settings: Settings, key_prefix: str, as_of: datetime) -> None:
        self.model, self.as_of = settings.model, as_of
        self.iterations = settings.job.fit_warm_iterations
        self.path = settings.redis.data_dir / "fit" / f"{key_prefix}.npz"
        self.settings = warm_start.settings_fingerprint(self.model)
        # Only the stamp now: the factors (over 300 MB at a million customers) are read by :meth:`fit`, after the
        # weight stage and the gate have let go of theirs.
        stamp = warm_start.Stamp.read(self.path) if self.iterations else None
        usable = stamp is not None and stamp.usable(as_of, self.settings, settings.job.fit_warm_max_days)
        self.start = stamp if usable else None
        self.how = (
            f"warm start from the factors as of {self.start.cutoff.isoformat()}, {self.iterations} iterations"
            if self.start
            else f"full fit, {self.model.als.iterations} iterations"
        )
        self.fitted: tuple[Interactions, Any] | None = None
        self._written = False  # tonight's factors are at :attr:`written` (a failed night's there are never kept)

    def fit(self, inter: Interactions, full: Callable[[], Any]) -> Any:
        """Tonight's model: ``fit_warm_iterations`` from the start when there is one, else ``full()``."""
        start = warm_start.StoredFactors.load(self.path, self.start) if self.start else None
        if self.start and start is None:  # replaced or removed since the stamp was read
            self.how = f"full fit, {self.model.als.iterations} iterations (the stored start changed during the run)"
        model = warm_start.fit_from(inter, self.model.als, start, self.iterations) if start else full()
        del start  # the start's factors are not needed past the fit
        self.fitted = (inter, model)
        return model

    @property
    def written(self) -> Path:
        """Where :meth:`write` puts tonight's factors until :meth:`keep`."""
        return self.path.with_suffix(".new.npz")

    def write(self) -> None:
        """Write tonight's factors beside the kept ones (:attr:`written`) and let go of them: the job drops the
        customers' side of its fit once their lists are published, before the version is (a failure to write only
        costs the next night a full fit)."""
        if self.fitted is None or not self.iterations:
            return
        inter, model = self.fitted
        self.fitted = None
        factors = warm_start.StoredFactors(
            inter.user_ids, inter.item_ids, model.user_factors, model.item_factors, self.as_of, self.settings
        )
        try:
            factors.save(self.written)
            self._written = True
        except OSError as exc:
            self._not_kept(exc)

    def keep(self) -> None:
        """Put tonight's factors (:meth:`write`, done now if not yet) in place for the next night's start, once its
        version is published."""
        self.write()
        try:
            if self._written:
                self.written.replace(self.path)
                self._written = False
        except OSError as exc:
            self._not_kept(exc)

    def _not_kept(self, exc: OSError) -> None:
        """A failure to keep tonight's factors only costs the next night a full fit: a warning, not a failed run."""
        log.warning("could not keep the fit's factors for the next night's warm start (%s): %s", self.path, exc)
