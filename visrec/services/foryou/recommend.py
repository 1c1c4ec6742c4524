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
model and the session. The blended list keeps its last share of places (the version's
``metrics["new_product_share"]``, chosen in training from ``RECOMMENDER_NEW_PRODUCT_SHARE`` up
to ``RECOMMENDER_NEW_PRODUCT_SHARE_MAX``) for products without interactions in the training window (or newer than it)
among the session list's ``DEPTH`` look-alikes (the evaluation measures the list the same
way). Falls back in order: trained model, session, trending. What the shopper bought is
left out (``EXCLUDE_PURCHASED``).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from django.db import connection

from ...conf import visrec_settings
from ...models import (
    InteractionEvent,
    ModelKind,
    ModelVersion,
    ProductEmbedding,
    RecommenderItemVector,
    ShopperVector,
)
from ...recommenders.blend import new_product_slots, reserve_slots, rrf_blend
from ...recommenders.session import session_vector, session_weights
from ..catalogue import products
from ..db import vector_index
from ..db.cache_guard import cache
from ..db.concurrent_queries import run_all
from ..serving.generation import generation_and_entry
from ..serving.similar import SimilarFilters, candidate_sql, candidates_where, search_by_vector
from ..serving.versions import served_version
from .evaluation import BLEND_PARTS, SESSION_DEPTH, default_blend
from .training import Bundle, load_bundle

logger = logging.getLogger(__name__)

#: Products each part of the blend ranks (the session list's also feed the new-product places).
DEPTH = SESSION_DEPTH
#: The active version's loaded bundle (item-kNN part of the blend), by version name.
_BUNDLES: dict[str, tuple[Bundle, dict[str, int], dict[int, int]]] = {}
_BUNDLE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ShopperHistory:
    """What serving needs of a shopper's events, read in one query (:func:`shopper_history`).

    Attributes:
        recent: the last ``SESSION_EVENTS`` events on products, ``(product_id, type, when)``,
            newest first.
        vectors: the served image vectors of those products (those that have one).
        purchased: every product the shopper bought ([] unless ``EXCLUDE_PURCHASED``).
    """

    recent: list[tuple[int, str, dt.datetime]] = field(default_factory=list)
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    purchased: list[int] = field(default_factory=list)


def shopper_history(subject: str, embedder: ModelVersion | None = None) -> ShopperHistory:
    """The shopper's recent events with their products' image vectors under ``embedder`` (the
    served one by default) and the products they bought: one query."""
    embedder = embedder or served_version(ModelKind.EMBEDDER)
    events, vectors = InteractionEvent._meta.db_table, ProductEmbedding._meta.db_table
    sql = (f"(SELECT ev.product_id, ev.event_type, ev.occurred_at, vector_send(pe.vector) FROM {events} ev "
           f"LEFT JOIN {vectors} pe ON pe.product_id = ev.product_id AND pe.model_version = %s "
           f"WHERE ev.subject_key = %s AND ev.product_id IS NOT NULL AND ev.event_type <> 'impression' "
           f"ORDER BY ev.occurred_at DESC LIMIT %s)")
    params: list = [embedder.name if embedder else "", subject, visrec_settings.SESSION_EVENTS]
    if visrec_settings.EXCLUDE_PURCHASED:
        sql += (f" UNION ALL (SELECT DISTINCT product_id, NULL, NULL::timestamptz, NULL::bytea FROM {events} "
                f"WHERE subject_key = %s AND event_type = 'purchase' AND product_id IS NOT NULL)")
        params.append(subject)
    history = ShopperHistory()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for product_id, event_type, occurred_at, vector in cursor.fetchall():
            if event_type is None:
                history.purchased.append(product_id)
                continue
            history.recent.append((product_id, event_type, occurred_at))
            if vector is not None:
                history.vectors[product_id] = vector_index.vector_from_binary(bytes(vector))
    return history


def trained_list(subject: str, k: int, filters: SimilarFilters, exclude: list[int],
                 version: ModelVersion | None = None) -> list[tuple[int, float]]:
    """The active model's top products for a shopper with a stored vector ([] otherwise): one
    round trip, the shopper's vector read by the query itself."""
    version = version or served_version(ModelKind.RECOMMENDER)
    if version is None or not version.dimensions:
        return []
    where, where_params = candidates_where(filters, exclude=exclude)
    sql = vector_index.nearest_by_inner_product_sql(RecommenderItemVector._meta.db_table, version.name,
                                                    version.dimensions, where, k=k,
                                                    query_table=ShopperVector._meta.db_table)
    setup, setup_params = vector_index.scan_settings(k, version)  # a recommender: fixed ef_search or 100
    with connection.cursor() as cursor:  # settings and query: one round trip
        _, rows = vector_index.run_with_settings(cursor, setup, setup_params, sql,
                                                 [subject, subject, *where_params, subject])
    rows = sorted(rows, key=lambda r: -r[1])  # relaxed order: make it exact
    return [(int(r[0]), float(r[1])) for r in rows]


def blend_weights(version: ModelVersion | None) -> dict[str, float]:
    """The blend weights chosen on validation for ``version``, else :func:`default_blend`."""
    chosen = (version.metrics or {}).get("blend") if version is not None else None
    if not isinstance(chosen, dict) or not any(float(chosen.get(p, 0)) > 0 for p in BLEND_PARTS):
        return default_blend()
    return {part: max(0.0, float(chosen.get(part, 0.0))) for part in BLEND_PARTS}


def new_product_share(version: ModelVersion | None) -> float:
    """The share of new-product places ``version``'s training chose, else ``RECOMMENDER_NEW_PRODUCT_SHARE``;
    kept within today's settings (``RECOMMENDER_NEW_PRODUCT_SHARE`` 0: off)."""
    floor = float(visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE)
    if floor <= 0:
        return 0.0
    chosen = (version.metrics or {}).get("new_product_share") if version is not None else None
    if not isinstance(chosen, (int, float)) or isinstance(chosen, bool) or not 0.0 <= chosen <= 1.0:
        chosen = floor
    return min(max(float(chosen), floor), max(floor, float(visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE_MAX)))


def _bundle(version: ModelVersion) -> tuple[Bundle, dict[str, int], dict[int, int]]:
    """The version's bundle with its subject and product index maps, loaded once per process
    (the first requests of a threaded worker wait for one load instead of each loading it)."""
    loaded = _BUNDLES.get(version.name)
    if loaded is None:
        with _BUNDLE_LOCK:
            loaded = _BUNDLES.get(version.name)
            if loaded is None:
                bundle = load_bundle(version)
                loaded = (bundle, {s: i for i, s in enumerate(bundle.subjects.tolist())},
                          {int(p): i for i, p in enumerate(bundle.products.tolist())})
                _BUNDLES.clear()
                _BUNDLES[version.name] = loaded
    return loaded


def neighbours_list(subject: str, k: int, filters: SimilarFilters, exclude: list[int],
                    version: ModelVersion | None = None,
                    history: ShopperHistory | None = None) -> list[tuple[int, float]]:
    """Item-kNN's top products for a shopper: from their training history if the model knows
    them, else from their recent events; [] without an item-kNN part or any signal.

    ``history``: the shopper's :func:`shopper_history` when the caller has read it.
    """
    version = version or served_version(ModelKind.RECOMMENDER)
    if version is None or not version.artefact:
        return []
    bundle, users, items = _bundle(version)
    if bundle.neighbours is None:
        return []
    user = users.get(subject, -1)
    seen, weights = np.zeros(0, np.int64), np.zeros(0, np.float32)
    if user < 0:
        table = visrec_settings.EVENT_WEIGHTS
        history = history if history is not None else shopper_history(subject)
        recent = [(items[p], table.get(t, 0.0)) for p, t, _ in history.recent if p in items]
        if not recent:
            return []
        seen, weights = np.array([r[0] for r in recent]), np.array([r[1] for r in recent], np.float32)
    ids, values = bundle.neighbours.positive_top(user, 4 * k, seen, weights)
    ranked = list(zip(bundle.products[ids].tolist(), np.asarray(values, dtype=float).tolist()))
    return _passing(ranked, filters, exclude)[:k]


def _parts_key(subject: str) -> str:
    return f"visrec:foryou:{subject}"


def model_parts(subject: str, depth: int, filters: SimilarFilters, exclude: list[int], version: ModelVersion | None,
                history: ShopperHistory, weights: dict[str, float], cached=None,
                alongside: Callable[[], list] | None = None) -> tuple[list, list, list]:
    """The trained model's list and item-kNN's for a shopper, cached per shopper, and the
    result of ``alongside`` (the caller's own read-only part: the session list) or [].

    Both lists are fixed by the served version for a shopper it was trained on, until they
    buy something (their exclusions change) or the catalogue changes; so they are kept for
    ``FOR_YOU_CACHE_SECONDS`` under one key per shopper, with what they were computed for
    (version, depth, filters, exclusions): anything else is a miss, and catalogue changes
    (stock, prices, deleted products) show within that time. Item-kNN's list for a shopper
    the saved model does not know comes from their recent events, so it is not kept
    (recomputed on every request). :func:`forget_shoppers` drops a shopper's entry.

    On a miss the trained list's query, ``alongside`` and, for a shopper the saved model
    knows, item-kNN's list (it needs nothing of the trained list) run at once where that is
    safe (:func:`~visrec.services.db.concurrent_queries.run_all`); item-kNN's list is kept only
    if the trained list is not empty, as when they run one after the other.

    ``cached``: the entry read by the caller (``recommend_for_subject`` reads it with the
    embeddings generation, in one round trip).
    """
    extra = [alongside] if alongside is not None else []  # no pool thread for nothing to run

    def beside() -> list:
        return alongside() if alongside is not None else []

    if version is None:
        return [], [], beside()
    variant = (version.name, depth, filters.cache_key(), tuple(sorted(exclude)), weights["itemknn"] > 0)
    wants_neighbours = weights["itemknn"] > 0

    def neighbours() -> list:
        return neighbours_list(subject, depth, filters, exclude, version, history)

    if cached is not None and cached[0] == variant:
        trained, kept = cached[1], cached[2]
        if kept is not None or not (trained and wants_neighbours):
            return trained, kept or [], beside()
        found, *other = run_all(neighbours, *extra)  # from recent events: never kept
        return trained, found, other[0] if other else []
    known = wants_neighbours and bool(version.artefact) and subject in _bundle(version)[1]
    results = run_all(lambda: trained_list(subject, depth, filters, exclude, version), *extra,
                      *([neighbours] if known else []))
    trained, other = results[0], (results[1] if extra else [])
    if known:
        found = results[-1] if trained else []
    else:
        found = neighbours() if trained and wants_neighbours else []
    seconds = visrec_settings.FOR_YOU_CACHE_SECONDS
    if seconds:
        from_model = not (trained and wants_neighbours and version.artefact) or known
        cache.set(_parts_key(subject), (variant, trained, found if from_model else None), seconds)
    return trained, found, other


def forget_shoppers(subjects: list[str]) -> None:
    """Drops the shoppers' cached model lists (:func:`model_parts`): after erasure or re-keying."""
    if subjects:
        cache.delete_many([_parts_key(s) for s in subjects])


def session_query(subject: str, now: dt.datetime | None = None, embedder: ModelVersion | None = None,
                  history: ShopperHistory | None = None) -> np.ndarray | None:
    """The shopper's session vector: unit float32 (D,) in image space, or None without signal.

    ``embedder``, ``history``: the served embedder version and the shopper's
    :func:`shopper_history` (read with that version) when the caller already has them.
    """
    version = embedder or served_version(ModelKind.EMBEDDER)
    if version is None:
        return None
    history = history if history is not None else shopper_history(subject, version)
    recent = [r for r in history.recent if r[0] in history.vectors]
    if not recent:
        return None
    # Ages from the shopper's newest event (or ``now`` if given): the vector is a normalised mean,
    # so only ratios of weights matter, and an old history does not underflow to nothing.
    now = now or max(r[2] for r in recent)
    table = visrec_settings.EVENT_WEIGHTS
    weights = session_weights(np.array([table.get(r[1], 0.0) for r in recent]),
                              np.array([max((now - r[2]).total_seconds(), 0) / 3600 for r in recent]),
                              visrec_settings.SESSION_HALF_LIFE_HOURS)
    return session_vector(np.stack([history.vectors[r[0]] for r in recent]), weights)


def session_list(subject: str, k: int, filters: SimilarFilters, exclude: list[int],
                 now: dt.datetime | None = None, query: np.ndarray | None = None,
                 embedder: ModelVersion | None = None) -> list[tuple[int, float]]:
    """Products that look like what the shopper recently viewed, carted and bought."""
    query = session_query(subject, now, embedder) if query is None else query
    if query is None:
        return []
    return search_by_vector(query, k, filters, exclude=exclude, version=embedder)


def new_products(session: list[tuple[int, float]], version: ModelVersion | None = None) -> list[tuple[int, float]]:
    """The products of the session list that had no interactions in the active model's
    training window (or came after it), best first: the candidates for the list's
    new-product places. No query; [] without a saved record of the window."""
    version = version or served_version(ModelKind.RECOMMENDER)
    if not session or version is None or not version.artefact:
        return []
    bundle, _, items = _bundle(version)
    if bundle.warm is None:
        return []
    return [(p, s) for p, s in session if p not in items or not bundle.warm[items[p]]]


def popular_list(k: int, filters: SimilarFilters, exclude, version: ModelVersion | None = None
                 ) -> list[tuple[int, float]]:
    """The blend's popularity part: the served version's products by their (recency-weighted)
    popularity in its training window, restricted to the shop's filters (one query); [] when
    the version has no popularity part."""
    version = version or served_version(ModelKind.RECOMMENDER)
    if version is None or not version.artefact:
        return []
    bundle, _, _ = _bundle(version)
    if bundle.popularity is None:
        return []
    order = np.argsort(-bundle.popularity, kind="stable")[: 4 * k + len(exclude)]
    ranked = [(int(bundle.products[i]), float(bundle.popularity[i])) for i in order]
    return _passing(ranked, filters, exclude)[:k]


def _passing(ranked: list[tuple[int, float]], filters: SimilarFilters, exclude) -> list[tuple[int, float]]:
    """The entries of ``ranked`` whose products pass the shop's filters and are not excluded (one query).

    The ids go as one array parameter (``= ANY``, :func:`~visrec.services.db.vector_index.id_array`),
    so the statement's text is the same whatever the ids, and the driver parses it once per
    process.
    """
    excluded = set(exclude)
    ranked = [(p, v) for p, v in ranked if p not in excluded]
    if not ranked:
        return []
    sql, params = candidate_sql(filters)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT c.pk FROM ({sql}) c WHERE c.pk = ANY(%s::{products.pk_array_type()})",
                       [*params, vector_index.id_array(p for p, _ in ranked)])
        allowed = {row[0] for row in cursor.fetchall()}
    return [(p, v) for p, v in ranked if p in allowed]


def trending_list(k: int, filters: SimilarFilters, exclude: list[int] = (), now: dt.datetime | None = None
                  ) -> list[tuple[int, float]]:
    """Trending products for everyone: the day's differentially private release (see
    :mod:`visrec.services.privacy.dp_releases`), restricted to the shop's filters.

    The filters are asked of the release's head only (``4 k`` products, widening while
    fewer than ``k`` pass), never of the whole catalogue.
    """
    from ..privacy.dp_releases import dp_trending

    ranked = dp_trending()
    found: list[tuple[int, float]] = []
    start, window = 0, 4 * k
    while start < len(ranked) and len(found) < k:
        head = ranked[start:start + window]
        found += _passing(head, filters, exclude)
        start, window = start + window, window * 4
    return found[:k]


@dataclass
class ForYouList:
    """A shopper's served list and how it was made (what :mod:`.explain` says why from).

    Attributes:
        ranked: ``[(product_id, score), ...]`` served, best first.
        source: ``blended``, ``model``, ``session``, ``popular`` or ``trending``.
        parts: the blend's lists by part name (``model``, ``itemknn``, ``session``,
            ``popularity``), those with weight, as blended.
        weights: the blend weights.
        history: the shopper's events as read for this list.
        new: the products given a new-product place.
        arm: the shopper's arm of the running experiment (``"a"``/``"b"``), else ``""``.
    """

    ranked: list[tuple[int, float]]
    source: str
    parts: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    history: ShopperHistory = field(default_factory=ShopperHistory)
    new: set = field(default_factory=set)
    arm: str = ""


def recommend_for_subject(subject: str | None, k: int = 8, filters: SimilarFilters | None = None,
                          now: dt.datetime | None = None, leave_out=()) -> tuple[list[tuple[int, float]], str]:
    """The shopper's list and where it came from (:func:`recommend`'s ``ranked`` and ``source``)."""
    found = recommend(subject, k, filters, now, leave_out)
    return found.ranked, found.source


def recommend_for_request(request, k: int = 8, filters: SimilarFilters | None = None, leave_out=()) -> ForYouList:
    """The requesting shopper's list, from the arm of the running experiment they are in.

    What the tag and the REST view serve. Without an experiment this is :func:`recommend`
    for the request's shopper; in one, arm A serves its version, arm B its version or the
    shop's own list (``SHOP_LIST``), and the list says its ``arm``.
    """
    from ..experiments.assignment import assignment, version_of
    from ..privacy.tracking import reading_subject

    subject = reading_subject(request)
    assigned = assignment(subject)
    if assigned is None:
        return recommend(subject, k, filters, leave_out=leave_out)
    experiment, arm = assigned
    version = version_of(experiment, arm)
    if version is None:
        found = shop_list(request, k, filters or SimilarFilters(), leave_out)
    else:
        found = recommend(subject, k, filters, leave_out=leave_out, version=version)
    found.arm = arm
    return found


def shop_list(request, k: int, filters: SimilarFilters, leave_out=()) -> ForYouList:
    """The shop's own list (``VISREC["SHOP_LIST"]``) through visrec's filters, as source ``shop``.

    The callable gets ``(request, k, leave_out)`` and returns product primary keys, best
    first. If it fails, the list is empty (logged): the arm never borrows visrec's list,
    which would make the two arms alike.
    """
    page = set(products.canonical_ids(leave_out).values()) if leave_out else set()
    try:
        ids = list(visrec_settings.hook("SHOP_LIST")(request, k, set(page)))[: 4 * k]
    except Exception:  # noqa: BLE001 - the host's code: an empty arm, not a broken page
        logger.exception("visrec: SHOP_LIST failed")
        return ForYouList([], "shop")
    order = list(dict.fromkeys(products.canonical_ids(ids).values()))
    ranked = [(pid, float(len(order) - i)) for i, pid in enumerate(order) if pid not in page]
    return ForYouList(_passing(ranked, filters, ())[:k], "shop")


def recommend(subject: str | None, k: int = 8, filters: SimilarFilters | None = None,
              now: dt.datetime | None = None, leave_out=(), version: ModelVersion | None = None) -> ForYouList:
    """The shopper's list: ``blended``, ``model``, ``session``, ``popular`` or ``trending``.

    ``leave_out``: products the page shows already (its own product, a "similar" row), left
    out of every part after the shopper's cached lists are read, so they do not split the
    cache per page. ``version``: the recommender version to serve (an experiment's arm);
    default the served one.
    """
    filters = filters or SimilarFilters()
    page = set(products.canonical_ids(leave_out).values()) if leave_out else set()
    if not subject:  # a shopper visrec has not seen (or whose session cannot be read)
        return ForYouList(trending_list(k, filters, list(page), now), "trending")
    depth = max(DEPTH, k + len(page))
    # One cache round trip: the generation (both versions' memo) and the shopper's model lists.
    generation, cached = generation_and_entry(_parts_key(subject) if visrec_settings.FOR_YOU_CACHE_SECONDS else None)
    version = version or served_version(ModelKind.RECOMMENDER, generation)
    embedder = served_version(ModelKind.EMBEDDER, generation)
    history = shopper_history(subject, embedder)  # events read once: exclusion, session, item-kNN
    exclude = history.purchased
    weights = blend_weights(version)
    query = session_query(subject, now, embedder, history)
    # The model's queries and the session list's at once where safe (see model_parts).
    trained, neighbours, session = model_parts(
        subject, depth, filters, exclude, version, history, weights, cached,
        alongside=(lambda: session_list(subject, depth, filters, exclude, now, query, embedder))
        if query is not None else None)
    popular = popular_list(depth, filters, exclude, version) if weights.get("popularity", 0) > 0 else []
    if page:
        trained, neighbours, session, popular = ([(p, s) for p, s in ranked if p not in page]
                                                 for ranked in (trained, neighbours, session, popular))
    parts = {name: ranked for name, ranked in (("model", trained), ("itemknn", neighbours), ("session", session),
                                               ("popularity", popular))
             if ranked and weights[name] > 0}

    def made(ranked, source, new=()) -> ForYouList:
        return ForYouList(ranked, source, parts, weights, history, set(new))

    if len(parts) > 1:
        ids = rrf_blend([np.array([p for p, _ in ranked]) for ranked in parts.values()],
                        [weights[name] for name in parts], k).tolist()
        head = set(ids[:k])
        slots = new_product_slots(k, new_product_share(version))
        if slots:
            ids = reserve_slots(ids, [p for p, _ in new_products(session, version)], k, slots)
        scores = {p: s for p, s in trained}
        return made([(int(p), scores.get(int(p), 0.0)) for p in ids], "blended",
                    new=[int(p) for p in ids if p not in head])
    if len(parts) == 1:
        name, ranked = next(iter(parts.items()))
        return made(ranked[:k], {"session": "session", "popularity": "popular"}.get(name, "model"))
    if trained:
        return made(trained[:k], "model")
    if session:
        return made(session[:k], "session")
    return made(trending_list(k, filters, [*exclude, *page], now), "trending")
