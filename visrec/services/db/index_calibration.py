"""Post-build self-check of an embedder version's product HNSW index: the ef_search it needs.

The recall of an HNSW index depends on the data and on the build itself (pgvector builds in
parallel, so two builds of the same vectors differ): at 1,000,000 clustered products one
``hnsw.ef_search`` gave recall@10 0.974 on one build and 0.984 on another. A fixed value
cannot promise a recall for every shop, so each version's index is measured once built:

1. a deterministic sample of the version's products (up to ``sample``);
2. their exact top-10 among all the version's product vectors, in one streaming pass
   (``CHUNK`` rows at a time by product id: memory bounded by the chunk, not the catalogue);
3. the service's own HNSW query (without filters) for each of them, at increasing
   ``ef_search``, until recall@10 against step 2 reaches ``VISREC["HNSW_TARGET_RECALL"]``
   (with 95% confidence: the sample's lower bound reaches it).

The smallest ``ef_search`` that reaches it is stored in the version's metrics under
``"hnsw"``; queries use it unless ``VISREC["HNSW_EF_SEARCH"]`` fixes one (see
:func:`visrec.services.db.vector_index.ef_search_for`).
:func:`~visrec.services.catalogue.embedders.activate_embedder` runs the check before it switches a
version on; ``visrec_calibrate`` runs it again.

:class:`RunningTopK`, :func:`query_recalls`, :func:`recall_lower_bound`,
:func:`choose_ef_search` and :func:`ef_candidates` are pure computation (numpy, no ORM).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from ...conf import get_product_model, visrec_settings
from ...models import ModelVersion, ProductEmbedding
from . import vector_index

logger = logging.getLogger(__name__)

#: recall@K is measured, the k of the "similar" lists.
K = 10
#: ef_search values tried, in this order (each at least 2 K and at most 1000).
EF_CANDIDATES = (40, 64, 100, 150, 200, 300, 400, 600, 800, 1000)
#: Products measured: the standard error of the mean recall is about 0.1 / sqrt(SAMPLE) when
#: per-query recalls spread like a clustered catalogue's (0.003 at 1000).
SAMPLE = 1000
#: Below this many products a version is not calibrated (recall is then trivially high).
MIN_PRODUCTS = 50
#: Product vectors read per query of the exact pass.
CHUNK = 20_000
#: Salt of the sample's order: the same products are drawn every time (for a given catalogue).
SAMPLE_SEED = "visrec-hnsw-calibration"
#: Two cosine similarities closer than this are a tie (float4 in pgvector, float32 here).
TIE_TOLERANCE = 1e-5
#: An ef_search reaches the target when the one-sided 95% lower bound of its recall does (a
#: sample of 200 measures recall to about ±0.005): the index's recall over the whole catalogue
#: is then at least the target with 95% confidence, not merely as likely as not.
CONFIDENCE_Z = 1.645
#: Primary keys the calibration handles (its exact pass keeps ids in int64 arrays).
INTEGER_KEYS = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
                "PositiveIntegerField", "PositiveBigIntegerField", "SmallIntegerField", "PositiveSmallIntegerField"}


class RunningTopK:
    """Exact top-k by cosine similarity of some query vectors, over vectors seen chunk by chunk.

    A query's own id is never among its neighbours. Memory: the queries, the running
    ``(queries, k)`` top and one chunk's ``(queries, chunk)`` scores.

    Args:
        queries: float32, shape ``(s, d)``.
        query_ids: int64, shape ``(s,)``: the ids the queries have among the vectors.
        k: neighbours kept per query.
    """

    def __init__(self, queries: np.ndarray, query_ids: Sequence[int], k: int = K) -> None:
        queries = np.asarray(queries, dtype=np.float32)
        self.queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        self.query_ids = np.asarray(query_ids, dtype=np.int64)
        self.k = k
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)

    def update(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Takes one chunk: ids int64 ``(c,)``, vectors float32 ``(c, d)``."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        scores = self.queries @ vectors.T  # (s, c)
        scores[self.query_ids[:, None] == ids[None, :]] = -np.inf
        all_scores = np.concatenate([self.scores, scores], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, scores.shape)], axis=1)
        keep = np.argpartition(-all_scores, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(all_scores, keep, axis=1)
        self.ids = np.take_along_axis(all_ids, keep, axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour ids int64 ``(s, k)`` and cosine similarities float32 ``(s, k)``, nearest
        first (id -1 and -inf where fewer than k other vectors were seen)."""
        order = np.argsort(-self.scores, axis=1, kind="stable")
        return np.take_along_axis(self.ids, order, axis=1), np.take_along_axis(self.scores, order, axis=1)


def query_recalls(found: Sequence[Sequence[tuple[int, float]]], exact_ids: np.ndarray, exact_scores: np.ndarray,
                  k: int = K) -> np.ndarray:
    """Each query's share of its exact top-k that an approximate search found: float64 ``(s,)``.

    A found product that is not in the exact top-k but as similar as its k-th (a tie, e.g.
    two products with the same picture) counts as found.

    Args:
        found: per query, ``[(product_id, cosine_distance), ...]`` from the index.
        exact_ids: int64 ``(s, k)`` and ``exact_scores``: float32 ``(s, k)`` cosine
            similarities, from :meth:`RunningTopK.result`.
    """
    shares = np.ones(len(found))
    for q, (rows, ids, scores) in enumerate(zip(found, exact_ids, exact_scores)):
        wanted = {int(i) for i in ids[:k] if i >= 0}
        if not wanted:
            continue
        floor = float(scores[len(wanted) - 1]) - TIE_TOLERANCE
        hits = sum(1 for pid, distance in rows[:k] if pid in wanted or 1.0 - float(distance) >= floor)
        shares[q] = (hits + k - len(wanted)) / k  # fewer than k exist: nothing more to find
    return shares


def recall_lower_bound(shares: np.ndarray) -> float:
    """One-sided 95% lower confidence bound of the mean recall, from per-query recalls.

    Whole queries miss together (a search stuck in the wrong cluster), so the queries, not
    their k results, are the independent draws: mean - 1.645 standard errors.
    """
    if len(shares) < 2:
        return float(np.mean(shares)) if len(shares) else 1.0
    return float(np.mean(shares) - CONFIDENCE_Z * np.std(shares, ddof=1) / np.sqrt(len(shares)))


def ef_candidates(k: int = K) -> list[int]:
    """``EF_CANDIDATES`` raised to at least ``2 k`` (and at most 1000), without repeats."""
    return sorted({min(max(ef, 2 * k), vector_index.MAX_EF_SEARCH) for ef in EF_CANDIDATES})


def choose_ef_search(recalls: dict[int, float], target: float,
                     bounds: dict[int, float] | None = None) -> tuple[int, bool]:
    """The smallest ef_search that reaches ``target`` and True; if none does, the smallest
    on the plateau of the best recall and False.

    The plateau: the ef values whose recall is within one standard error of the best one's
    (with ``bounds``, that error is ``(recall - bound) / CONFIDENCE_Z``; without, only the
    best itself). A graph that levels off below the target gains nothing from a larger
    ef_search but slower queries: 1000 is not chosen for a difference the sample cannot see.

    Args:
        recalls: ef_search -> mean recall@k.
        bounds: ef_search -> the lower confidence bound of that recall; reaching the target
            means the bound reaches it (default: the recall itself).
    """
    bounds = recalls if bounds is None else bounds
    reached = [ef for ef in recalls if bounds[ef] >= target]
    if reached:
        return min(reached), True
    best = max(recalls, key=lambda ef: (recalls[ef], -ef))
    error = max(0.0, (recalls[best] - bounds[best]) / CONFIDENCE_Z)
    return min(ef for ef, recall in recalls.items() if recall >= recalls[best] - error), False


def sample_products(version: ModelVersion, sample: int) -> list[int]:
    """Up to ``sample`` ids of products with a vector under ``version``, the same on every call
    (ordered by a hash of the id and ``SAMPLE_SEED``; PostgreSQL keeps only the top ones)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT product_id FROM {ProductEmbedding._meta.db_table} WHERE model_version = %s "
            f"ORDER BY md5(product_id::text || %s), product_id LIMIT %s",
            [version.name, SAMPLE_SEED, sample],
        )
        return [row[0] for row in cursor.fetchall()]


def product_vectors(version: ModelVersion, chunk: int = CHUNK, *,
                    product_ids: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The version's product vectors in chunks of up to ``chunk`` rows by product id:
    ``(ids int64 (c,), vectors float32 (c, dimensions))``, read in pgvector's binary form.

    Args:
        product_ids: only these products (default: all of the version's).
    """
    table = ProductEmbedding._meta.db_table
    only = " AND product_id = ANY(%s)" if product_ids is not None else ""
    extra = [list(product_ids)] if product_ids is not None else []
    after = -(2 ** 63)
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT product_id, vector_send(vector) FROM {table} "
                f"WHERE model_version = %s AND product_id > %s{only} ORDER BY product_id LIMIT %s",
                [version.name, after, *extra, chunk],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            yield ids, vector_index.vectors_from_binary([row[1] for row in rows], version.dimensions)
            if len(rows) < chunk:
                return
            after = int(ids[-1])


def exact_neighbours(version: ModelVersion, product_ids: Sequence[int], k: int = K, *, chunk: int = CHUNK,
                     progress: Callable[[str, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact cosine top-k of some products among all the version's product vectors, each
    product left out of its own list, in one pass over the vectors.

    Returns:
        The products' ids int64 ``(s,)`` (those with a vector, in id order), their neighbour
        ids int64 ``(s, k)`` and similarities float32 ``(s, k)``, nearest first.
    """
    parts = list(product_vectors(version, chunk, product_ids=product_ids))
    query_ids = np.concatenate([ids for ids, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    queries = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, version.dimensions), np.float32)
    top = RunningTopK(queries, query_ids, k)
    for ids, vectors in product_vectors(version, chunk):
        top.update(ids, vectors)
        if progress is not None:
            progress("exact", len(ids))
    return (query_ids, *top.result())


def hnsw_neighbours(version: ModelVersion, product_id: int, ef_search: int, k: int = K) -> list[tuple[int, float]]:
    """The service's HNSW query for a product's neighbours, without filters, at ``ef_search``:
    ``[(product_id, cosine_distance), ...]`` (the product itself left out)."""
    sql = vector_index.nearest_products_sql(version.name, version.dimensions, "e.product_id <> %s", k=k,
                                            by_product=True)
    setup, setup_params = vector_index.scan_settings(k, ef_search=ef_search)
    with connection.cursor() as cursor:
        _, rows = vector_index.run_with_settings(
            cursor, setup, setup_params, sql,
            vector_index.nearest_products_params(product_id, [product_id], by_product=True))
    return [(row[0], float(row[1])) for row in rows]


def index_identity(version: ModelVersion) -> str | None:
    """Which build of the version's product HNSW index exists now (``"oid/filenode"``: a
    rebuild or ``REINDEX`` changes it), or None without one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid::bigint, pg_relation_filenode(oid) FROM pg_class WHERE relname = %s",
                       [vector_index.index_name(ProductEmbedding, version.name)])
        row = cursor.fetchone()
    return f"{row[0]}/{row[1]}" if row else None


def is_calibrated(version: ModelVersion) -> bool:
    """Whether the version's stored calibration was measured on the index that exists now."""
    stored = (version.metrics or {}).get("hnsw") or {}
    return bool(stored.get("ef_search")) and stored.get("index") == index_identity(version)


def calibrate_ef_search(version: ModelVersion, *, sample: int = SAMPLE, target: float | None = None,
                        progress: Callable[[str, int], None] | None = None) -> dict:
    """Measures recall@10 of a version's product HNSW index and stores the ef_search it needs.

    Tries ``ef_candidates()`` in increasing order and keeps the smallest that reaches
    ``target`` (its recall's lower 95% confidence bound does, see ``CONFIDENCE_Z``); if none
    does, the smallest on the best recall's plateau (:func:`choose_ef_search`), and logs a warning (the graph is
    too poor for the data: rebuild with a larger ``HNSW_M`` / ``HNSW_EF_CONSTRUCTION``). The
    result is stored under ``metrics["hnsw"]`` through ``save()`` (so this process's memo of
    the served version is forgotten; other processes re-read it within
    :data:`~visrec.services.serving.versions.SERVED_MEMO_SECONDS`).

    Args:
        version: an embedder version whose product vectors and HNSW index exist.
        sample: products measured (at most; fewer if the version has fewer).
        target: recall@10 to reach (default ``VISREC["HNSW_TARGET_RECALL"]``).
        progress: optional ``callable(stage, n)``: ``("exact", vectors read)`` during the exact
            pass, ``("hnsw", queries run)`` during the trials.

    Returns:
        What was stored: ``ef_search``, ``target``, ``reached``, ``recall`` (ef_search as a
        string -> recall@10, for each ef tried), ``recall_low`` (the same -> its lower 95%
        confidence bound), ``sample``, ``products``, ``seconds``,
        ``calibrated`` (ISO date), ``hnsw_m``, ``hnsw_ef_construction`` (the settings now: those
        of the build if unchanged since), ``index`` (:func:`index_identity`); or, for a version
        with fewer than ``MIN_PRODUCTS`` products, ``{"skipped": reason, ...}`` (nothing stored).
    """
    start = time.perf_counter()
    target = float(visrec_settings.HNSW_TARGET_RECALL if target is None else target)
    products = ProductEmbedding.objects.filter(model_version=version.name).count()
    if products < MIN_PRODUCTS:
        return {"skipped": f"{products} products (fewer than {MIN_PRODUCTS}): not calibrated",
                "products": products, "target": target}
    if get_product_model()._meta.pk.get_internal_type() not in INTEGER_KEYS:
        # The exact pass keeps product ids in int64 arrays and pages by id.
        logger.warning("visrec: %s not calibrated: product keys are not integers (ef_search stays at its "
                       "default; set VISREC['HNSW_EF_SEARCH'] to fix another)", version.name)
        return {"skipped": "product keys are not integers: not calibrated", "products": products, "target": target}
    query_ids, exact_ids, exact_scores = exact_neighbours(version, sample_products(version, sample),
                                                          progress=progress)
    recalls: dict[int, float] = {}
    bounds: dict[int, float] = {}
    for ef in ef_candidates():
        found = []
        for product_id in query_ids.tolist():
            found.append(hnsw_neighbours(version, product_id, ef))
            if progress is not None:
                progress("hnsw", 1)
        shares = query_recalls(found, exact_ids, exact_scores)
        recalls[ef], bounds[ef] = float(np.mean(shares)), recall_lower_bound(shares)
        if bounds[ef] >= target:
            break
    ef_search, reached = choose_ef_search(recalls, target, bounds)
    result = {
        "ef_search": ef_search, "target": target, "reached": reached,
        "recall": {str(ef): round(recall, 4) for ef, recall in recalls.items()},
        "recall_low": {str(ef): round(bound, 4) for ef, bound in bounds.items()},
        "sample": len(query_ids), "products": products, "seconds": round(time.perf_counter() - start, 2),
        "calibrated": timezone.now().isoformat(timespec="seconds"),
        "hnsw_m": visrec_settings.HNSW_M, "hnsw_ef_construction": visrec_settings.HNSW_EF_CONSTRUCTION,
        "index": index_identity(version),
        "nn_similarity": similarity_percentiles(exact_scores[:, 0]),
    }
    if not reached:
        logger.warning(
            "visrec: the HNSW index of %s reaches recall@10 %.3f at best (ef_search %d), below the target %.3f: "
            "rebuild it with larger VISREC['HNSW_M'] / VISREC['HNSW_EF_CONSTRUCTION'] (now %s / %s)",
            version.name, recalls[ef_search], ef_search, target, result["hnsw_m"], result["hnsw_ef_construction"])
    store_metrics(version, "hnsw", result)
    logger.info("visrec: %s calibrated: ef_search %d, recall@10 %.3f (target %.3f) in %.1fs",
                version.name, ef_search, recalls[ef_search], target, result["seconds"])
    return result


def similarity_percentiles(scores: np.ndarray) -> dict[str, float]:
    """Percentiles of products' cosine similarity to their nearest other product (p05, p50)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return {}
    return {"p05": round(float(np.percentile(scores, 5)), 4), "p50": round(float(np.percentile(scores, 50)), 4),
            "sample": int(len(scores))}


def nearest_similarity(version: ModelVersion, *, sample: int = 200) -> dict[str, float]:
    """How similar a catalogue product is to its nearest other product, under ``version``:
    ``{"p05", "p50", "sample"}`` from its calibration, or measured now (exact, on ``sample``
    products) and stored for next time. The yardstick of "looks like something we sell"."""
    known = (version.metrics or {}).get("hnsw", {}).get("nn_similarity") or (version.metrics or {}).get(
        "nn_similarity")
    if known:
        return known
    ids = sample_products(version, sample)
    if len(ids) < 2:
        return {}
    _, _, scores = exact_neighbours(version, ids, k=1)
    found = similarity_percentiles(scores[:, 0])
    if found:
        store_metrics(version, "nn_similarity", found)
    return found


def store_metrics(version: ModelVersion, key: str, value) -> None:
    """Sets ``version.metrics[key]`` in the database (other keys as they are there now) and on
    ``version``, through ``save()``."""
    with transaction.atomic():
        fresh = ModelVersion.objects.select_for_update().get(pk=version.pk)
        fresh.metrics = {**(fresh.metrics or {}), key: value}
        fresh.save(update_fields=["metrics"])
    version.metrics = fresh.metrics
