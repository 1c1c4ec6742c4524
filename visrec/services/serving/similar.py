""""Visually similar": the k products nearest to a product or to an uploaded photo.

One function per question, behind every entry point (template tag, REST view, admin):

* :func:`similar_products` — nearest to a product's vector, never the product itself;
* :func:`search_by_image` — nearest to an uploaded photo, embedded like the catalogue.

Both run one pgvector query on the served version's HNSW index, with the shop's filters
(in stock, same/other category, price band, a host hook narrowing the queryset) inside
the query. So that a selective filter still returns k products when k exist, the query
uses pgvector 0.8's iterative index scans (``hnsw.iterative_scan = relaxed_order``),
then re-sorts exactly; on older pgvector it widens ``ef_search`` and retries. The query's
``ef_search`` is the served version's own, calibrated for the target recall when it was
switched on (:func:`~visrec.services.db.vector_index.ef_search_for`). Optional:
exclusion of near-duplicates and diversity by maximal marginal relevance.

Results are cached with the embeddings generation number they were computed under and
the served version's name; extraction, version switches and deleted products bump that
number, so a new vector, a switched version or a deleted product makes every entry
stale (a miss). A miss's write does not wait on the request: it goes out with the
process's next cache read or after the response (:mod:`~visrec.services.db.cache_writes`).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal

import numpy as np
from django.core.exceptions import EmptyResultSet
from django.db import connection

from ...conf import visrec_settings
from ...models import ModelKind, ModelVersion, ProductEmbedding
from ..catalogue import products
from ..db import vector_index
from ..db.cache_writes import defer as defer_cache_write
from ..db.compiled_sql import SQLMemo
from .generation import generation_and_entry
from .versions import served_version

logger = logging.getLogger(__name__)

CACHE_SECONDS = 600
#: Cosine distance under which two products count as the same picture (size/colour variants).
NEAR_DUPLICATE_DISTANCE = 0.02
MAX_K = 100


class NotEmbedded(LookupError):
    """The product has no vector under the served version (yet)."""


@dataclass(frozen=True)
class SimilarFilters:
    """What a shop may ask of a "similar" list.

    Attributes:
        in_stock: only products matching ``IN_STOCK_FILTER``.
        category: ``"same"`` or ``"other"`` than the query product's, or ``None``.
        min_price, max_price: price band (needs ``PRICE_FIELD``).
        exclude_near_duplicates: drop products whose picture is (almost) the query's, and
            all but the first of results that are near-duplicates of each other.
        diversity: 0 (pure similarity) to 1; above 0, results are re-ranked by MMR.
    """

    in_stock: bool = True
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    exclude_near_duplicates: bool = False
    diversity: float = 0.0

    def cache_key(self) -> str:
        """The filters as text for cache keys (3 µs here; ``json.dumps(asdict(...))`` took about 80)."""
        return "|".join(f"{getattr(self, name)!r}" for name in _FILTER_FIELDS)


_FILTER_FIELDS = tuple(f.name for f in fields(SimilarFilters))


@dataclass
class Neighbour:
    product_id: int
    score: float  # cosine similarity, 1 = identical
    vector: np.ndarray | None = field(default=None, repr=False)


def candidate_queryset(filters: SimilarFilters, query_category, hook: Callable | None):
    """The host's products a list may show: shown products (:mod:`~visrec.services.catalogue.products`)
    with the filters and the caller's hook applied."""
    queryset = products.shown_products()
    if filters.in_stock:
        in_stock = products.in_stock_condition()
        if in_stock is not None:
            queryset = queryset.filter(in_stock)
    if filters.category in ("same", "other") and query_category is not None:
        queryset = products.in_category(queryset, query_category, same=filters.category == "same")
    if visrec_settings.PRICE_FIELD and (filters.min_price is not None or filters.max_price is not None):
        queryset, price = products.price_lookup(queryset)
        if filters.min_price is not None:
            queryset = queryset.filter(**{f"{price}__gte": filters.min_price})
        if filters.max_price is not None:
            queryset = queryset.filter(**{f"{price}__lte": filters.max_price})
    if hook is not None:
        queryset = hook(queryset)
    return queryset


#: Compiled candidate SQL by filter values (see :func:`candidate_sql`).
_CANDIDATE_SQL = SQLMemo()


def candidate_sql(filters: SimilarFilters, query_category=None, hook: Callable | None = None) -> tuple[str, list]:
    """``SELECT pk`` of :func:`candidate_queryset`'s products, as SQL and parameters.

    Without a hook the SQL is reused for ``CANDIDATE_SQL_SECONDS`` in each process for each
    filter value (:class:`~visrec.services.db.compiled_sql.SQLMemo`; "for you" needs three);
    one that depends on the request needs 0 (compiled on every call). Its values are
    written into the text (no parameters), as the driver would send them anyway: a
    prepared statement of a query around it then stands for these values, and PostgreSQL
    plans it knowing them (with ``stock > $1`` it would guess the share in stock, and keep
    planning per call, :mod:`~visrec.services.db.prepared_statements`). A hook's queryset is
    compiled on every call, its values written in too: left as parameters of a prepared
    statement, PostgreSQL would type them from their context (``"stock" + $1`` makes 0.4 an
    integer) where the driver's literals keep their own type. No ORDER BY: inside
    ``IN (...)``, a host's default ordering would make PostgreSQL sort the whole candidate
    set and skip the HNSW index.
    """
    def build() -> tuple[str, list]:
        return _inlined(*_compiled(candidate_queryset(filters, query_category, hook)))

    if hook is not None:
        return build()
    key = (filters.in_stock, filters.category, query_category, filters.min_price, filters.max_price)
    return _CANDIDATE_SQL.get(key, build)


def _compiled(queryset) -> tuple[str, list]:
    try:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # e.g. a hook's .none() or pk__in=[]: no candidates
        return f"SELECT NULL::{products.pk_array_type()[:-2]} AS pk WHERE false", []
    return sql, list(params)


def _inlined(sql: str, params: list) -> tuple[str, list]:
    """``sql`` with ``params`` written in as literals (quoted by the driver), ``%`` escaped
    for the statement it goes into."""
    if not params:
        return sql, []
    connection.ensure_connection()
    return connection.ops.compose_sql(sql, params).replace("%", "%%"), []


def candidates_where(filters: SimilarFilters, query_category=None, hook: Callable | None = None,
                     exclude: Sequence[int] = ()) -> tuple[str, list]:
    """A SQL condition on ``e.product_id`` keeping :func:`candidate_sql`'s products less
    ``exclude``, and its parameters. ``exclude`` goes as one array parameter, so the text
    stays the same whatever the ids."""
    sql, params = candidate_sql(filters, query_category, hook)
    where = f"e.product_id IN ({sql})"
    if len(exclude):
        where += f" AND e.product_id <> ALL(%s::{products.pk_array_type()})"
        params.append(vector_index.id_array(exclude))
    return where, params


def _nearest(version: ModelVersion, k: int, candidates: tuple[str, list], *, vector: np.ndarray | None = None,
             product_id: int | None = None, with_vectors: bool = False) -> list[Neighbour]:
    """One filtered HNSW query; returns up to ``k`` neighbours sorted by exact distance.

    ``candidates``: the condition on ``e.product_id`` and its parameters
    (:func:`candidates_where`). The query vector is ``vector``, or else the stored vector of
    ``product_id`` (read by the query itself, and that product left out); ``with_vectors``
    also returns the neighbours' vectors (for near-duplicate exclusion and MMR). One round
    trip (see :func:`~visrec.services.db.vector_index.run_with_settings`): a statement sets the
    scan settings of the transaction, then the query runs. Only when a product's query
    returns nothing does a second one ask whether the product has a vector at all.

    Raises:
        NotEmbedded: ``product_id`` has no vector under ``version``.
    """
    where, params = candidates[0], list(candidates[1])
    by_product = product_id is not None
    if by_product:
        where += " AND e.product_id <> %s"
        params.append(product_id)
        query = product_id
    else:
        query = vector_index.vector_literal(vector)
    sql = vector_index.nearest_products_sql(version.name, version.dimensions, where, k=k, by_product=by_product,
                                            with_vectors=with_vectors)
    setup, setup_params = vector_index.scan_settings(k, version)
    iterative = vector_index.ITERATIVE_SETTING in setup
    ef = int(setup_params[0])
    with connection.cursor() as cursor:
        checked = not by_product
        while True:
            _, rows = vector_index.run_with_settings(
                cursor, setup, setup_params, sql,
                vector_index.nearest_products_params(query, params, by_product=by_product))
            if not rows and not checked:
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {ProductEmbedding._meta.db_table} "
                               f"WHERE product_id = %s AND model_version = %s)", [product_id, version.name])
                if not cursor.fetchone()[0]:
                    raise NotEmbedded(f"product {product_id} has no vector under {version.name}")
            checked = True
            if len(rows) >= k or iterative or ef >= vector_index.MAX_EF_SEARCH:
                break
            ef *= 4  # pgvector < 0.8: widen the candidate list until k pass the filter
            setup_params[0] = str(min(ef, vector_index.MAX_EF_SEARCH))
    neighbours = [
        Neighbour(product_id=row[0], score=1.0 - float(row[1]),
                  vector=vector_index.vector_from_binary(row[2]) if with_vectors else None)
        for row in rows
    ]
    neighbours.sort(key=lambda n: -n.score)  # relaxed order: make it exact
    return neighbours


def _rerank(neighbours: list[Neighbour], k: int, filters: SimilarFilters) -> list[Neighbour]:
    if filters.exclude_near_duplicates:
        kept: list[Neighbour] = []
        for n in neighbours:
            if 1.0 - n.score < NEAR_DUPLICATE_DISTANCE:
                continue
            if any(1.0 - float(n.vector @ m.vector) < NEAR_DUPLICATE_DISTANCE for m in kept):
                continue
            kept.append(n)
        neighbours = kept
    if filters.diversity > 0 and len(neighbours) > 1:
        lam = 1.0 - min(max(filters.diversity, 0.0), 1.0)
        chosen: list[Neighbour] = []
        pool = list(neighbours)
        while pool and len(chosen) < k:
            def mmr(n: Neighbour) -> float:
                redundancy = max((float(n.vector @ c.vector) for c in chosen), default=0.0)
                return lam * n.score - (1 - lam) * redundancy
            best = max(pool, key=mmr)
            chosen.append(best)
            pool.remove(best)
        neighbours = chosen
    return neighbours[:k]


def _search(version, k, filters, query_category, hook, *, vector=None, product_id=None,
            exclude: Sequence[int] = ()) -> list[Neighbour]:
    """``_nearest`` with the shop's filters, then near-duplicate exclusion and MMR if asked."""
    widen = filters.exclude_near_duplicates or filters.diversity > 0
    fetch = min(MAX_K * 3, k * 3 + 10) if widen else k
    candidates = candidates_where(filters, query_category, hook, exclude)
    neighbours = _nearest(version, fetch, candidates, vector=vector, product_id=product_id, with_vectors=widen)
    return _rerank(neighbours, k, filters)


@dataclass(frozen=True)
class SimilarList:
    """A "similar" list and the served embedder version it was computed under."""

    model_version: str
    ranked: list[tuple[int, float]]


def similar_list(
    product_id: int,
    k: int = 8,
    filters: SimilarFilters | None = None,
    *,
    queryset_hook: Callable | None = None,
    use_cache: bool = True,
) -> SimilarList:
    """The ``k`` products that look most like a product, with the served version's name.

    A cached list costs one cache round trip and no query: entries are stored with the
    embeddings generation they were computed under (every new vector and version switch
    bumps it, so a stale entry is a miss) and the version's name; on a miss the served
    version comes from this process's memo (:func:`~visrec.services.serving.versions.served_version`).

    Args:
        product_id: the host product's primary key.
        k: how many (1 to 100).
        filters: see :class:`SimilarFilters` (default: in stock only).
        queryset_hook: ``callable(queryset) -> queryset`` narrowing candidates (results
            with a hook are not cached, since a hook may depend on the request).

    Raises:
        NotEmbedded: no version is served, or the product has no vector under it.
    """
    filters = filters or SimilarFilters()
    k = max(1, min(int(k), MAX_K))
    key = generation = None
    if use_cache and queryset_hook is None:
        # One cache round trip: the entry and the current generation (a stale entry is a miss).
        raw = f"{product_id}|{k}|{filters.cache_key()}"
        key = "visrec:similar:" + hashlib.sha256(raw.encode()).hexdigest()
        generation, entry = generation_and_entry(key)
        if entry is not None and entry[0] == generation:
            return SimilarList(entry[1], entry[2])
    version = served_version(ModelKind.EMBEDDER, generation)
    if version is None:
        raise NotEmbedded("no embedder is served yet; run visrec_index")
    product_id = products.canonical_id(product_id)  # a variant shows its parent's list
    query_category = products.primary_category(product_id) if filters.category else None
    result = [(n.product_id, round(n.score, 6)) for n in
              _search(version, k, filters, query_category, queryset_hook, product_id=product_id)]
    if key:
        # Goes out with this process's next cache read or after the response: it carries its generation.
        defer_cache_write(key, (generation, version.name, result), CACHE_SECONDS)
    return SimilarList(version.name, result)


def similar_products(
    product_id: int,
    k: int = 8,
    filters: SimilarFilters | None = None,
    *,
    queryset_hook: Callable | None = None,
    use_cache: bool = True,
) -> list[tuple[int, float]]:
    """The ``k`` products that look most like a product (:func:`similar_list` without the version).

    Returns:
        ``[(product_id, similarity), ...]``, most similar first; never the product itself.

    Raises:
        NotEmbedded: no version is served, or the product has no vector under it.
    """
    return similar_list(product_id, k, filters, queryset_hook=queryset_hook, use_cache=use_cache).ranked


def search_by_vector(vector: np.ndarray, k: int = 8, filters: SimilarFilters | None = None, *,
                     queryset_hook: Callable | None = None, exclude: Sequence[int] = (),
                     version: ModelVersion | None = None) -> list[tuple[int, float]]:
    """The ``k`` products nearest to a vector of the served version (e.g. an uploaded photo's).

    ``exclude``: product ids left out. ``version``: the served embedder version when the
    caller already looked it up.
    """
    filters = filters or SimilarFilters()
    version = version or served_version(ModelKind.EMBEDDER)
    if version is None:
        raise NotEmbedded("no embedder is served yet; run visrec_index")
    k = max(1, min(int(k), MAX_K))
    filters = SimilarFilters(**{**asdict(filters), "category": None})
    return [(n.product_id, round(n.score, 6))
            for n in _search(version, k, filters, None, queryset_hook, vector=np.asarray(vector, dtype=np.float32),
                             exclude=exclude)]


def parse_filters(**options) -> SimilarFilters:
    """Filters from loosely typed options (template tag arguments); unknown names raise TypeError."""
    return SimilarFilters(**options)


def fallback_products(product_id: int, k: int, filters: SimilarFilters) -> list[tuple[int, float]]:
    """Products of the same primary category (newest first by pk) for a product without a
    vector; [] without categories."""
    product_id = products.canonical_id(product_id)
    category = products.primary_category(product_id)
    if category is None:
        return []
    queryset = candidate_queryset(SimilarFilters(in_stock=filters.in_stock, category="same"), category, None)
    ids = queryset.exclude(pk=product_id).order_by("-pk").values_list("pk", flat=True)[:k]
    return [(pid, 0.0) for pid in ids]


def similar_or_fallback(product_id: int, k: int = 8, filters: SimilarFilters | None = None) -> list[tuple[int, float]]:
    """:func:`similar_products`, or :func:`fallback_products` when the product has no vector."""
    filters = filters or SimilarFilters()
    try:
        return similar_products(product_id, k, filters)
    except NotEmbedded:
        return fallback_products(product_id, k, filters)
