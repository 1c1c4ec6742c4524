"""Offline metrics of "for you" lists and the rank fusion that blends two lists. Pure numpy.

Every metric takes top-K lists (int64 (U, K), ``-1`` padding) and per-user sets of held-out
relevant items.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Rank-fusion constant (Cormack et al., 2009): flattens the head of each list.
RRF_K = 60.0


def rrf_blend(lists: Sequence[np.ndarray], weights: Sequence[float], n: int) -> np.ndarray:
    """Weighted reciprocal-rank fusion of ranked lists, for one user.

    Args:
        lists: ranked item indices (int64, ``-1`` = padding), best first, one array per model.
        weights: one non-negative weight per list.
        n: length of the blended list.

    Returns:
        int64 (≤ n,) item indices; ties go to the earlier list's order.
    """
    scores: dict[int, float] = {}
    order: dict[int, int] = {}
    for ranked, weight in zip(lists, weights):
        for rank, item in enumerate(np.asarray(ranked).tolist()):
            if item < 0:
                continue
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank + 1)
            order.setdefault(item, len(order))
    best = sorted(scores, key=lambda i: (-scores[i], order[i]))[:n]
    return np.array(best, dtype=np.int64)


def new_product_slots(k: int, share: float) -> int:
    """Positions of a list of ``k`` given to new products: ``share * k`` rounded half up
    (share 0.05: none below 10, one for 10 to 29, two for 30 to 49)."""
    return int(max(0.0, share) * k + 0.5) if k > 0 else 0


def reserve_slots(ranked: Sequence[int], new: Sequence[int], k: int, slots: int) -> list[int]:
    """The first ``k`` of ``ranked`` with its last ``slots`` positions given to ``new``.

    Exploration for products nobody has interacted with yet: a ranker that learns from
    interactions puts them behind look-alikes with a proven record, so without a reserved
    place they never gather the feedback that would let them compete.

    Args:
        ranked: the blended list, best first (no ``-1`` padding).
        new: the best new products for this shopper, best first; those already in the head
            of ``ranked`` are skipped.
        k: length of the result.
        slots: positions reserved at the end of the ``k``.

    Returns:
        up to ``k`` distinct items: ``ranked``'s first ``k - slots``, then the best ``new``
        ones not among them, then ``ranked`` again if ``new`` ran out.
    """
    head = list(ranked[: max(0, k - slots)])
    taken = set(head)
    fill = [i for i in new if i not in taken][:slots]
    taken.update(fill)
    rest = [i for i in ranked if i not in taken]
    return (head + fill + rest)[:k]


def recall_at_k(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant| (users with relevant items only)."""
    values = [len(set(row[:k].tolist()) & rel) / len(rel) for row, rel in zip(top, relevant) if rel]
    return float(np.mean(values)) if values else 0.0


def hit_rate_at_k(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Share of users with at least one relevant item in their top-k."""
    values = [bool(set(row[:k].tolist()) & rel) for row, rel in zip(top, relevant) if rel]
    return float(np.mean(values)) if values else 0.0


def ndcg_at_k(top: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean normalised discounted cumulative gain with binary relevance."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for row, rel in zip(top, relevant):
        if not rel:
            continue
        gains = np.array([1.0 if item in rel else 0.0 for item in row[:k].tolist()])
        ideal = discounts[: min(len(rel), k)].sum()
        values.append(float((gains * discounts[: len(gains)]).sum() / ideal))
    return float(np.mean(values)) if values else 0.0


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
    return out
