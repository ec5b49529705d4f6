"""The experiment at request time: each answer's variant and recommendation id.

The rules are in :mod:`recommender.serving.experiment`."""

from __future__ import annotations

from recommender.config import Settings
from recommender.serving.experiment import TREATMENT, make_rec_id, variant_of


def variant(settings: Settings, user_id: str | None) -> str:
    """The customer's variant (``treatment`` for anonymous answers and when no control group is configured)."""
    if user_id is None or settings.api.control_share <= 0:
        return TREATMENT
    return variant_of(user_id, settings.api.experiment_salt, settings.api.control_share)


def tagged(settings: Settings, kind: str, version: str, user_id: str | None) -> tuple[str, str]:
    """(variant, rec_id) of one list answer."""
    chosen = variant(settings, user_id)
    return chosen, make_rec_id(kind, version, chosen)
