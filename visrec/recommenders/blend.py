"""Blending "for you" lists: weighted reciprocal-rank fusion and the new-product places. Pure numpy.

Serving (:mod:`visrec.services.foryou.recommend`) and the offline evaluation
(:mod:`visrec.services.foryou.evaluation`) call the same functions, so what is measured is
what is served.
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
