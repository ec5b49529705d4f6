"""The models ``reco evaluate`` compares, by the names its figures and docs/QUALITY.md use.

Every entry makes a fresh :class:`recommender.models.base.Recommender` from the model settings; the protocol fits
and scores them all the same way. ALS-based models share one ALS fit (``fit(train, als=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recommender.config import ModelSettings
from recommender.evaluation.baselines import (
    GlobalPopularity,
    ItemKNN,
    PersonalTopFrequency,
    RecentPopularity,
    TifuKNN,
)
from recommender.models.als_recommender import AlsRecommender
from recommender.models.base import Recommender
from recommender.models.tifu_knn import PUBLISHED as TIFU_PUBLISHED
from recommender.serving.blended import BlendModel
from recommender.serving.production import ProductionModel

TIFU_VALIDATION_DAYS = 30


@dataclass(frozen=True)
class ModelEntry:
    """How to make one compared model, and which targets it is reported on."""

    make: Callable[[ModelSettings], Recommender]
    uses_als: bool = False
    """Built on the shared ALS fit. On the ``*_new`` targets these lists are all ALS without the user's history,
    reported once, as ``als``."""
    purchase_only: bool = False
    """Reported on the ``purchase`` target only (it ranks the customer's own purchases)."""


def _als(s: ModelSettings, filter_purchased: bool = False) -> AlsRecommender:
    return AlsRecommender(s.als, s.weights.as_dict(), s.half_life_days, filter_purchased=filter_purchased)


REGISTRY: dict[str, ModelEntry] = {
    "production": ModelEntry(ProductionModel, uses_als=True),
    "blend": ModelEntry(BlendModel),
    "als": ModelEntry(_als, uses_als=True),
    "als_new": ModelEntry(lambda s: _als(s, filter_purchased=True), uses_als=True),
    "global_popularity": ModelEntry(lambda s: GlobalPopularity()),
    "recent_popularity": ModelEntry(lambda s: RecentPopularity(s.lists.bestseller_days)),
    "item_knn_cosine": ModelEntry(lambda s: ItemKNN("cosine")),
    "item_knn_bm25": ModelEntry(lambda s: ItemKNN("bm25")),
    "personal_top_frequency": ModelEntry(lambda s: PersonalTopFrequency(), purchase_only=True),
    "tifu_knn": ModelEntry(lambda s: TifuKNN(TIFU_PUBLISHED["tafeng"]), purchase_only=True),
    "tifu_knn_dunnhumby": ModelEntry(lambda s: TifuKNN(TIFU_PUBLISHED["dunnhumby"]), purchase_only=True),
    "tifu_knn_tuned": ModelEntry(
        lambda s: TifuKNN(TIFU_PUBLISHED["tafeng"], tune_days=TIFU_VALIDATION_DAYS), purchase_only=True
    ),
}
MODELS: tuple[str, ...] = tuple(REGISTRY)
"""``tifu_knn`` / ``tifu_knn_dunnhumby``: TIFU-KNN with the paper's published settings; ``tifu_knn_tuned``: with
settings chosen on the last :data:`TIFU_VALIDATION_DAYS` of the training events (never the test window)."""
ALS_NEW_NAME = "als"
"""The name the ALS family is reported under on the ``*_new`` targets."""


def make_model(name: str, settings: ModelSettings) -> Recommender:
    """A fresh, unfitted model by its name in the figures."""
    return REGISTRY[name].make(settings)
