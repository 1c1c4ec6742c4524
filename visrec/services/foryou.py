""""For you": the served list for one shopper.

Blends, by weighted reciprocal-rank fusion (the same function the evaluation measures),

* the trained model: the shopper's stored vector, one pgvector inner-product query on the
  active model's product vectors, with the shop's filters inside the query;
* item-kNN on co-interactions, saved with the active model version ("people who engaged
  with what you engaged with also engaged with ..."), filtered by the shop's filters;
* the session model: the shopper's recent products (weighted by event type and recency)
  as a direction in image space, one cosine query on the served image vectors — works
  for an anonymous shopper from their first view and for products nobody bought yet.

The weights are those nightly training chose on a validation slice and stored in the
active version's ``metrics["blend"]``; without them, ``SESSION_BLEND`` splits the trained
model and the session. The blended list keeps its last ``RECOMMENDER_NEW_PRODUCT_SHARE``
of places for products without interactions in the training window that look like the
session (the evaluation measures the list the same way). Falls back in order: trained
model, session, trending. What the shopper bought is left out (``EXCLUDE_PURCHASED``).
"""
from __future__ import annotations

import datetime as dt

import numpy as np
from django.db import connection
from django.utils import timezone

from ..conf import visrec_settings
from ..evaluation.recommendations import new_product_slots, reserve_slots, rrf_blend
from ..models import (
    InteractionEvent,
    ModelKind,
    ModelVersion,
    ProductEmbedding,
    RecommenderItemVector,
    ShopperVector,
)
from ..recommenders import top_n
from ..recommenders.session import session_vector, session_weights
from . import vector_index
from .embedders import active_embedder_version
from .recommender_evaluation import BLEND_PARTS, default_blend
from .recommender_training import Bundle, load_bundle
from .similar import SimilarFilters, candidate_queryset, search_by_vector
from .versions import active_version

DEPTH = 50
#: The active version's loaded bundle (item-kNN part of the blend), by version name.
_BUNDLES: dict[str, tuple[Bundle, dict[str, int], dict[int, int]]] = {}


def _purchased(subject: str) -> list[int]:
    if not visrec_settings.EXCLUDE_PURCHASED:
        return []
    return list(InteractionEvent.objects.filter(subject_key=subject, event_type="purchase", product__isnull=False)
                .values_list("product_id", flat=True).distinct())


def _recent_events(subject: str) -> list[tuple[int, str, dt.datetime]]:
    """The shopper's last ``SESSION_EVENTS`` events on products: ``(product_id, type, when)``, newest first."""
    return list(InteractionEvent.objects.filter(subject_key=subject, product__isnull=False)
                .order_by("-occurred_at")[: visrec_settings.SESSION_EVENTS]
                .values_list("product_id", "event_type", "occurred_at"))


def trained_list(subject: str, k: int, filters: SimilarFilters, exclude: list[int],
                 version: ModelVersion | None = None) -> list[tuple[int, float]]:
    """The active model's top products for a shopper with a stored vector ([] otherwise)."""
    version = version or active_version(ModelKind.RECOMMENDER)
    if version is None or not version.dimensions:
        return []
    vector = ShopperVector.objects.filter(subject_key=subject, model_version=version.name).values_list(
        "vector", flat=True).first()
    if vector is None:
        return []
    queryset = candidate_queryset(filters, None, None).exclude(pk__in=exclude)
    inner_sql, inner_params = queryset.order_by().values("pk").query.sql_with_params()
    sql = vector_index.nearest_by_inner_product_sql(RecommenderItemVector._meta.db_table, version.name,
                                                    version.dimensions, f"e.product_id IN ({inner_sql})")
    literal = vector_index.vector_literal(np.asarray(vector, dtype=np.float32))
    setup, setup_params = vector_index.scan_settings(k)
    with connection.cursor() as cursor:  # settings and query: one round trip
        _, rows = vector_index.run_with_settings(cursor, setup, setup_params, sql, [literal, *inner_params, literal, k])
    rows = sorted(rows, key=lambda r: -r[1])  # relaxed order: make it exact
    return [(int(r[0]), float(r[1])) for r in rows]


def blend_weights(version: ModelVersion | None) -> dict[str, float]:
    """The blend weights chosen on validation for ``version``, else :func:`default_blend`."""
    chosen = (version.metrics or {}).get("blend") if version is not None else None
    if not isinstance(chosen, dict) or not any(float(chosen.get(p, 0)) > 0 for p in BLEND_PARTS):
        return default_blend()
    return {part: max(0.0, float(chosen.get(part, 0.0))) for part in BLEND_PARTS}


def _bundle(version: ModelVersion) -> tuple[Bundle, dict[str, int], dict[int, int]]:
    """The version's bundle with its subject and product index maps, loaded once per process."""
    if version.name not in _BUNDLES:
        bundle = load_bundle(version)
        _BUNDLES.clear()
        _BUNDLES[version.name] = (bundle, {s: i for i, s in enumerate(bundle.subjects.tolist())},
                                  {int(p): i for i, p in enumerate(bundle.products.tolist())})
    return _BUNDLES[version.name]


def neighbours_list(subject: str, k: int, filters: SimilarFilters, exclude: list[int],
                    version: ModelVersion | None = None) -> list[tuple[int, float]]:
    """Item-kNN's top products for a shopper: from their training history if the model knows
    them, else from their recent events; [] without an item-kNN part or any signal."""
    version = version or active_version(ModelKind.RECOMMENDER)
    if version is None or not version.artefact:
        return []
    bundle, users, items = _bundle(version)
    if bundle.neighbours is None:
        return []
    user = users.get(subject, -1)
    history, weights = np.zeros(0, np.int64), np.zeros(0, np.float32)
    if user < 0:
        table = visrec_settings.EVENT_WEIGHTS
        recent = [(items[p], table.get(t, 0.0)) for p, t, _ in _recent_events(subject) if p in items]
        if not recent:
            return []
        history, weights = np.array([r[0] for r in recent]), np.array([r[1] for r in recent], np.float32)
    scores = bundle.neighbours.score(user, history, weights)
    scores[scores <= 0] = -np.inf
    ids, values = top_n(scores, 4 * k)
    found = ids[0] >= 0
    ranked = [(int(bundle.products[i]), float(v)) for i, v in zip(ids[0][found], values[0][found])]
    allowed = set(candidate_queryset(filters, None, None).filter(pk__in=[p for p, _ in ranked])
                  .exclude(pk__in=exclude).values_list("pk", flat=True))
    return [(p, v) for p, v in ranked if p in allowed][:k]


def session_query(subject: str, now: dt.datetime | None = None,
                  embedder: ModelVersion | None = None) -> np.ndarray | None:
    """The shopper's session vector: unit float32 (D,) in image space, or None without signal.

    ``embedder``: the served embedder version when the caller already looked it up.
    """
    version = embedder or active_embedder_version()
    if version is None:
        return None
    recent = _recent_events(subject)
    if not recent:
        return None
    vectors = dict(ProductEmbedding.objects.filter(model_version=version.name, product_id__in={r[0] for r in recent})
                   .values_list("product_id", "vector"))
    recent = [r for r in recent if r[0] in vectors]
    if not recent:
        return None
    now = now or timezone.now()
    table = visrec_settings.EVENT_WEIGHTS
    weights = session_weights(np.array([table.get(r[1], 0.0) for r in recent]),
                              np.array([max((now - r[2]).total_seconds(), 0) / 3600 for r in recent]),
                              visrec_settings.SESSION_HALF_LIFE_HOURS)
    return session_vector(np.stack([np.asarray(vectors[r[0]], dtype=np.float32) for r in recent]), weights)


def session_list(subject: str, k: int, filters: SimilarFilters, exclude: list[int],
                 now: dt.datetime | None = None, query: np.ndarray | None = None,
                 embedder: ModelVersion | None = None) -> list[tuple[int, float]]:
    """Products that look like what the shopper recently viewed, carted and bought."""
    query = session_query(subject, now, embedder) if query is None else query
    if query is None:
        return []
    return search_by_vector(query, k, filters, queryset_hook=lambda qs: qs.exclude(pk__in=exclude), version=embedder)


def new_products_list(query: np.ndarray | None, k: int, filters: SimilarFilters, exclude: list[int],
                      version: ModelVersion | None = None,
                      embedder: ModelVersion | None = None) -> list[tuple[int, float]]:
    """The products without interactions in the active model's training window that look
    most like the session ([] without a session or a saved list of them)."""
    version = version or active_version(ModelKind.RECOMMENDER)
    if query is None or k <= 0 or version is None or not version.artefact:
        return []
    bundle, _, _ = _bundle(version)
    if bundle.warm is None or bundle.warm.all():
        return []
    new = bundle.products[~bundle.warm].tolist()
    return search_by_vector(query, k, filters,
                            queryset_hook=lambda qs: qs.filter(pk__in=new).exclude(pk__in=exclude), version=embedder)


def trending_list(k: int, filters: SimilarFilters, exclude: list[int] = (), now: dt.datetime | None = None
                  ) -> list[tuple[int, float]]:
    """Trending products for everyone: the day's differentially private release (see
    :mod:`visrec.services.dp_releases`), restricted to the shop's filters."""
    from .dp_releases import dp_trending

    candidates = set(candidate_queryset(filters, None, None).exclude(pk__in=list(exclude))
                     .values_list("pk", flat=True))
    return dp_trending(k, candidates)


def recommend_for_subject(subject: str, k: int = 8, filters: SimilarFilters | None = None,
                          now: dt.datetime | None = None) -> tuple[list[tuple[int, float]], str]:
    """The shopper's list and where it came from: ``blended``, ``model``, ``session`` or ``trending``."""
    filters = filters or SimilarFilters()
    exclude = _purchased(subject)
    depth = max(DEPTH, k)
    version = active_version(ModelKind.RECOMMENDER)
    weights = blend_weights(version)
    trained = trained_list(subject, depth, filters, exclude, version)
    embedder = active_embedder_version()  # looked up once for the session and new-product lists
    query = session_query(subject, now, embedder)
    session = session_list(subject, depth, filters, exclude, now, query, embedder)
    neighbours = (neighbours_list(subject, depth, filters, exclude, version) if trained and weights["itemknn"] > 0
                  else [])
    parts = {name: ranked for name, ranked in (("model", trained), ("itemknn", neighbours), ("session", session))
             if ranked and weights[name] > 0}
    if len(parts) > 1:
        ids = rrf_blend([np.array([p for p, _ in ranked]) for ranked in parts.values()],
                        [weights[name] for name in parts], k).tolist()
        slots = new_product_slots(k, visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE)
        if slots:
            new = new_products_list(query, slots + k, filters, exclude, version, embedder)
            ids = reserve_slots(ids, [p for p, _ in new], k, slots)
        scores = {p: s for p, s in trained}
        return [(int(p), scores.get(int(p), 0.0)) for p in ids], "blended"
    if len(parts) == 1:
        name, ranked = next(iter(parts.items()))
        return ranked[:k], "session" if name == "session" else "model"
    if trained:
        return trained[:k], "model"
    if session:
        return session[:k], "session"
    return trending_list(k, filters, exclude, now), "trending"
