"""Popularity with exponential time decay: the same list for everyone.

The baseline every personalised model has to beat, and the fallback for visitors with no
history. An event ``half_life_days`` older than the newest training event counts half.
"""
from __future__ import annotations

import numpy as np

from visrec.recommenders.base import InnerProductRecommender, Interactions, ProgressCallback

_SECONDS_PER_DAY = 86_400.0


class PopularityRecommender(InnerProductRecommender):
    """``score(u, i) = sum over events e on i of weight_e * 0.5 ** (age_e / half_life)``.

    ``age_e`` is measured from the latest event time in the training data, so a model
    trained on old data is not all zeros. As vectors: user ``[1]``, item ``[score_i]``.

    Args:
        half_life_days: days after which an event counts half; None for no decay.
    """

    name = "popularity"
    personalised = False

    def __init__(self, *, half_life_days: float | None = 30.0) -> None:
        if half_life_days is not None and not half_life_days > 0:
            raise ValueError("half_life_days must be positive or None")
        self.half_life_days = None if half_life_days is None else float(half_life_days)

    def fit(
        self,
        interactions: Interactions,
        item_features: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> PopularityRecommender:
        weights = interactions.weights.astype(np.float64)
        if self.half_life_days is not None and len(interactions):
            age_days = (interactions.times.max() - interactions.times) / _SECONDS_PER_DAY
            weights = weights * np.exp2(-age_days / self.half_life_days)
        popularity = np.bincount(interactions.items, weights=weights, minlength=interactions.n_items)
        self.n_users, self.n_items = interactions.n_users, interactions.n_items
        self._items = popularity.astype(np.float32)[:, None]
        self._users = np.ones((self.n_users, 1), dtype=np.float32)
        if progress:
            progress(0, None)
        return self

    def _fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.ones(1, dtype=np.float32)

    def item_scores(self) -> np.ndarray:
        """float32 (n_items,) decayed popularity of every item."""
        self._check_fitted()
        return self._items[:, 0]

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self._items[:, 0]}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._items = arrays["item_scores"].astype(np.float32)[:, None]
        self._users = np.ones((self.n_users, 1), dtype=np.float32)
