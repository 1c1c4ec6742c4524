"""Offline metrics of "for you" lists. Pure numpy.

Every metric takes top-K lists (int64 (U, K), ``-1`` padding) and per-user sets of held-out
relevant items.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_values(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> np.ndarray:
    """Per user with relevant items, |top-k ∩ relevant| / |relevant|: float64 (users,)."""
    return np.array([len(set(row[:k].tolist()) & rel) / len(rel) for row, rel in zip(top, relevant) if rel],
                    dtype=np.float64)


def hit_values(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> np.ndarray:
    """Per user with relevant items, 1.0 if one of them is in the top-k: float64 (users,)."""
    return np.array([float(bool(set(row[:k].tolist()) & rel)) for row, rel in zip(top, relevant) if rel],
                    dtype=np.float64)


def ndcg_values(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> np.ndarray:
    """Per user with relevant items, NDCG@k with binary relevance: float64 (users,)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for row, rel in zip(top, relevant):
        if not rel:
            continue
        gains = np.array([1.0 if item in rel else 0.0 for item in row[:k].tolist()])
        ideal = discounts[: min(len(rel), k)].sum()
        values.append(float((gains * discounts[: len(gains)]).sum() / ideal))
    return np.array(values, dtype=np.float64)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def recall_at_k(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant| (users with relevant items only)."""
    return _mean(recall_values(top, relevant, k))


def hit_rate_at_k(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Share of users with at least one relevant item in their top-k."""
    return _mean(hit_values(top, relevant, k))


def ndcg_at_k(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean normalised discounted cumulative gain with binary relevance."""
    return _mean(ndcg_values(top, relevant, k))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, samples: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``a - b`` over the same users and its percentile bootstrap interval.

    Args:
        a, b: float (users,) per-user metric values of two lists, user by user.

    Returns:
        ``(difference, low, high)``; all 0.0 without users.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0:
        return 0.0, 0.0, 0.0
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return float(diff.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def coverage_at_k(top: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in anyone's top-k."""
    shown = top[:, :k]
    return float(len(np.unique(shown[shown >= 0])) / max(n_items, 1))


def novelty_at_k(top: np.ndarray, item_counts: np.ndarray, k: int) -> float:
    """Mean self-information −log2(p(i)) of recommended items, p from training popularity
    (add-one smoothed): higher means less obvious recommendations."""
    counts = np.asarray(item_counts, dtype=np.float64)
    p = (counts + 1.0) / (counts.sum() + len(counts))
    shown = top[:, :k]
    shown = shown[shown >= 0]
    return float(np.mean(-np.log2(p[shown]))) if len(shown) else 0.0


def all_metrics(top: np.ndarray, relevant: Sequence[set[int]], cold_relevant: Sequence[set[int]],
                item_counts: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """Every metric at every k: recall, ndcg, hit rate, coverage, novelty, cold-start recall."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(top, relevant, k)
        out[f"ndcg@{k}"] = ndcg_at_k(top, relevant, k)
        out[f"hit_rate@{k}"] = hit_rate_at_k(top, relevant, k)
        out[f"coverage@{k}"] = coverage_at_k(top, len(item_counts), k)
        out[f"novelty@{k}"] = novelty_at_k(top, item_counts, k)
        out[f"cold_recall@{k}"] = recall_at_k(top, cold_relevant, k)
        out[f"cold_hit_rate@{k}"] = hit_rate_at_k(top, cold_relevant, k)
    return out
