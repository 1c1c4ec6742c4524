"""Why a product is in a shopper's "for you" list, from the part of the blend that placed it.

Each served product gets the part whose contribution to its rank was the largest (weight /
(RRF_K + rank), the fusion's own terms) and a reason in words:

* **session** and the **new-product places**: "Because you looked at <product>", the one of
  the shopper's recent products whose picture is closest to it (the session list is made of
  look-alikes of exactly those pictures);
* **model**: "Matches your taste" (the trained model: the shopper's factors and, for VBPR,
  their taste in pictures);
* **itemknn**: "Chosen by shoppers who liked what you liked";
* **popularity** and **trending**: "Popular in <category> now" (or "Popular now").

Explanations reveal nothing about other shoppers beyond what the list itself does: the
"because" product is the shopper's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...models import ModelKind, ProductEmbedding
from ...recommenders.blend import RRF_K
from ..catalogue import categories, products
from ..serving.versions import served_version
from .recommend import ForYouList

TEXTS = {
    "model": "Matches your taste",
    "itemknn": "Chosen by shoppers who liked what you liked",
}


@dataclass(frozen=True)
class Reason:
    """Why one product is in the list: the blend's part (``session``, ``new``, ``model``,
    ``itemknn``, ``popularity``, ``trending``), the words, and the shopper's own product that
    caused it (``None`` when none did)."""

    kind: str
    text: str
    because: int | None = None


def explain(found: ForYouList) -> dict[int, Reason]:
    """A :class:`Reason` for every product of ``found.ranked`` (two queries at most: the
    products' image vectors, and their categories for popularity)."""
    ids = [pid for pid, _ in found.ranked]
    kinds = {pid: _placing_part(pid, found) for pid in ids}
    looked = [pid for pid in ids if kinds[pid] in ("session", "new")]
    because = _closest_recent(looked, found) if looked else {}
    popular = [pid for pid in ids if kinds[pid] in ("popularity", "trending")]
    labels = _category_labels(popular) if popular else {}
    reasons = {}
    for pid in ids:
        kind = kinds[pid]
        if kind in ("session", "new"):
            source = because.get(pid)
            reasons[pid] = Reason(kind, "Because you looked at" if source is not None else "Looks like what you like",
                                  source)
        elif kind in ("popularity", "trending"):
            label = labels.get(pid)
            reasons[pid] = Reason(kind, f"Popular in {label} now" if label else "Popular now")
        else:
            reasons[pid] = Reason(kind, TEXTS.get(kind, "Picked for you"))
    return reasons


def _placing_part(pid: int, found: ForYouList) -> str:
    if found.source == "trending":
        return "trending"
    if pid in found.new:
        return "new"
    best, best_term = None, -1.0
    for name, ranked in found.parts.items():
        for rank, (candidate, _) in enumerate(ranked):
            if candidate == pid:
                term = found.weights.get(name, 0.0) / (RRF_K + rank + 1)
                if term > best_term:
                    best, best_term = name, term
                break
    return best or {"session": "session", "popular": "popularity"}.get(found.source, "model")


def _closest_recent(ids: list[int], found: ForYouList) -> dict[int, int]:
    """For each product, the shopper's recent product with the closest picture (served vectors)."""
    history = found.history
    recent = list(dict.fromkeys(p for p, _, _ in history.recent if p in history.vectors))
    embedder = served_version(ModelKind.EMBEDDER)
    if not recent or embedder is None:
        return {}
    rows = ProductEmbedding.objects.filter(product_id__in=ids, model_version=embedder.name).values_list(
        "product_id", "vector")
    mine = np.stack([history.vectors[p] for p in recent])
    mine /= np.maximum(np.linalg.norm(mine, axis=1, keepdims=True), 1e-12)
    out = {}
    for pid, vector in rows:
        vector = np.asarray(vector, dtype=np.float32)
        if len(vector) != mine.shape[1]:
            continue
        out[pid] = recent[int(np.argmax(mine @ vector))]
    return out


def _category_labels(ids: list[int]) -> dict[int, str]:
    keys = {pid: str(key) for pid, key in products.primary_categories(ids).items()}
    names = categories.category_labels(set(keys.values()))
    return {pid: names.get(key, key) for pid, key in keys.items()}


def reason_fields(found: ForYouList) -> dict[int, dict]:
    """:func:`explain` as what cards carry: ``{pid: {"kind", "text", "because": card | None}}``
    (the "because" products' cards in one more read)."""
    from ..serving import presentation

    reasons = explain(found)
    sources = sorted({r.because for r in reasons.values() if r.because is not None})
    cards = {card["pk"]: card for card in presentation.product_cards([(pid, 0.0) for pid in sources])}
    return {pid: {"kind": r.kind, "text": r.text, "because": cards.get(r.because)} for pid, r in reasons.items()}
