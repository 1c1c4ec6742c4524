"""Catalogue intelligence: category suggestions, near-duplicates, a 2-D map, embedding failures.

What a merchant can learn about the catalogue from the product vectors of the served
embedder version (:class:`~visrec.models.ProductEmbedding`), behind the admin's
"Catalogue intelligence" pages and ``manage.py visrec_suggest_categories``:

* :func:`suggest_categories` - for each product, its ``CATALOGUE_NEIGHBOURS`` nearest other
  products vote for their primary categories, each with its cosine similarity
  (:func:`category_vote`, the vote search by photo uses too); a category is suggested for
  an uncategorised product, and for a categorised one whose neighbours mostly file under
  another category (the "likely mis-categorised" rule, see :func:`suggest_categories`).
* :func:`accept_suggestions` - writes accepted categories into the host's product through
  ``CATEGORY_FIELD`` (a foreign key, a plain field or a many-to-many), skipping products
  whose category changed since the suggestion.
* :func:`near_duplicates` - pairs of products whose vectors are (almost) the same picture.
* :func:`catalogue_map` - 2-D coordinates of the embedded products (PCA of their vectors,
  as the embedding evaluation draws), with their categories.
* :func:`embedding_failures` - how many images failed to embed, and the commonest reasons.
* :func:`evaluate_suggestions` - the precision of accepted suggestions, measured on the
  catalogue itself with a seeded share of its labels withheld.

All of them read one neighbour list per product (:func:`catalogue_neighbours`): one SQL
statement per batch of 256 products, a ``LATERAL`` join over the version's HNSW index (no
round trip per product), cached in Django's cache under the served version and the
embeddings generation, so new vectors or a switched version make it stale at once. At most
``CATALOGUE_MAX_PRODUCTS`` products (lowest ids first) are analysed.
"""
from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from ...conf import get_product_model, visrec_settings
from ...evaluation.embeddings import pca_2d, unit_rows
from ...models import EmbeddingStatus, ImageEmbedding, ModelVersion, ProductEmbedding
from ..db import vector_index
from ..db.cache_guard import cache
from ..serving.generation import embeddings_generation
from . import products
from .categories import category_labels
from .embedders import active_embedder_version

#: Products per neighbour statement (one ``LATERAL`` join each).
BATCH_SIZE = 256
UNCATEGORISED = "uncategorised"
MISCATEGORISED = "miscategorised"


class NothingEmbedded(LookupError):
    """No embedder version is served, or it has no product vectors yet (run ``visrec_index``)."""


# --------------------------------------------------------------------------- the vote


@dataclass(frozen=True)
class CategoryVote:
    """A similarity-weighted vote of neighbours for their categories.

    Attributes:
        category: the winning category key (raw value as ``categories`` gave it), or None.
        confidence: the winner's share of the vote in ``[0, 1]``, or None without a vote.
        shares: every category's share of the vote.
        voters: neighbours that had a category (and a positive similarity).
    """

    category: object | None
    confidence: float | None
    shares: dict = field(default_factory=dict)
    voters: int = 0

    def share_of(self, key) -> float:
        return self.shares.get(key, 0.0)


def category_vote(ranked: Iterable[tuple[object, float]], categories: dict) -> CategoryVote:
    """The category most of the neighbours share, each weighted by its similarity.

    Neighbours without a category, or with a similarity of 0 or less, do not vote. Ties go
    to the category of the nearer neighbour (the first met in ``ranked``).

    Args:
        ranked: ``[(product_id, cosine_similarity), ...]``, nearest first.
        categories: ``{product_id: category_key}`` of the neighbours that have one.
    """
    votes: Counter = Counter()
    voters = 0
    for pid, score in ranked:
        key = categories.get(pid)
        if key is not None and score > 0:
            votes[key] += float(score)
            voters += 1
    total = sum(votes.values())
    if not votes or total <= 0:
        return CategoryVote(None, None)
    category, weight = votes.most_common(1)[0]
    return CategoryVote(category, weight / total, {k: v / total for k, v in votes.items()}, voters)


# --------------------------------------------------------------------------- neighbours


@dataclass
class Neighbourhood:
    """Each analysed product's nearest other products under one embedder version.

    Attributes:
        version: the embedder version's name.
        ids: product ids; ``ids[:queried]`` are the analysed products, the rest neighbours
            found beyond the ``CATALOGUE_MAX_PRODUCTS`` bound.
        queried: how many of ``ids`` were analysed.
        total: embedded products of the version (may exceed ``queried``).
        index: int32 ``(queried, k)``, positions in ``ids`` of each product's neighbours,
            nearest first, ``-1`` past the end of a short list.
        similarity: float32 ``(queried, k)``, the cosine similarities (1 = same vector).
        computed_at: when the lists were read (a timezone-aware datetime).
    """

    version: str
    ids: list
    queried: int
    total: int
    index: np.ndarray
    similarity: np.ndarray
    computed_at: datetime.datetime | None = None

    def ranked(self, row: int) -> list[tuple[object, float]]:
        """``[(product_id, similarity), ...]`` of the product at ``row``, nearest first."""
        return [(self.ids[j], float(s)) for j, s in zip(self.index[row], self.similarity[row]) if j >= 0]


def served_version(name: str | None = None) -> ModelVersion:
    """The served embedder version (or the version called ``name``), with product vectors.

    Raises:
        NothingEmbedded: none is served yet (no such version), or it has no product vectors.
    """
    version = ModelVersion.objects.filter(name=name).first() if name else active_embedder_version()
    if version is None or not version.dimensions:
        raise NothingEmbedded("nothing is embedded yet: run `python manage.py visrec_index`")
    if not ProductEmbedding.objects.filter(model_version=version.name).exists():
        raise NothingEmbedded(f"no product has a vector under {version.name} yet: run `python manage.py visrec_index`")
    return version


def _analysed_ids(version: ModelVersion, limit: int) -> tuple[list, int]:
    """The product ids analysed (embedded, in the host's product queryset, lowest first) and how many are embedded."""
    rows = ProductEmbedding.objects.filter(model_version=version.name,
                                           product_id__in=products.base_queryset().order_by().values("pk"))
    total = rows.count()
    ids = list(rows.order_by("product_id").values_list("product_id", flat=True)[:limit])
    return ids, total


def neighbours_sql(version: ModelVersion, k: int) -> str:
    """One statement giving the ``k`` nearest other products of each product in an id array.

    Parameter: the ids (``%s`` as :func:`~visrec.services.db.vector_index.id_array` text).
    Rows: ``(product_id, neighbour_id, cosine_distance)``. The ``LATERAL`` subquery orders by
    the version's indexed expression with the outer product's vector as its operand, so
    PostgreSQL walks the HNSW index once per product inside one statement.
    """
    name = vector_index.validate_version(version.name)
    cast = vector_index.vector_cast(version.dimensions)
    table = ProductEmbedding._meta.db_table
    return (
        f"SELECT q.product_id, n.product_id, n.distance FROM {table} q CROSS JOIN LATERAL ("
        f"SELECT e.product_id, (e.vector::{cast}) <=> (q.vector::{cast}) AS distance FROM {table} e "
        f"WHERE e.model_version = '{name}' AND e.product_id <> q.product_id "
        f"ORDER BY (e.vector::{cast}) <=> (q.vector::{cast}) LIMIT {int(k)}) n "
        f"WHERE q.model_version = '{name}' AND q.product_id = ANY(%s::{products.pk_array_type()})"
    )


def nearest_of(version: ModelVersion, product_ids: Sequence, k: int) -> dict:
    """``{product_id: [(neighbour_id, similarity), ...]}`` nearest first, one statement.

    The scan settings are the version's (:func:`~visrec.services.db.vector_index.scan_settings`:
    its calibrated ``hnsw.ef_search``, at least ``2 k``; iterative scans on pgvector 0.8+).
    """
    if not product_ids:
        return {}
    setup, setup_params = vector_index.scan_settings(k, version)
    with connection.cursor() as cursor:
        _, rows = vector_index.run_with_settings(cursor, setup, setup_params, neighbours_sql(version, k),
                                                 [vector_index.id_array(product_ids)])
    found: dict = {pid: [] for pid in product_ids}
    for pid, neighbour, distance in rows:
        found[pid].append((neighbour, 1.0 - float(distance)))
    for ranked in found.values():
        ranked.sort(key=lambda pair: -pair[1])  # relaxed order: make it exact
    return found


def catalogue_neighbours(*, k: int | None = None, limit: int | None = None, use_cache: bool = True,
                         refresh: bool = False, progress: Callable[[int], None] | None = None,
                         version: str | None = None) -> Neighbourhood:
    """The ``k`` nearest other products of every analysed product (see the module's note).

    Args:
        k: neighbours per product (default ``CATALOGUE_NEIGHBOURS``).
        limit: products analysed (default ``CATALOGUE_MAX_PRODUCTS``).
        use_cache: read and write Django's cache (keyed by version, k and limit).
        refresh: compute them again (and cache them) even when cached.
        progress: called with the number of products done after each batch (a progress bar).
        version: the name of another embedder version than the served one (evaluation).

    Raises:
        NothingEmbedded: nothing is embedded yet.
    """
    named = ModelVersion.objects.filter(name=version).first() if version else active_embedder_version()
    if named is not None and use_cache and not refresh:
        found = cache.get(_neighbours_key(named.name, k, limit)[0])
        if found is not None:
            if progress:
                progress(found.queried)
            return found
    version = served_version(named.name if named else version)
    key, k, limit = _neighbours_key(version.name, k, limit)
    ids, total = _analysed_ids(version, limit)
    position = {pid: i for i, pid in enumerate(ids)}
    index = np.full((len(ids), k), -1, dtype=np.int32)
    similarity = np.zeros((len(ids), k), dtype=np.float32)
    for start in range(0, len(ids), BATCH_SIZE):
        batch = ids[start:start + BATCH_SIZE]
        for pid, ranked in nearest_of(version, batch, k).items():
            row = position[pid]
            for j, (neighbour, score) in enumerate(ranked[:k]):
                if neighbour not in position:  # beyond the bound: a neighbour, not analysed
                    position[neighbour] = len(ids)
                    ids.append(neighbour)
                index[row, j] = position[neighbour]
                similarity[row, j] = score
        if progress:
            progress(len(batch))
    found = Neighbourhood(version.name, ids, len(index), total, index, similarity, timezone.now())
    if use_cache:
        cache.set(key, found, visrec_settings.CATALOGUE_CACHE_SECONDS)
    return found


def cached_neighbours(*, k: int | None = None, limit: int | None = None) -> Neighbourhood | None:
    """The served version's cached neighbour lists, or None when they are not computed (never computes)."""
    version = active_embedder_version()
    if version is None:
        return None
    return cache.get(_neighbours_key(version.name, k, limit)[0])


def _neighbours_key(version: str, k: int | None, limit: int | None) -> tuple[str, int, int]:
    """The cache key of a version's neighbour lists, and ``k`` and ``limit`` with their defaults."""
    k = max(1, int(k or visrec_settings.CATALOGUE_NEIGHBOURS))
    limit = max(1, int(limit or visrec_settings.CATALOGUE_MAX_PRODUCTS))
    return f"visrec:catalogue:neighbours:{version}:{k}:{limit}", k, limit


# --------------------------------------------------------------------------- suggestions


@dataclass(frozen=True)
class CategorySuggestion:
    """A category suggested for one product.

    Attributes:
        product_id: the host product's primary key.
        current: its primary category key as a string, or None when it has none.
        suggested: the suggested category key (a string, as :mod:`.categories` keys are).
        confidence: the suggested category's share of the neighbours' vote.
        current_support: the current category's share of that vote (0 when uncategorised).
        voters: neighbours that voted.
        kind: ``"uncategorised"`` or ``"miscategorised"``.
        reason: ``"uncategorised"`` or ``"looks like <category name>"``.
    """

    product_id: object
    current: str | None
    suggested: str
    confidence: float
    current_support: float
    voters: int
    kind: str
    reason: str


def _string_keys(categories: dict) -> dict:
    return {pid: str(value) for pid, value in categories.items()}


def vote_for(neighbourhood: Neighbourhood, categories: dict) -> Iterable[tuple[object, CategoryVote]]:
    """Each analysed product's :func:`category_vote` over its neighbours (their keys from ``categories``)."""
    for row in range(neighbourhood.queried):
        yield neighbourhood.ids[row], category_vote(neighbourhood.ranked(row), categories)


def is_miscategorised(current: str, vote: CategoryVote) -> bool:
    """The "likely mis-categorised" rule (settings ``CATALOGUE_MISCATEGORISED_CONFIDENCE``,
    ``CATALOGUE_CURRENT_SUPPORT_MAX``, ``CATALOGUE_MIN_VOTERS``)."""
    return (vote.category is not None and vote.category != current
            and vote.confidence >= visrec_settings.CATALOGUE_MISCATEGORISED_CONFIDENCE
            and vote.share_of(current) <= visrec_settings.CATALOGUE_CURRENT_SUPPORT_MAX
            and vote.voters >= visrec_settings.CATALOGUE_MIN_VOTERS)


def suggest_categories(*, kinds: Sequence[str] = (UNCATEGORISED, MISCATEGORISED), min_confidence: float = 0.0,
                       neighbourhood: Neighbourhood | None = None,
                       progress: Callable[[int], None] | None = None) -> list[CategorySuggestion]:
    """Category suggestions for uncategorised and likely mis-categorised products.

    Every analysed product's neighbours vote (:func:`category_vote`; a product never votes
    for itself). An uncategorised product gets the winner whatever its share (filter with
    ``min_confidence``). A categorised one is suggested another category only when
    :func:`is_miscategorised`: the other category wins at least
    ``CATALOGUE_MISCATEGORISED_CONFIDENCE`` of the vote, the product's own gets at most
    ``CATALOGUE_CURRENT_SUPPORT_MAX``, and at least ``CATALOGUE_MIN_VOTERS`` neighbours voted.

    Args:
        kinds: which suggestions, ``"uncategorised"`` and/or ``"miscategorised"``.
        min_confidence: leave out suggestions with a smaller share of the vote.
        neighbourhood: neighbour lists already read (default :func:`catalogue_neighbours`).

    Returns:
        Suggestions, most confident first (then by product id).

    Raises:
        NothingEmbedded: nothing is embedded yet.
    """
    if not visrec_settings.CATEGORY_FIELD:
        return []
    neighbourhood = neighbourhood or catalogue_neighbours(progress=progress)
    categories = _string_keys(products.primary_categories(neighbourhood.ids))
    found = []
    for pid, vote in vote_for(neighbourhood, categories):
        current = categories.get(pid)
        if vote.category is None or vote.confidence < min_confidence:
            continue
        if current is None and UNCATEGORISED in kinds:
            found.append((pid, None, vote, UNCATEGORISED))
        elif current is not None and MISCATEGORISED in kinds and is_miscategorised(current, vote):
            found.append((pid, current, vote, MISCATEGORISED))
    labels = category_labels({vote.category for _, _, vote, _ in found})
    suggestions = [
        CategorySuggestion(pid, current, vote.category, round(vote.confidence, 4),
                           round(vote.share_of(current), 4) if current else 0.0, vote.voters, kind,
                           UNCATEGORISED if kind == UNCATEGORISED else f"looks like {labels[vote.category]}")
        for pid, current, vote, kind in found
    ]
    suggestions.sort(key=lambda s: (-s.confidence, str(s.product_id)))
    return suggestions


class CategoryNotFound(ValueError):
    """A suggested category key that is not a category of the shop."""


def accept_suggestions(chosen: Iterable[tuple[object, str | None, str]]) -> int:
    """Writes accepted suggestions into the host's products, in one transaction.

    Through ``CATEGORY_FIELD``: a foreign key gets the related primary key, a plain field the
    value, a many-to-many the category as the product's primary one (the first assigned,
    :mod:`.products`): its row is made the product's first and the rows of its other
    categories are written again after it (their own columns kept); the category that was
    primary is removed, since the suggestion says it is wrong. A foreign key or plain field
    is saved with ``save(update_fields=...)``, so the host's signals see the change.

    Args:
        chosen: ``(product_id, category_key_when_suggested, suggested_key)`` per product; the
            keys are strings (:class:`CategorySuggestion`), None for "had no category".

    Returns:
        How many products were changed. A product whose primary category is no longer the
        one it had when the suggestion was made is skipped (someone changed it meanwhile),
        as is one that already has the suggested category, or no longer exists.

    Raises:
        CategoryNotFound: a suggested key is not a category of the shop (nothing is written).
        ValueError: the shop has no ``CATEGORY_FIELD``.
    """
    category = products.category_field()
    if category is None:
        raise ValueError("CATEGORY_FIELD is not set: visrec does not know where categories are stored")
    wanted = {}
    for pid, before, suggested in chosen:
        wanted[_product_pk(pid)] = (None if before in (None, "") else str(before), str(suggested))
    if not wanted:
        return 0
    values = {key: _category_value(category, key) for key in {s for _, s in wanted.values()}}
    Product = get_product_model()
    changed = 0
    with transaction.atomic(using=Product._default_manager.db):
        rows = list(Product._base_manager.select_for_update().filter(pk__in=list(wanted)).order_by("pk"))
        current = _string_keys(products.primary_categories([row.pk for row in rows]))
        for row in rows:
            before, suggested = wanted[row.pk]
            now = current.get(row.pk)
            if now != before or now == suggested:
                continue
            if category.many_to_many:
                _make_primary(category, row, values[suggested], drop=now is not None)
            else:
                setattr(row, category.attname, values[suggested])
                row.save(update_fields=[category.name])
            changed += 1
    return changed


def _product_pk(value):
    return get_product_model()._meta.pk.to_python(value)


def _category_value(category, key: str):
    """The stored value of category ``key`` in ``CATEGORY_FIELD``, checked to exist."""
    if category.is_relation:
        target = category.target_field
        value = target.to_python(key)
        if not category.related_model._base_manager.filter(**{target.attname: value}).exists():
            raise CategoryNotFound(f"no category {key!r}")
        return value
    value = category.to_python(key)
    if str(value) not in {str(v) for v in products.category_values()}:
        raise CategoryNotFound(f"no product is filed under {key!r}: not a category of the shop")
    return value


def _make_primary(category, product, value, *, drop: bool) -> None:
    """Makes ``value`` the first assigned (lowest through-table pk) of the product's categories."""
    through = category.remote_field.through
    source = through._meta.get_field(category.m2m_field_name()).attname
    target = through._meta.get_field(category.m2m_reverse_field_name()).attname
    rows = list(through._base_manager.filter(**{source: product.pk}).order_by("pk"))
    if drop and rows:
        through._base_manager.filter(pk=rows[0].pk).delete()  # the primary that was judged wrong
        rows = rows[1:]
    mine = next((row for row in rows if getattr(row, target) == value), None)
    if mine is None:
        through._base_manager.create(**{source: product.pk, target: value})
        ahead = rows  # every other row was assigned before it
    else:
        ahead = [row for row in rows if row.pk < mine.pk]
    # Written again after it, each with its own columns, in their order.
    through._base_manager.filter(pk__in=[row.pk for row in ahead]).delete()
    for row in ahead:
        row.pk = None
        row._state.adding = True
        row.save(force_insert=True)


# --------------------------------------------------------------------------- near-duplicates


@dataclass(frozen=True)
class DuplicatePair:
    """Two products whose vectors are (almost) the same: ``first`` has the lower id."""

    first: object
    second: object
    similarity: float


def near_duplicates(threshold: float | None = None, *, neighbourhood: Neighbourhood | None = None,
                    progress: Callable[[int], None] | None = None) -> list[DuplicatePair]:
    """Pairs of distinct products with cosine similarity at least ``threshold``, each pair once.

    From each product's ``CATALOGUE_NEIGHBOURS`` nearest (so a product with more
    near-duplicates than that lists its nearest ones only).

    Args:
        threshold: default ``CATALOGUE_DUPLICATE_SIMILARITY``.

    Returns:
        Pairs, most similar first (then by ids).

    Raises:
        NothingEmbedded: nothing is embedded yet.
    """
    threshold = visrec_settings.CATALOGUE_DUPLICATE_SIMILARITY if threshold is None else float(threshold)
    neighbourhood = neighbourhood or catalogue_neighbours(progress=progress)
    pairs: dict = {}
    rows, cols = np.nonzero((neighbourhood.similarity >= threshold) & (neighbourhood.index >= 0))
    for row, col in zip(rows.tolist(), cols.tolist()):
        a, b = neighbourhood.ids[row], neighbourhood.ids[neighbourhood.index[row, col]]
        if a == b:
            continue
        key = (a, b) if a < b else (b, a)
        pairs[key] = max(pairs.get(key, -1.0), float(neighbourhood.similarity[row, col]))
    found = [DuplicatePair(a, b, round(s, 6)) for (a, b), s in pairs.items()]
    found.sort(key=lambda p: (-p.similarity, str(p.first), str(p.second)))
    return found


# --------------------------------------------------------------------------- the map


@dataclass(frozen=True)
class MapPoint:
    """One product on the map: coordinates in ``[0, 1]`` (y grows downwards, as in SVG)."""

    product_id: object
    x: float
    y: float
    category: str | None


@dataclass
class CatalogueMap:
    """The 2-D map of the catalogue: ``points`` of the first ``len(points)`` of ``total`` embedded products."""

    version: str
    points: list[MapPoint]
    total: int
    method: str = "pca"


def catalogue_map(*, max_points: int | None = None, use_cache: bool = True) -> CatalogueMap:
    """2-D coordinates of the embedded products (PCA of the vectors), with their categories.

    At most ``max_points`` (default ``CATALOGUE_MAP_POINTS``) products, spread evenly over
    the ids when there are more. The coordinates are cached under the version and the
    embeddings generation; the categories are read on every call, so an accepted
    suggestion recolours its point at once.

    Raises:
        NothingEmbedded: nothing is embedded yet.
    """
    max_points = max(1, int(max_points or visrec_settings.CATALOGUE_MAP_POINTS))
    version = served_version()
    key = f"visrec:catalogue:map:{version.name}:{embeddings_generation()}:{max_points}"
    found = cache.get(key) if use_cache else None
    if found is None:
        ids, total = _analysed_ids(version, visrec_settings.CATALOGUE_MAX_PRODUCTS)
        if len(ids) > max_points:
            ids = [ids[i] for i in np.linspace(0, len(ids) - 1, max_points).round().astype(int)]
        vectors = _vectors(version, ids)
        coords = pca_2d(unit_rows(vectors)).astype(np.float64)
        span = coords.max(axis=0) - coords.min(axis=0) if len(coords) else np.ones(2)
        coords = (coords - coords.min(axis=0)) / np.where(span > 0, span, 1.0) if len(coords) else coords
        if len(coords):
            coords[:, 1] = 1.0 - coords[:, 1]  # up on the page is up on the plot
        found = (ids, [(round(float(x), 5), round(float(y), 5)) for x, y in coords], total)
        if use_cache:
            cache.set(key, found, visrec_settings.CATALOGUE_CACHE_SECONDS)
    ids, coords, total = found
    categories = _string_keys(products.primary_categories(ids)) if visrec_settings.CATEGORY_FIELD else {}
    points = [MapPoint(pid, x, y, categories.get(pid)) for pid, (x, y) in zip(ids, coords)]
    return CatalogueMap(version.name, points, total)


def _vectors(version: ModelVersion, ids: list) -> np.ndarray:
    """float32 ``(len(ids), dimensions)`` of the products' vectors, in ``ids``' order (one query)."""
    table = ProductEmbedding._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT product_id, vector_send(vector) FROM {table} "
                       f"WHERE model_version = %s AND product_id = ANY(%s::{products.pk_array_type()})",
                       [version.name, vector_index.id_array(ids)])
        rows = dict(cursor.fetchall())
    ordered = [rows[pid] for pid in ids if pid in rows]
    return vector_index.vectors_from_binary(ordered, version.dimensions)


# --------------------------------------------------------------------------- failures


@dataclass
class FailureSummary:
    """Images that failed to embed under a version and the commonest reasons.

    Attributes:
        version: the version counted (the served one, else every version: ``""``).
        failed: failed images.
        reasons: ``[(reason, count, example), ...]``, commonest first; a reason is the
            error's text before its first colon with numbers written as N.
    """

    version: str
    failed: int
    reasons: list[tuple[str, int, str]]


def embedding_failures(*, top: int = 5) -> FailureSummary:
    """The failed images of the served version (of every version before one is served)."""
    version = active_embedder_version()
    rows = ImageEmbedding.objects.filter(status=EmbeddingStatus.FAILED)
    if version is not None:
        rows = rows.filter(model_version=version.name)
    counts: Counter = Counter()
    examples: dict = {}
    grouped = rows.order_by("error").values("error").annotate(n=Count("pk")).values_list("error", "n")
    for error, n in grouped:
        reason = _reason(error)
        counts[reason] += n
        examples.setdefault(reason, error)
    return FailureSummary(version.name if version else "", sum(counts.values()),
                          [(reason, n, examples[reason]) for reason, n in
                           sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]])


def _reason(error: str) -> str:
    head = (error or "no reason recorded").split(":", 1)[0].strip()
    return re.sub(r"\d+", "N", head)[:120]


# --------------------------------------------------------------------------- evaluation

#: Columns of :attr:`SuggestionEvaluation.rows`.
EVALUATION_COLUMNS = ["method", "min confidence", "suggested", "coverage", "precision"]
#: Columns of :attr:`SuggestionEvaluation.miscategorised`.
MISCATEGORISED_COLUMNS = ["planted wrong", "flagged", "precision", "recall", "right category suggested"]


@dataclass
class SuggestionEvaluation:
    """The precision of accepted suggestions on the catalogue with labels withheld.

    Attributes:
        version: the embedder version evaluated.
        labelled: analysed products with a category.
        withheld: of them, how many had their label withheld.
        categories: categories among the labelled products.
        k: neighbours per vote.
        rows: :data:`EVALUATION_COLUMNS` per method and threshold (baselines included).
        miscategorised: :data:`MISCATEGORISED_COLUMNS`, one row: the "likely mis-categorised"
            rule on planted wrong labels (None when ``plant`` is 0).
    """

    version: str
    labelled: int
    withheld: int
    categories: int
    k: int
    rows: list[dict]
    miscategorised: list[dict] | None = None


def precision_rows(predictions: dict, truth: dict, thresholds: Sequence[float], *,
                   method: str = "image kNN vote") -> list[dict]:
    """Precision and coverage of suggestions accepted from each confidence threshold on.

    Args:
        predictions: ``{product_id: (category, confidence)}``; a product without a vote is
            absent (or ``None``).
        truth: ``{product_id: category}`` of every evaluated product (the withheld labels).
        thresholds: minimum confidences; a suggestion is accepted at ``t`` when its
            confidence is at least ``t``.

    Returns:
        One row per threshold: ``suggested`` (accepted suggestions), ``coverage`` (their
        share of ``truth``), ``precision`` (share of them that is the true category; None
        when nothing is suggested).
    """
    rows = []
    for t in thresholds:
        accepted = [(pid, p[0]) for pid, p in predictions.items() if p is not None and pid in truth and p[1] >= t]
        hits = sum(truth[pid] == category for pid, category in accepted)
        rows.append({"method": method, "min confidence": t, "suggested": len(accepted),
                     "coverage": len(accepted) / len(truth) if truth else None,
                     "precision": hits / len(accepted) if accepted else None})
    return rows


def baseline_rows(train: dict, truth: dict) -> list[dict]:
    """The baselines of :func:`precision_rows`: always the commonest category of ``train``; a
    random category drawn in ``train``'s proportions (its expected precision)."""
    counts = Counter(train.values())
    if not counts or not truth:
        return []
    majority = counts.most_common(1)[0][0]
    share = {c: n / len(train) for c, n in counts.items()}
    expected = sum(share.get(c, 0.0) for c in truth.values()) / len(truth)
    return [
        {"method": "baseline: majority category", "min confidence": None, "suggested": len(truth),
         "coverage": 1.0, "precision": sum(c == majority for c in truth.values()) / len(truth)},
        {"method": "baseline: random in proportion (expected)", "min confidence": None, "suggested": len(truth),
         "coverage": 1.0, "precision": expected},
    ]


def evaluate_suggestions(*, fraction: float = 0.2, seed: int = 0, thresholds: Sequence[float] = (0.0, 0.5, 0.7, 0.9),
                         plant: float = 0.05, neighbourhood: Neighbourhood | None = None,
                         progress: Callable[[int], None] | None = None,
                         version: str | None = None) -> SuggestionEvaluation:
    """Measures the suggestions on the catalogue's own labels.

    A seeded ``fraction`` of the labelled products have their labels withheld: each is then
    suggested a category as if uncategorised, from its neighbours' votes where no withheld
    label votes (its own never does), and the suggestions are scored against the withheld
    labels (:func:`precision_rows`) beside :func:`baseline_rows`. Then, on the other
    labelled products, a seeded ``plant`` share get a wrong label (another category, drawn
    uniformly) and the "likely mis-categorised" rule is run over all of them with those
    labels: how many flags are planted ones (precision), how many planted ones are flagged
    (recall), and how often the flag suggests the true category.

    ``version``: evaluate another embedder version than the served one. A version
    fine-tuned on the shop's categories has seen the withheld labels in training, so its
    numbers flatter it; the pretrained backbone's are the honest ones.

    Raises:
        NothingEmbedded: nothing is embedded yet.
        ValueError: no ``CATEGORY_FIELD``, fewer than two categories, or ``fraction`` not in (0, 1).
    """
    if not visrec_settings.CATEGORY_FIELD:
        raise ValueError("CATEGORY_FIELD is not set: there are no labels to withhold")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    neighbourhood = neighbourhood or catalogue_neighbours(progress=progress, version=version)
    analysed = neighbourhood.ids[:neighbourhood.queried]
    categories = _string_keys(products.primary_categories(neighbourhood.ids))
    labelled = [pid for pid in analysed if pid in categories]
    kinds = sorted({categories[pid] for pid in labelled})
    if len(kinds) < 2:
        raise ValueError(f"{len(kinds)} categories among the embedded products: need at least two to measure")
    rng = np.random.default_rng(seed)
    count = max(1, round(fraction * len(labelled)))
    withheld = {labelled[i] for i in rng.choice(len(labelled), size=count, replace=False)}
    visible = {pid: c for pid, c in categories.items() if pid not in withheld}
    truth = {pid: categories[pid] for pid in withheld}
    predictions = {}
    for pid, vote in vote_for(neighbourhood, visible):
        if pid in withheld and vote.category is not None:
            predictions[pid] = (vote.category, vote.confidence)
    rows = precision_rows(predictions, truth, thresholds) + baseline_rows(
        {pid: c for pid, c in visible.items() if pid in set(analysed)}, truth)
    planted_rows = None
    if plant > 0:
        others = [pid for pid in labelled if pid not in withheld]
        planted = {others[i] for i in rng.choice(len(others), size=max(1, round(plant * len(others))), replace=False)}
        corrupted = dict(visible)
        for pid in sorted(planted, key=str):
            wrong = [c for c in kinds if c != visible[pid]]
            corrupted[pid] = wrong[int(rng.integers(len(wrong)))]
        flagged = {pid: vote.category for pid, vote in vote_for(neighbourhood, corrupted)
                   if pid in corrupted and pid not in withheld and is_miscategorised(corrupted[pid], vote)}
        caught = [pid for pid in flagged if pid in planted]
        planted_rows = [{"planted wrong": len(planted), "flagged": len(flagged),
                         "precision": len(caught) / len(flagged) if flagged else None,
                         "recall": len(caught) / len(planted),
                         "right category suggested": (sum(flagged[pid] == visible[pid] for pid in caught) / len(caught)
                                                      if caught else None)}]
    k = int(neighbourhood.index.shape[1]) if neighbourhood.index.ndim == 2 else 0
    return SuggestionEvaluation(neighbourhood.version, len(labelled), len(withheld), len(kinds), k, rows, planted_rows)
