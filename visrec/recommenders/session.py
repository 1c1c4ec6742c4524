"""The session model: what a shopper just looked at, as a direction in image space.

Needs no training, so it works for an anonymous shopper from their first view and for
products nobody has bought yet. The session vector is the weighted mean of the
(L2-normalised) image vectors of the shopper's recent products, each weighted by its
event type and halved every ``half_life_hours``; products are scored by cosine to it.
Pure numpy: the same vector serves the evaluation (matrix product) and the live query
(one pgvector cosine search).
"""
from __future__ import annotations

import numpy as np


def session_weights(event_weights: np.ndarray, ages_hours: np.ndarray, half_life_hours: float) -> np.ndarray:
    """float32 (E,): event-type weight × 2^(-age / half-life)."""
    decay = np.power(0.5, np.asarray(ages_hours, dtype=np.float64) / max(half_life_hours, 1e-6))
    return (np.asarray(event_weights, dtype=np.float64) * decay).astype(np.float32)


def session_vector(item_vectors: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Unit float32 (D,) weighted mean of float32 (E, D) vectors; ``None`` without signal."""
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    if item_vectors.size == 0 or float(weights.sum()) <= 0:
        return None
    mean = (item_vectors * weights[:, None]).sum(0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None


def session_vectors_batch(item_features: np.ndarray, histories: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Session vectors of many shoppers: float32 (U, D), zero rows where a history is empty.

    Args:
        item_features: float32 (n_items, D) unit image vectors.
        histories: per shopper, (item indices int64 (E,), weights float32 (E,)).
    """
    out = np.zeros((len(histories), item_features.shape[1]), dtype=np.float32)
    for row, (items, weights) in enumerate(histories):
        vector = session_vector(item_features[items], weights) if len(items) else None
        if vector is not None:
            out[row] = vector
    return out
