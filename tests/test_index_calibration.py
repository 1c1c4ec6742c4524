"""The HNSW self-check: exact neighbours in one streaming pass, the ef_search chosen, and its use."""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from visrec.models import ModelKind, ModelVersion, ProductEmbedding
from visrec.services.catalogue.embedders import activate_embedder, ensure_indexes
from visrec.services.db import index_calibration, vector_index
from visrec.services.db.index_calibration import (
    RunningTopK,
    calibrate_ef_search,
    choose_ef_search,
    query_recalls,
    recall_lower_bound,
)
from visrec.services.serving.similar import similar_products

from .factories import CategoryFactory, ProductFactory

DIMS = 24


def unit_rows(rng, n: int, dims: int = DIMS) -> np.ndarray:
    x = rng.normal(size=(n, dims)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: np.ndarray, rows, k: int = 10) -> list[list[int]]:
    """Each row's k nearest other ids by cosine, numpy over everything at once."""
    scores = vectors[rows] @ vectors.T
    scores[np.arange(len(rows)), rows] = -np.inf
    return [[int(ids[j]) for j in np.argsort(-s, kind="stable")[:k]] for s in scores]


def make_catalogue(n: int, name: str = "calib@1", seed: int = 0, *, index: bool = True, dims: int = DIMS):
    """``n`` products with random unit vectors under a new (not served) version; returns
    (version, product ids int64 (n,), vectors float32 (n, dims))."""
    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name=name, dimensions=dims,
                                          metrics={"backbone": "planted", "base_version": name})
    category = CategoryFactory(slug="calib")
    Product = type(ProductFactory.build())
    products = Product.objects.bulk_create(
        Product(name=f"c{i}", slug=f"calib-{name}-{i}", price=1, stock=1, category=category) for i in range(n))
    vectors = unit_rows(np.random.default_rng(seed), n, dims)
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(product=p, model_version=name, vector=v) for p, v in zip(products, vectors))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ProductEmbedding._meta.db_table}")  # else the planner guesses 10 rows: no index
    if index:
        ensure_indexes(version)
    return version, np.array([p.pk for p in products], dtype=np.int64), vectors


def issued_ef_search(product_id: int, k: int = 8) -> str:
    """The hnsw.ef_search the service sends for one uncached "similar" list."""
    seen: list[tuple[str, list]] = []

    def record(execute, sql, params, many, context):
        seen.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        similar_products(product_id, k, use_cache=False)
    (sql, params), = [s for s in seen if "set_config('hnsw.ef_search'" in s[0]]
    return params[0]


# --- pure computation ---------------------------------------------------------------------------

def test_running_top_k_over_chunks_equals_brute_force():
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng, 500)
    ids = rng.permutation(10_000)[:500].astype(np.int64)
    rows = np.array([0, 7, 99, 250, 499])
    top = RunningTopK(vectors[rows] * 3.0, ids[rows], 10)  # any norm: cosine
    for start in range(0, 500, 37):
        top.update(ids[start:start + 37], vectors[start:start + 37] * 0.5)
    found, scores = top.result()
    assert found.tolist() == brute_force(vectors, ids, rows)
    assert np.all(np.diff(scores, axis=1) <= 0) and not np.isin(ids[rows], found).any()


def test_recall_counts_found_products_and_ties():
    exact_ids = np.array([[1, 2, 3], [4, 5, 6]])
    exact_scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], dtype=np.float32)
    found = [[(1, 0.1), (2, 0.2), (9, 0.5)],  # 2 of 3
             [(4, 0.1), (5, 0.2), (9, 0.3)]]  # 9 is exactly as near as the 3rd (same picture): as good
    assert query_recalls(found, exact_ids, exact_scores, k=3) == pytest.approx([2 / 3, 1.0])


def test_the_lower_bound_of_recall_counts_queries_not_results():
    assert recall_lower_bound(np.ones(200)) == 1.0
    steady = np.full(200, 0.985)  # every query finds the same share: the mean is sure
    clustered = np.r_[np.ones(197), np.zeros(3)]  # 3 queries find nothing: same mean, less sure
    assert recall_lower_bound(steady) == pytest.approx(0.985)
    assert recall_lower_bound(clustered) < 0.98 < recall_lower_bound(steady)


def test_the_smallest_ef_reaching_the_target_else_the_best():
    recalls = {40: 0.90, 64: 0.97, 100: 0.985, 150: 0.99}
    assert choose_ef_search(recalls, 0.98) == (100, True)
    assert choose_ef_search(recalls, 0.9) == (40, True)
    assert choose_ef_search(recalls, 0.98, {40: 0.88, 64: 0.96, 100: 0.975, 150: 0.982}) == (150, True)
    assert choose_ef_search({40: 0.9, 64: 0.95, 100: 0.95}, 0.99) == (64, False)
    # Below the target: the smallest ef within one standard error of the best recall (the
    # plateau), not the largest for a difference the sample cannot see.
    plateau = {40: 0.90, 64: 0.950, 100: 0.970, 200: 0.974, 400: 0.975, 1000: 0.976}
    bounds = {ef: r - 1.645 * 0.004 for ef, r in plateau.items()}  # standard error 0.004
    assert choose_ef_search(plateau, 0.98, bounds) == (200, False)
    assert choose_ef_search(plateau, 0.98) == (1000, False)  # no error known: the best itself
    assert index_calibration.ef_candidates(10)[0] == 40 and index_calibration.ef_candidates(30)[0] == 60
    assert max(index_calibration.ef_candidates(600)) == 1000


# --- on PostgreSQL ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_streaming_exact_pass_equals_numpy():
    version, ids, vectors = make_catalogue(300, index=False)
    sample = index_calibration.sample_products(version, 40)
    assert sample == index_calibration.sample_products(version, 40)  # deterministic
    assert len(set(sample)) == 40 and set(sample) <= set(ids.tolist())
    query_ids, found, _ = index_calibration.exact_neighbours(version, sample, chunk=37)
    rows = np.searchsorted(ids, query_ids)
    assert query_ids.tolist() == sorted(sample)
    assert found.tolist() == brute_force(vectors, ids, rows)


@pytest.mark.django_db
def test_calibration_picks_the_smallest_ef_reaching_the_target(settings, caplog):
    # A poor graph (m 4, ef_construction 8) on random vectors: recall@10 grows with ef_search
    # (0.7 at 40, 1.0 from 300 when this was written).
    settings.VISREC = {**settings.VISREC, "HNSW_M": 4, "HNSW_EF_CONSTRUCTION": 8}
    version, _, _ = make_catalogue(2000)
    easy = calibrate_ef_search(version, sample=60, target=0.5)
    assert easy["ef_search"] == 40 and easy["reached"] and list(easy["recall"]) == ["40"]
    assert easy["sample"] == 60 and easy["hnsw_m"] == 4
    strict = calibrate_ef_search(version, sample=60, target=1.0)
    recalls = {int(ef): r for ef, r in strict["recall"].items()}
    assert recalls[40] < 0.9 and strict["reached"]  # the first candidate did not do; a later one did
    assert list(recalls) == index_calibration.ef_candidates()[: len(recalls)]  # in increasing order,
    assert strict["ef_search"] == max(recalls) and recalls[strict["ef_search"]] == 1.0  # up to the first that does
    assert strict["recall_low"][str(strict["ef_search"])] == 1.0
    stored = ModelVersion.objects.get(pk=version.pk).metrics
    assert stored["hnsw"]["ef_search"] == strict["ef_search"] and stored["backbone"] == "planted"
    assert index_calibration.is_calibrated(version)
    # Nobody reaches a target above 1: the best ef is kept, with a warning to rebuild.
    with caplog.at_level("WARNING", logger="visrec.services.db.index_calibration"):
        hopeless = calibrate_ef_search(version, sample=20, target=1.01)
    assert not hopeless["reached"] and "HNSW_EF_CONSTRUCTION" in caplog.text


@pytest.mark.django_db
def test_the_service_uses_the_served_version_calibration_unless_fixed(settings):
    settings.VISREC = {**settings.VISREC, "HNSW_M": 4, "HNSW_EF_CONSTRUCTION": 8}  # see above
    version, ids, _ = make_catalogue(2000)
    activate_embedder(version)  # calibrated at the default target, 0.98
    assert version.metrics["hnsw"]["ef_search"] > 100
    product = int(ids[3])
    assert issued_ef_search(product) == str(version.metrics["hnsw"]["ef_search"])
    calibrate_ef_search(version, sample=50, target=0.0)  # 40 reaches it
    assert issued_ef_search(product) == "40"  # the memo of the served version was forgotten
    assert issued_ef_search(product, k=30) == "60"  # at least 2 k
    settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": 77}
    assert issued_ef_search(product) == "77"
    settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": None}
    ModelVersion.objects.filter(pk=version.pk).update(metrics={})
    version.refresh_from_db()
    version.save()  # as if another process wrote it: the memo is dropped on save here
    assert issued_ef_search(product) == str(vector_index.DEFAULT_EF_SEARCH)


@pytest.mark.django_db
def test_activation_calibrates_once_per_index_build(monkeypatch):
    version, ids, vectors = make_catalogue(120, index=False)
    activate_embedder(version)
    hnsw = ModelVersion.objects.get(pk=version.pk).metrics["hnsw"]
    assert hnsw["reached"] and hnsw["sample"] == 120 and hnsw["index"] == index_calibration.index_identity(version)
    calls = []
    monkeypatch.setattr(index_calibration, "calibrate_ef_search", lambda v, **kw: calls.append(v))
    activate_embedder(version)  # switched on again, same index: not measured again
    assert calls == []
    vector_index.drop_hnsw_index(ProductEmbedding, version.name)
    activate_embedder(version)  # rebuilt: measured again
    assert calls == [version]


@pytest.mark.django_db
def test_a_tiny_version_is_skipped():
    version, _, _ = make_catalogue(index_calibration.MIN_PRODUCTS - 1)
    result = calibrate_ef_search(version)
    assert "skipped" in result and "hnsw" not in ModelVersion.objects.get(pk=version.pk).metrics


@pytest.mark.django_db
def test_command_calibrates_the_served_or_a_named_version():
    served, _, _ = make_catalogue(80)
    activate_embedder(served)
    other, _, _ = make_catalogue(60, name="calib@2", seed=1)
    out = io.StringIO()
    call_command("visrec_calibrate", "--sample", "30", "--target", "0.5", stdout=out, verbosity=0)
    assert "calib@1: ef_search 40" in out.getvalue()
    assert ModelVersion.objects.get(pk=served.pk).metrics["hnsw"]["sample"] == 30
    call_command("visrec_calibrate", "--version", "calib@2", stdout=out, verbosity=0)
    assert ModelVersion.objects.get(pk=other.pk).metrics["hnsw"]["sample"] == 60
    with pytest.raises(CommandError, match="no embedder version"):
        call_command("visrec_calibrate", "--version", "nope@1", verbosity=0)
    with pytest.raises(CommandError, match="--target"):
        call_command("visrec_calibrate", "--target", "2", verbosity=0)


@pytest.mark.django_db
def test_admin_lists_the_calibrated_ef_search(admin_client):
    version, _, _ = make_catalogue(60)
    calibrate_ef_search(version, sample=20, target=0.5)
    page = admin_client.get("/admin/visrec/modelversion/").content.decode()
    assert "HNSW ef_search (recall@10)" in page and "40 (1.000)" in page
