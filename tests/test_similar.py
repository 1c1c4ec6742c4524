"""The "visually similar" service on planted vectors in pgvector (no CNN needed)."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from visrec.models import ImageEmbedding, ModelKind, ModelVersion, ProductEmbedding
from visrec.services.catalogue import extraction
from visrec.services.catalogue.embedders import activate_embedder
from visrec.services.db import compiled_sql, vector_index
from visrec.services.serving import similar
from visrec.services.serving.similar import NotEmbedded, SimilarFilters, similar_products

from .factories import CategoryFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db
DIMS = 16


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def make_version(name: str = "planted@1", dims: int = DIMS) -> ModelVersion:
    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name=name, dimensions=dims,
                                          metrics={"backbone": "planted", "base_version": name})
    activate_embedder(version)
    return version


def plant(products, vectors, version="planted@1") -> None:
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(product=p, model_version=version, vector=unit(v)) for p, v in zip(products, vectors)
    )


@pytest.fixture
def catalogue():
    """20 products along a quarter circle, spaced ever wider (no two distances tie)."""
    make_version()
    shoes, bags = CategoryFactory(slug="shoes"), CategoryFactory(slug="bags")
    products = [ProductFactory(category=shoes if i % 2 == 0 else bags, price=Decimal(10 + i), stock=0 if i == 3 else 5)
                for i in range(20)]
    angles = (np.pi / 2) * (np.arange(20) / 19) ** 1.3
    vectors = [np.r_[np.cos(a), np.sin(a), np.zeros(DIMS - 2)] for a in angles]
    plant(products, vectors)
    return products


def ids(ranked):
    return [pid for pid, _ in ranked]


def test_nearest_first_never_itself_and_in_stock_by_default(catalogue):
    p = catalogue
    result = similar_products(p[2].pk, k=4)
    assert ids(result) == [p[1].pk, p[0].pk, p[4].pk, p[5].pk]  # p[3] is out of stock
    assert all(a >= b for (_, a), (_, b) in zip(result, result[1:]))
    with_oos = similar_products(p[2].pk, k=2, filters=SimilarFilters(in_stock=False))
    assert sorted(ids(with_oos)) == sorted([p[1].pk, p[3].pk])


def test_category_price_and_hook_filters(catalogue):
    p = catalogue
    same = similar_products(p[10].pk, k=3, filters=SimilarFilters(category="same"))
    assert ids(same) == [p[8].pk, p[12].pk, p[6].pk]
    assert all(q.category_id == p[10].category_id for q in type(p[0]).objects.filter(pk__in=ids(same)))
    other = similar_products(p[10].pk, k=2, filters=SimilarFilters(category="other"))
    assert set(ids(other)) == {p[9].pk, p[11].pk}
    band = similar_products(p[10].pk, k=5, filters=SimilarFilters(min_price=Decimal(25), max_price=Decimal(28)))
    assert set(ids(band)) == {p[15].pk, p[16].pk, p[17].pk, p[18].pk}
    hooked = similar.similar_products(p[10].pk, k=3, queryset_hook=lambda qs: qs.filter(pk__in=[p[0].pk, p[19].pk]))
    assert ids(hooked) == [p[0].pk, p[19].pk]


def test_selective_filter_still_returns_k_results():
    """2% of 3,000 products pass the filter; the HNSW scan must not stop at ef_search candidates."""
    make_version()
    rng = np.random.default_rng(0)
    rare, common = CategoryFactory(slug="rare"), CategoryFactory(slug="common")
    Product = type(ProductFactory.build())
    products = Product.objects.bulk_create(
        Product(name=f"p{i}", slug=f"sel-{i}", price=1, stock=1, category=rare if i % 50 == 0 else common)
        for i in range(3000)
    )
    plant(products, rng.normal(size=(3000, DIMS)))
    from visrec.services.catalogue.embedders import ensure_indexes

    ensure_indexes(ModelVersion.objects.get(name="planted@1"))
    result = similar_products(products[1].pk, k=20, filters=SimilarFilters(category="other"),
                              queryset_hook=lambda qs: qs.filter(category=rare))
    assert len(result) == 20
    assert set(Product.objects.filter(pk__in=ids(result)).values_list("category", flat=True)) == {rare.pk}
    # Same order as an exact search over the filtered products.
    query = np.asarray(ProductEmbedding.objects.get(product=products[1]).vector)
    exact = sorted(
        ((pid, float(np.dot(np.asarray(v), query))) for pid, v in
         ProductEmbedding.objects.filter(product__category=rare).values_list("product_id", "vector")),
        key=lambda t: -t[1])[:20]
    assert ids(result) == [pid for pid, _ in exact]


def test_near_duplicates_and_diversity(catalogue):
    p = catalogue
    twin = ProductFactory(category=p[0].category, stock=2)
    query = np.asarray(ProductEmbedding.objects.get(product=p[5]).vector)
    plant([twin], [query + 1e-4])
    plain = similar_products(p[5].pk, k=3)
    assert ids(plain)[0] == twin.pk
    deduped = similar_products(p[5].pk, k=3, filters=SimilarFilters(exclude_near_duplicates=True))
    assert twin.pk not in ids(deduped) and len(deduped) == 3
    diverse = similar_products(p[5].pk, k=3, filters=SimilarFilters(diversity=0.9))
    spread = lambda r: np.ptp([p.index(next(q for q in p if q.pk == pid)) if pid != twin.pk else 5 for pid in ids(r)])
    assert spread(diverse) > spread(plain)


def test_product_without_vector_raises_and_fallback_uses_category(catalogue):
    p = catalogue
    newcomer = ProductFactory(category=p[0].category, stock=4)
    with pytest.raises(NotEmbedded):
        similar_products(newcomer.pk)
    fallback = similar.similar_or_fallback(newcomer.pk, 3)
    assert len(fallback) == 3
    assert all(type(p[0]).objects.get(pk=pid).category_id == p[0].category_id for pid in ids(fallback))


def test_a_product_whose_filter_matches_nothing_gets_an_empty_list_not_an_error(catalogue):
    """With a vector but no candidate passing, the list is empty (the existence check only runs then)."""
    p = catalogue
    assert similar_products(p[2].pk, k=3, queryset_hook=lambda qs: qs.none()) == []
    assert similar_products(p[2].pk, k=3, filters=SimilarFilters(min_price=Decimal(1000))) == []


def test_compiled_candidate_sql_follows_settings_and_hooks(catalogue, settings):
    """The candidate set's SQL is compiled once per filter values, yet a settings change and
    each call's hook still apply."""
    p = catalogue
    in_stock = SimilarFilters()
    assert ids(similar_products(p[2].pk, k=2, filters=in_stock, use_cache=False)) == [p[1].pk, p[0].pk]
    first = similar.candidate_sql(in_stock)
    assert similar.candidate_sql(in_stock) == first and first[1] is not similar.candidate_sql(in_stock)[1]
    type(p[0]).objects.filter(pk=p[1].pk).update(stock=0)
    settings.VISREC = {**settings.VISREC, "IN_STOCK_FILTER": {"stock__gte": 0}}  # everything counts as in stock
    assert ids(similar_products(p[2].pk, k=2, filters=in_stock, use_cache=False)) == [p[1].pk, p[3].pk]
    settings.VISREC = {**settings.VISREC, "IN_STOCK_FILTER": {"stock__gt": 0}}
    assert ids(similar_products(p[2].pk, k=2, filters=in_stock, use_cache=False)) == [p[0].pk, p[4].pk]
    for keep in ([p[5].pk], [p[6].pk]):  # hooks are never compiled once for all
        hooked = similar_products(p[2].pk, k=2, queryset_hook=lambda qs, keep=keep: qs.filter(pk__in=keep))
        assert ids(hooked) == keep


def test_candidate_sql_is_compiled_once_for_its_time(catalogue, settings, monkeypatch):
    compiled = []
    real = similar.candidate_queryset
    monkeypatch.setattr(similar, "candidate_queryset", lambda *a: compiled.append(a) or real(*a))
    first = similar.candidate_sql(SimilarFilters(max_price=Decimal(20)))
    assert similar.candidate_sql(SimilarFilters(max_price=Decimal(20))) == first and len(compiled) == 1
    similar.candidate_sql(SimilarFilters(max_price=Decimal(21)))
    assert len(compiled) == 2  # other filter values: their own SQL
    settings.VISREC = {**settings.VISREC, "CANDIDATE_SQL_SECONDS": 0}  # e.g. a per-request manager
    similar.candidate_sql(SimilarFilters(max_price=Decimal(20)))
    similar.candidate_sql(SimilarFilters(max_price=Decimal(20)))
    assert len(compiled) == 4
    settings.VISREC = {**settings.VISREC, "CANDIDATE_SQL_SECONDS": 60}
    similar.candidate_sql(SimilarFilters(max_price=Decimal(20)))
    monkeypatch.setattr(compiled_sql.time, "monotonic", lambda real=compiled_sql.time.monotonic: real() + 61)
    similar.candidate_sql(SimilarFilters(max_price=Decimal(20)))
    assert len(compiled) == 6  # compiled again once its time is up


def test_an_empty_candidate_set_filters_everything_out(catalogue, settings):
    from visrec.services.foryou import recommend as foryou

    settings.VISREC = {**settings.VISREC, "IN_STOCK_FILTER": {"pk__in": []}}
    assert similar_products(catalogue[2].pk, k=3, use_cache=False) == []
    assert foryou._passing([(catalogue[0].pk, 1.0)], SimilarFilters(), []) == []


def test_search_by_vector_leaves_out_excluded_products(catalogue):
    p = catalogue
    query = np.asarray(ProductEmbedding.objects.get(product=p[0]).vector)
    assert ids(similar.search_by_vector(query, 2)) == [p[0].pk, p[1].pk]
    assert ids(similar.search_by_vector(query, 2, exclude=[p[0].pk, p[2].pk])) == [p[1].pk, p[4].pk]


def test_cache_is_invalidated_when_vectors_or_version_change(catalogue, django_capture_on_commit_callbacks):
    p = catalogue
    first = similar_products(p[0].pk, k=1)
    assert ids(first) == [p[1].pk]
    # New image vector for p[19] right on top of p[0]: extraction's product update bumps the generation.
    image = ProductImageFactory(product=p[19])
    ImageEmbedding.objects.create(image=image, product=p[19], model_version="planted@1", status="done",
                                  vector=np.asarray(ProductEmbedding.objects.get(product=p[0]).vector))
    ProductEmbedding.objects.filter(product=p[19]).delete()
    with django_capture_on_commit_callbacks(execute=True):
        extraction.update_product_vectors([p[19].pk], ["planted@1"])
    assert ids(similar_products(p[0].pk, k=1)) == [p[19].pk]
    # A new served version: results come from it.
    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="planted@2", dimensions=2)
    plant(p, [[1, 0]] + [[np.cos(i), np.sin(i)] for i in range(1, 20)], version="planted@2")
    with django_capture_on_commit_callbacks(execute=True):
        activate_embedder(version)
    expected = max(range(1, 20), key=lambda i: np.cos(i) if i != 3 else -9)
    assert ids(similar_products(p[0].pk, k=1)) == [p[expected].pk]


def test_candidate_subquery_has_no_ordering(catalogue):
    """The host's default ordering (Product.Meta.ordering = name) must not reach the IN (...)
    subquery: sorting every candidate would make PostgreSQL skip the HNSW index."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        similar_products(catalogue[2].pk, k=3, use_cache=False)
    search = next(q["sql"] for q in queries.captured_queries if "<=>" in q["sql"])
    assert search.count("ORDER BY") == 1 and '"name"' not in search


@pytest.mark.django_db(transaction=True)
def test_scan_settings_stay_inside_the_query(catalogue):
    """The settings and the query go in one message: pgvector's scan settings apply to that
    query only, not to the connection's later statements (a persistent connection is reused)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with connection.cursor() as cursor:
        cursor.execute("SET hnsw.ef_search = 7")
    with CaptureQueriesContext(connection) as queries:
        result = similar_products(catalogue[2].pk, k=4, use_cache=False)
    assert ids(result) == [catalogue[1].pk, catalogue[0].pk, catalogue[4].pk, catalogue[5].pk]
    search = [q["sql"] for q in queries.captured_queries if "<=>" in q["sql"]]
    assert len(search) == 1 and "set_config('hnsw.ef_search'" in search[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')")
        assert cursor.fetchone() == ("7", "off")


def test_search_by_vector_matches_the_product_query(catalogue):
    """A product's stored vector as a literal and the product id (vector read inside the query)
    give the same neighbours, the product itself first for the literal."""
    p = catalogue
    query = np.asarray(ProductEmbedding.objects.get(product=p[7]).vector)
    by_vector = similar.search_by_vector(query, k=5)
    assert ids(by_vector)[0] == p[7].pk and by_vector[0][1] == pytest.approx(1.0, abs=1e-5)
    assert similar_products(p[7].pk, k=4, use_cache=False) == by_vector[1:]


def test_settings_and_query_with_server_side_binding(catalogue):
    """A host with ``server_side_binding`` (psycopg's server-binding cursors, which refuse
    several statements in one message) gets the same answer through an explicit transaction."""
    import psycopg
    from django.db import connection
    from django.db.backends.utils import CursorWrapper

    connection.ensure_connection()
    setup = "SELECT set_config('hnsw.ef_search', %s, true), %s"
    sql = "SELECT current_setting('hnsw.ef_search'), %s"
    with CursorWrapper(psycopg.Cursor(connection.connection), connection) as cursor:
        assert vector_index.run_with_settings(cursor, setup, ["33", 7], sql, [5]) == (7, [("33", 5)])
    with connection.cursor() as cursor:
        assert vector_index.run_with_settings(cursor, setup, ["34", 8], sql, [6]) == (8, [("34", 6)])
