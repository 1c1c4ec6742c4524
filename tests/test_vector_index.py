"""Vectors round-trip through pgvector and the per-version HNSW index serves nearest neighbours."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction

from visrec.models import ModelKind, ModelVersion, ProductEmbedding
from visrec.services.db import vector_index

from .factories import ProductFactory

pytestmark = pytest.mark.django_db


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_vector_round_trip():
    product = ProductFactory()
    vector = unit(np.random.default_rng(0).normal(size=1280))
    ProductEmbedding.objects.create(product=product, model_version="t@1", vector=vector)
    stored = np.asarray(ProductEmbedding.objects.get(product=product).vector, dtype=np.float32)
    assert stored.shape == (1280,)
    np.testing.assert_allclose(stored, vector, rtol=1e-6)


def test_hnsw_index_answers_nearest_neighbour_query():
    rng = np.random.default_rng(1)
    products = ProductFactory.create_batch(40)
    vectors = [unit(rng.normal(size=64)) for _ in products]
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(product=p, model_version="t@2", vector=v) for p, v in zip(products, vectors)
    )
    # A second version with other dimensions shares the table without interfering.
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(product=p, model_version="other@1", vector=unit(rng.normal(size=16))) for p in products
    )
    name = vector_index.ensure_hnsw_index(ProductEmbedding, "t@2", 64)
    query = unit(vectors[7] + 0.05 * rng.normal(size=64))
    result = vector_index.nearest_products("t@2", query, k=5, ef_search=100)
    exact = sorted(range(len(vectors)), key=lambda i: -float(vectors[i] @ query))[:5]
    assert [pid for pid, _ in result] == [products[i].pk for i in exact]
    assert result[0][0] == products[7].pk
    assert result[0][1] == pytest.approx(1 - float(vectors[7] @ query), abs=1e-5)

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql = vector_index.nearest_products_sql("t@2", 64, k=5)
        literal = vector_index.vector_literal(query)
        cursor.execute("EXPLAIN " + sql, [literal, literal])
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert f"Index Scan using {name}" in plan


def test_unsafe_version_strings_are_refused():
    with pytest.raises(ValueError, match="must be"):
        vector_index.ensure_hnsw_index(ProductEmbedding, "x'; DROP TABLE y; --", 8)


def test_at_most_one_active_model_version_per_kind():
    ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="a", is_active=True)
    ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name="b", is_active=True)
    ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="c", is_active=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="d", is_active=True)


def test_binary_vectors_and_the_by_product_query_use_the_index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT vector_send('[1.5,-2,0.25]'::vector)")
        data = bytes(cursor.fetchone()[0])
    np.testing.assert_array_equal(vector_index.vector_from_binary(data), np.array([1.5, -2, 0.25], dtype=np.float32))

    rng = np.random.default_rng(3)
    products = ProductFactory.create_batch(30)
    vectors = [unit(rng.normal(size=32)) for _ in products]
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(product=p, model_version="b@1", vector=v) for p, v in zip(products, vectors)
    )
    name = vector_index.ensure_hnsw_index(ProductEmbedding, "b@1", 32)
    sql = vector_index.nearest_products_sql("b@1", 32, "e.product_id <> %s", k=3, by_product=True, with_vectors=True)
    params = vector_index.nearest_products_params(products[4].pk, [products[4].pk], by_product=True)
    missing = vector_index.nearest_products_params(10**9, [10**9], by_product=True)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute(sql, missing)
        assert cursor.fetchall() == []  # no stored vector: no rows (and no index scan)
    assert f"Index Scan using {name}" in plan
    exact = sorted((i for i in range(30) if i != 4), key=lambda i: -float(vectors[i] @ vectors[4]))[:3]
    assert [r[0] for r in rows] == [products[i].pk for i in exact]
    for (pid, distance, data), i in zip(rows, exact):
        np.testing.assert_allclose(vector_index.vector_from_binary(bytes(data)), vectors[i], rtol=1e-6)
        assert distance == pytest.approx(1 - float(vectors[i] @ vectors[4]), abs=1e-5)
