"""The promotion gate's ALS fit, warm-started from the last gate fit kept on disk, and the serving version's model
rebuilt from that fit so the gate scores both on tonight's holdout (training/job.py: ``promotion_gate``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from recommender.config import Settings
from recommender.models import warm_start
from recommender.models.weighting import Interactions


class GateWarmStart:
    """The gate's ALS fit, started from the previous run's gate fit when it can be (same settings, an earlier cutoff
    at most ``gate_warm_max_days`` before): ``gate_warm_iterations`` iterations instead of a full fit. The new fit's
    factors are kept in ``<data dir>/gate/<key prefix>.npz`` for the next run.

    The stored factors (a million customers' factors and ids are over 300 MB) are read when first needed, after the
    gate's matrix is built, and let go of after their last use: when the serving version's model is built from them
    (:meth:`serving`), the candidate starts in that model's arrays once it has been scored
    (:func:`recommender.models.warm_start.fit_on`)."""

    def __init__(self, settings: Settings, key_prefix: str, cutoff: datetime) -> None:
        self.cutoff = cutoff
        self.model, self.iterations = settings.model, settings.job.gate_warm_iterations
        self.path = settings.redis.data_dir / "gate" / f"{key_prefix}.npz"
        self.settings = warm_start.settings_fingerprint(self.model)
        self.earlier = warm_start.Stamp.read(self.path)
        """The stamp of the last gate fit kept on disk: the serving version's, unless that run failed after its
        gate."""
        max_days = settings.job.gate_warm_max_days
        self.warm = bool(self.iterations and self.earlier and self.earlier.usable(cutoff, self.settings, max_days))
        """Whether the candidate starts from the stored factors."""
        self.how = f"warm start, {self.iterations} iterations" if self.warm else "full fit"
        self.fitted: tuple[Interactions, Any] | None = None
        self._carried: warm_start.CarriedOver | None = None
        self._used = False

    def _stored(self) -> warm_start.StoredFactors:
        """The stored factors, read once: every use comes after the matrix is built, and a second read is a bug."""
        stored = None if self._used or not self.earlier else warm_start.StoredFactors.load(self.path, self.earlier)
        if stored is None:
            raise RuntimeError(f"the gate factors in {self.path} were used already or have changed")
        self._used = True
        return stored

    def serving(self, inter: Interactions) -> Any:
        """The serving version's model of ``inter``'s ids, from the stored factors (see :func:`serving_fit`)."""
        carried = warm_start.carry_over(inter, self.model.als, self._stored())
        self._carried = carried if self.warm else None
        return carried.model

    def fit(self, inter: Interactions) -> Any:
        """The candidate's fit: warm-started from the stored factors (or from :meth:`serving`'s arrays), or full."""
        if self._carried is not None:
            model = warm_start.fit_on(self._carried, inter, self.model.als, self.iterations)
        else:
            start = self._stored() if self.warm else None
            model = warm_start.fit_from(inter, self.model.als, start, self.iterations)
        self._carried = None
        self.fitted = (inter, model)
        return model

    def save(self) -> None:
        if self.fitted is None or not self.iterations:
            return
        inter, model = self.fitted
        factors = warm_start.StoredFactors(
            inter.user_ids, inter.item_ids, model.user_factors, model.item_factors, self.cutoff, self.settings
        )
        factors.save(self.path)


def serving_fit(warm: GateWarmStart, previous: dict[str, Any] | None) -> Callable[[Interactions], Any] | None:
    """The serving version's gate fit as a model of tonight's ids (:meth:`GateWarmStart.serving`), when the factors
    kept on disk are that fit (its cutoff is the one the serving version's figure was measured at, its settings
    tonight's) and saw nothing of tonight's holdout; None otherwise."""
    earlier = warm.earlier
    if earlier is None or not previous or previous.get("cutoff") != earlier.cutoff.isoformat():
        return None
    if earlier.settings != warm.settings or earlier.cutoff > warm.cutoff:
        return None
    return warm.serving
