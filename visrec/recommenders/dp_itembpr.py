"""Item-based visual BPR whose trained parameters are all item-side: optionally DP-SGD trained.

``score(u, i) = b_i + beta' . f_i + mean_j(q_j) . q_i + (E mean_j f_j) . (E f_i)`` over the
shopper's bounded history ``j`` (weighted by summed event weights). A shopper's vector is
computed from their own history, never learned, so training with DP-SGD where one sample
is one shopper (Opacus per-sample clipping, Poisson sampling of shoppers, an accountant)
gives **shopper-level** differential privacy of everything the model file and the product
vectors hold. The training loop, and why, are in :mod:`visrec.recommenders.dp_sgd`
(imported on first ``fit``, so serving never imports torch).

Serving vectors (D = factors + visual_factors + 1), the inner-product layout of VBPR:
item ``[q_i, E f_i, b_i + beta' . f_i]``, shopper ``[mean_j q_j, mean_j E f_j, 1]`` — the
weighted mean of the first K + D' item columns over the history. A known shopper's vector
is that of their (bounded) training history; a new shopper's (fold-in) is the same formula
over the history given, so fold-in is exact, not an approximation.

Under DP, by default only ``E`` and ``beta'`` are learned (``per_item``): ``q`` stays 0 and
``b`` 0, so the model is "which looks go with the looks of your history", learned privately.

What the privacy covers: the item-side parameters (``q``, ``b``, ``E``, ``beta'``, saved
with the model and written as product vectors). A stored shopper vector is a function of
that shopper's own events and the private item side; it serves only that shopper. Other
shoppers' lists depend on a shopper only through the private item side.
"""
from __future__ import annotations

import logging

import numpy as np

from visrec.recommenders.base import InnerProductRecommender, Interactions, ProgressCallback, item_features_for

logger = logging.getLogger(__name__)

#: Order of the numbers in the saved ``privacy`` array (NaN = not applicable).
_PRIVACY_FIELDS = ("dp", "epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "shoppers")


def bounded_history(items: np.ndarray, weights: np.ndarray, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """One shopper's history: repeated items summed, then the ``max_history`` most weighted.

    Args:
        items: int64 (E,) item indices; weights: float32 (E,) event weights.

    Returns:
        int64 (h,) distinct items, most weighted first (ties: lower index), and float32 (h,)
        their summed weights; ``h <= max_history``. Zero-weight items are dropped.
    """
    unique, inverse = np.unique(np.asarray(items, dtype=np.int64), return_inverse=True)
    summed = np.bincount(inverse, weights=np.asarray(weights, dtype=np.float64), minlength=len(unique))
    order = np.lexsort((unique, -summed))[:max_history]
    order = order[summed[order] > 0]
    return unique[order], summed[order].astype(np.float32)


class DPItemBPRRecommender(InnerProductRecommender):
    """Item-based visual BPR, trained by :func:`visrec.recommenders.dp_sgd.train_item_side`.

    Args:
        factors: K, item factors (shared by the history and the candidates).
        visual_factors: D', dimensions of the learned projection E of the CNN vectors.
        epochs: passes over the shoppers (each ``1 / sample_rate`` steps).
        lr: AdamW learning rate (training without DP).
        dp_lr: learning rate of SGD with momentum 0.9 (DP-SGD; see :mod:`~visrec.recommenders.dp_sgd`).
        weight_decay: AdamW's decoupled weight decay (data-independent, so free under DP).
        batch_shoppers: expected shoppers per step.
        pairs: (positive, negative) pairs drawn per shopper per step.
        max_history: most-weighted distinct items of a shopper's history that are used.
        epsilon: target epsilon of DP-SGD; None trains without DP (no clipping, no noise).
        delta: target delta; None: ``1 / n_shoppers^1.1``.
        max_grad_norm: bound C on one shopper's gradient (DP only).
        accountant: Opacus accountant, "rdp" or "prv".
        per_item: learn per-item factors and biases (False: only the projection of the
            pictures, shared by all items, is learned, so far less noise lands on what is
            learned). None: True without DP, False with DP — on the demo's 1,000 shoppers
            the noise on 3,000 item rows swamped their signal (bench/RESULTS.md).
        seed: initialisation and pair draws (DP noise and shopper sampling never use it).
    """

    name = "dp_itembpr"

    def __init__(
        self,
        *,
        factors: int = 32,
        visual_factors: int = 32,
        epochs: int = 20,
        lr: float = 0.01,
        dp_lr: float = 3.0,
        weight_decay: float = 0.0,
        batch_shoppers: int = 128,
        pairs: int = 8,
        max_history: int = 50,
        epsilon: float | None = None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "rdp",
        per_item: bool | None = None,
        seed: int = 0,
    ) -> None:
        self.factors, self.visual_factors = int(factors), int(visual_factors)
        self.epochs, self.lr, self.dp_lr, self.weight_decay = int(epochs), float(lr), float(dp_lr), float(weight_decay)
        self.batch_shoppers, self.pairs, self.max_history = int(batch_shoppers), int(pairs), int(max_history)
        self.epsilon = None if epsilon is None else float(epsilon)
        self.delta = None if delta is None else float(delta)
        self.max_grad_norm, self.accountant, self.seed = float(max_grad_norm), str(accountant), int(seed)
        self.per_item = None if per_item is None else bool(per_item)
        if self.accountant not in ("rdp", "prv"):
            raise ValueError(f"accountant must be 'rdp' or 'prv', not {accountant!r}")
        self.loss_history: list[float] = []
        self.privacy: dict = {}

    def fit(
        self,
        interactions: Interactions,
        item_features: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> DPItemBPRRecommender:
        from visrec.recommenders.dp_sgd import train_item_side

        features = item_features_for(interactions, item_features, "dp_itembpr")
        histories = self._histories(interactions)
        state, report, self.loss_history = train_item_side(
            histories, features, factors=self.factors, visual_factors=self.visual_factors, epochs=self.epochs,
            lr=self.lr, dp_lr=self.dp_lr, weight_decay=self.weight_decay, batch_shoppers=self.batch_shoppers, pairs=self.pairs,
            epsilon=self.epsilon, delta=self.delta, max_grad_norm=self.max_grad_norm, accountant=self.accountant,
            seed=self.seed, per_item=(self.epsilon is None) if self.per_item is None else self.per_item,
            progress=progress,
        )
        self.privacy = report.as_dict()
        self.n_users, self.n_items = interactions.n_users, interactions.n_items
        self._looks = state["looks"].T.copy()  # (F, D'+1): [E^T | beta']
        items = np.empty((self.n_items, self.factors + self.visual_factors + 1), dtype=np.float32)
        items[:, :self.factors] = state["factors"]
        items[:, self.factors:] = features @ self._looks
        items[:, -1] += state["biases"]
        self._items = items
        self._users = np.zeros((self.n_users, items.shape[1]), dtype=np.float32)
        self._users[:, -1] = 1.0
        for row, user in enumerate(histories.users):
            self._users[user] = self._fold_in(histories.items[row], histories.weights[row])
        if report.dp:
            logger.info("visrec: dp_itembpr trained on %d shoppers with DP-SGD: epsilon %.3f, delta %.2e, "
                        "noise multiplier %.3f", report.shoppers, report.epsilon, report.delta, report.noise_multiplier)
        return self

    def _histories(self, interactions: Interactions):
        """One padded row per shopper with events (padding item = n_items, weight 0)."""
        from visrec.recommenders.dp_sgd import ShopperHistories

        matrix = interactions.matrix()
        users = np.flatnonzero(np.diff(matrix.indptr) > 0)
        if len(users) == 0:
            raise ValueError("dp_itembpr needs at least one interaction")
        width = int(min(self.max_history, np.diff(matrix.indptr).max()))
        items = np.full((len(users), width), interactions.n_items, dtype=np.int64)
        weights = np.zeros((len(users), width), dtype=np.float32)
        for row, user in enumerate(users):
            start, stop = matrix.indptr[user], matrix.indptr[user + 1]
            kept, summed = bounded_history(matrix.indices[start:stop], matrix.data[start:stop], width)
            items[row, :len(kept)], weights[row, :len(kept)] = kept, summed
        return ShopperHistories(users=users.astype(np.int64), items=items, weights=weights)

    def item_vectors_for_features(self, features: np.ndarray) -> np.ndarray:
        """Serving vectors of items known by their looks only (e.g. added after training).

        Args:
            features: float32 (M, F) L2-normalised CNN vectors.

        Returns:
            float32 (M, D) rows ``[0, E f, beta' . f]`` (no item factors, no item bias).
        """
        self._check_fitted()
        features = np.asarray(features, dtype=np.float32)
        out = np.zeros((features.shape[0], self._items.shape[1]), dtype=np.float32)
        out[:, self.factors:] = features @ self._looks
        return out

    def _fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        out = np.zeros(self._items.shape[1], dtype=np.float32)
        out[-1] = 1.0
        items = np.asarray(items, dtype=np.int64)
        valid = items < self.n_items  # drops training padding
        kept, summed = bounded_history(items[valid], np.asarray(weights, dtype=np.float32)[valid], self.max_history)
        if len(kept) and summed.sum() > 0:
            out[:-1] = (summed / summed.sum()) @ self._items[kept, :-1]
        return out

    def _state(self) -> dict[str, np.ndarray]:
        privacy = np.array([np.nan if self.privacy.get(k) is None else float(self.privacy[k])
                            for k in _PRIVACY_FIELDS], dtype=np.float64)
        return {"user_vectors": self._users, "item_vectors": self._items, "looks": self._looks,
                "privacy": privacy}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._users = arrays["user_vectors"].astype(np.float32)
        self._items = arrays["item_vectors"].astype(np.float32)
        self._looks = arrays["looks"].astype(np.float32)
        values = arrays["privacy"].astype(np.float64)
        self.privacy = {k: (None if np.isnan(v) else float(v)) for k, v in zip(_PRIVACY_FIELDS, values)}
        self.privacy["dp"] = bool(self.privacy["dp"])
        self.privacy["accountant"] = self.accountant if self.privacy["dp"] else ""
