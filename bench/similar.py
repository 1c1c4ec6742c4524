""""Visually similar" at catalogue scale: recall, latency and HTTP throughput of the service.

    .venv/bin/python bench/similar.py [--sizes 100000,1000000] [--dims 128] [--queries 500]
                                      [--recall-queries 200] [--http-duration 15] [--keep] [--reuse]

In one run, per catalogue size, each in its own throw-away database
``visrec_bench_similar_<size>_<vectors>`` on the embedded PostgreSQL:

1. products (20 categories, ~70% in stock, random prices) are inserted with
   ``INSERT ... SELECT generate_series`` and their vectors with binary ``COPY``: by default
   "catalogue" vectors, a Gaussian mixture shaped like a shop's image embeddings (see
   :func:`unit_vectors`); a ``ModelVersion`` is switched on with visrec's own
   ``activate_embedder``, which builds the HNSW index (timed; ``maintenance_work_mem`` 2GB and
   2 parallel maintenance workers in that session) and then calibrates it (visrec's self-check:
   the smallest ``hnsw.ef_search`` reaching recall@10 0.98 on a sample, timed apart; the
   service then uses it);
2. recall@10 of ``similar_products`` against brute-force numpy on the same vectors and filter,
   and of the service's SQL replayed per ``hnsw.ef_search`` (``--ef-sweep``);
3. p50/p99 latency (and CPU time) of ``similar_products`` as the endpoint calls it beside the
   raw SQL it sends, captured from the service itself (:class:`RawQuery`), queries rotating
   which runs first;
4. at the smallest size, the REST endpoint served by granian, then by gunicorn (``--servers``
   picks one or both) on loopback under ``wrk``
   (16 connections), with ids read from a file so that every request misses the Redis result
   cache, with and without the in-stock filter; then a cache-hot run; then the same traffic
   offered at the target's 300 requests/s (each wrk thread on a fixed schedule, so latency
   is measured at that load rather than at saturation; a schedule the server cannot keep
   shows as fewer requests/s); then runs with a database connection per request. CPU time
   per request of the server, PostgreSQL, Redis and wrk is read from /proc, to tell what 2
   free cores would allow when other work shares the machine.

Then, unless ``--hard-size 0``, recall on uniformly random vectors (the hard case, no latency).
Slow plans stop a measurement early after ``--budget-s`` seconds (never below ``MIN_QUERIES``
queries); the counts are reported. ``--keep`` keeps the databases; a later ``--reuse`` run
skips loading and indexing an identical catalogue (same size, vectors, seed, HNSW
parameters) and reports the build figures stored with it (and calibrates a reused index that
was not, printing how long it took). ``--ef-search``, ``--hnsw-m`` and
``--hnsw-ef-construction`` override visrec's values inside this benchmark's processes only.
Prints markdown tables with each target beside its measurement.

Needs ``wrk`` (``apt-get install wrk``) and the servers of ``--servers`` (``gunicorn``,
``granian``, both in requirements.txt) for step 4; without them it says so and skips that
step. Every server it starts is stopped before it exits.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_RECALL = 0.98
TARGET_RATIO = 1.5
TARGET_HTTP_P50_MS = 15.0
TARGET_HTTP_RPS = 300.0
K = 10
CATEGORIES = 20
IN_STOCK_SHARE = 0.7
COPY_CHUNK = 50_000
PRODUCT_CHUNK = 100_000
MIN_QUERIES = 3  # a time budget never cuts a measurement below this many queries
PG_EPOCH = 946_684_800  # 2000-01-01 UTC, PostgreSQL's timestamp origin
LOOKS = 300  # "catalogue" vectors: clusters, their offset from the category direction,
LOOK_OFFSET = 0.9  # the dimensions and spread of a product's variation within its look, and noise
LOOK_DIMS = 16
LOOK_SPREAD = 0.8
LOOK_NOISE = 0.3
BENCH_CACHE_DB = 9  # Redis database of the result cache during the run (not the demo's or the tests')


# --- setup ----------------------------------------------------------------------------------

def admin_conninfo() -> dict:
    from shop_demo import devservices

    params = devservices.ensure_postgres()
    return dict(host=params["HOST"], port=params["PORT"], user=params["USER"], dbname="postgres")


def setup_django() -> None:
    """Test settings with DEBUG off (no query log), the result cache on the bench's Redis database."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings_test"
    os.environ["DJANGO_DEBUG"] = "0"
    import django

    from shop_demo import devservices

    if not os.environ.get("CACHE_URL"):
        os.environ["CACHE_URL"] = f"{devservices.ensure_redis()}/{BENCH_CACHE_DB}"
    django.setup()


def use_database(db_name: str) -> None:
    """Creates (if missing) and migrates a throw-away database and points Django (and the
    gunicorn this process starts) at it. With ``DATABASE_URL`` set, its database is used as is."""
    import psycopg
    from django.core.management import call_command
    from django.db import connection

    if not os.environ.get("DATABASE_URL"):
        with psycopg.connect(**admin_conninfo(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone():
                conn.execute(f"CREATE DATABASE {db_name}")
        connection.close()
        connection.settings_dict["NAME"] = db_name
        os.environ["VISREC_TEST_DATABASE_NAME"] = db_name
    call_command("migrate", verbosity=0)


def drop_database(db_name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    if os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is set: its database is not dropped")
        return
    with psycopg.connect(**admin_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    print(f"dropped database {db_name}")


def version_name(dims: int) -> str:
    return f"bench@{dims}"


def reset_catalogue(dims: int) -> None:
    """Empties the catalogue and visrec's tables, and drops the bench version's HNSW indexes."""
    from django.db import connection

    from shop_demo.catalog.models import Category, Product, ProductImage
    from visrec.models import ImageEmbedding, InteractionEvent, ModelVersion, ProductEmbedding
    from visrec.services.db import vector_index

    for model in (ProductEmbedding, ImageEmbedding):
        vector_index.drop_hnsw_index(model, version_name(dims))
    ModelVersion.objects.all().delete()
    tables = [m._meta.db_table for m in (ProductEmbedding, ImageEmbedding, InteractionEvent, ProductImage,
                                         Product, Category)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def insert_products(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` products in SQL; returns their ids (int64, shape ``(n,)``) and in-stock flags (bool)."""
    from django.db import connection
    from tqdm import tqdm

    from shop_demo.catalog.models import Category, Product

    categories = Category.objects.bulk_create(
        Category(name=f"Bench category {i}", slug=f"bench-category-{i}") for i in range(CATEGORIES)
    )
    category_ids = [c.pk for c in categories]
    table = Product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [((seed % 1000) / 1000.0)])
        for start in tqdm(range(0, n, PRODUCT_CHUNK), desc=f"products {n:,}", unit="chunk"):
            stop = min(start + PRODUCT_CHUNK, n)
            cursor.execute(
                f"INSERT INTO {table} (name, slug, price, stock, category_id, description, created_at) "
                f"SELECT 'Bench product ' || i, 'bench-' || i, round((1 + random() * 299)::numeric, 2), "
                f"CASE WHEN random() < %s THEN 1 + (random() * 49)::int ELSE 0 END, "
                f"(%s::bigint[])[1 + i %% {CATEGORIES}], '', now() "
                f"FROM generate_series(%s, %s) AS i",
                [IN_STOCK_SHARE, category_ids, start + 1, stop],
            )
        cursor.execute(f"SELECT id, stock > 0 FROM {table} ORDER BY id")
        rows = cursor.fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    in_stock = np.fromiter((r[1] for r in rows), dtype=bool, count=len(rows))
    return ids, in_stock


def unit_vectors(n: int, dims: int, seed: int, kind: str = "catalogue") -> np.ndarray:
    """float32, shape ``(n, dims)``, each row of norm 1, deterministic in ``seed``.

    ``kind``:

    * ``"catalogue"``, a stand-in for a shop's image embeddings: a Gaussian mixture of
      ``LOOKS`` clusters ("looks": a kind of product in a colour and style), of unequal sizes,
      whose centres lie around ``CATEGORIES`` category directions; each point varies from its
      centre along a ``LOOK_DIMS``-dimensional subspace of its own (shape, pose, shade) plus
      isotropic noise. At 100,000 points the mean cosine similarity to the nearest product
      is about 0.84, to the 10th nearest 0.77, within a look 0.55, within a category 0.34 and
      between random products 0.02: clusters that overlap, like fine-tuned embeddings;
    * ``"uniform"``: uniform on the sphere, every point almost equally far from all others,
      the hardest case for HNSW (no real catalogue looks like this).
    """
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        vectors = rng.standard_normal((n, dims), dtype=np.float32)
    elif kind == "catalogue":
        def directions(count: int) -> np.ndarray:
            d = rng.standard_normal((count, dims), dtype=np.float32)
            return d / np.linalg.norm(d, axis=1, keepdims=True)

        category_of_look = rng.integers(0, CATEGORIES, LOOKS)
        centres = directions(CATEGORIES)[category_of_look] + LOOK_OFFSET * directions(LOOKS)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        look = rng.choice(LOOKS, n, p=rng.dirichlet(np.full(LOOKS, 2.0)))
        vectors = centres[look] + rng.standard_normal((n, dims), dtype=np.float32) * (LOOK_NOISE / np.sqrt(dims))
        for j in range(LOOKS):  # per look, so that no (n, LOOK_DIMS, dims) array is ever built
            members = np.flatnonzero(look == j)
            basis = rng.standard_normal((LOOK_DIMS, dims), dtype=np.float32) / np.sqrt(dims)
            spread = rng.standard_normal((len(members), LOOK_DIMS), dtype=np.float32) * (LOOK_SPREAD / np.sqrt(LOOK_DIMS))
            vectors[members] += spread @ basis
    else:
        raise ValueError(f"unknown vector kind {kind!r}")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def copy_embeddings(ids: np.ndarray, vectors: np.ndarray, version: str) -> None:
    """ProductEmbedding rows by binary COPY, ``COPY_CHUNK`` rows per statement.

    Each row is one record of a numpy structured array laid out as PostgreSQL's binary COPY
    tuple: field count, then (length, value) per column; a pgvector value is int16 dimensions,
    int16 unused, then big-endian float4s.
    """
    from django.db import connection
    from tqdm import tqdm

    from visrec.models import ProductEmbedding

    dims = vectors.shape[1]
    name = version.encode()
    row = np.dtype([
        ("fields", ">i2"),
        ("id_len", ">i4"), ("id", ">i8"),
        ("version_len", ">i4"), ("version", f"S{len(name)}"),
        ("vector_len", ">i4"), ("dims", ">i2"), ("unused", ">i2"), ("vector", ">f4", (dims,)),
        ("count_len", ">i4"), ("count", ">i4"),
        ("updated_len", ">i4"), ("updated", ">i8"),
    ])
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    trailer = (-1).to_bytes(2, "big", signed=True)
    now_us = int((time.time() - PG_EPOCH) * 1_000_000)
    sql = (f"COPY {ProductEmbedding._meta.db_table} (product_id, model_version, vector, image_count, updated_at) "
           f"FROM STDIN (FORMAT BINARY)")
    connection.ensure_connection()
    raw = connection.connection
    for start in tqdm(range(0, len(ids), COPY_CHUNK), desc=f"vectors {len(ids):,}", unit="chunk"):
        stop = min(start + COPY_CHUNK, len(ids))
        block = np.zeros(stop - start, dtype=row)
        block["fields"] = 5
        block["id_len"], block["id"] = 8, ids[start:stop]
        block["version_len"], block["version"] = len(name), name
        block["vector_len"], block["dims"], block["vector"] = 4 + 4 * dims, dims, vectors[start:stop]
        block["count_len"], block["count"] = 4, 1
        block["updated_len"], block["updated"] = 8, now_us
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(header + block.tobytes() + trailer)


def build_and_activate(dims: int, args, meta: dict) -> tuple[float, float]:
    """Switches the bench version on through visrec; returns (HNSW build seconds, index MB).

    ``activate_embedder`` builds the index, then calibrates it (the self-check of
    ``visrec.services.db.index_calibration``, whose own time is in ``metrics["hnsw"]["seconds"]``
    and is not counted in the build). ``meta`` (what was loaded) is stored with the build's
    figures in the version's metrics, so that ``--reuse`` can recognise the data and report
    the build it did not redo.
    """
    from django.db import connection

    from visrec.models import ModelKind, ModelVersion, ProductEmbedding
    from visrec.services.catalogue.embedders import activate_embedder
    from visrec.services.db import vector_index

    name = version_name(dims)
    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name=name, dimensions=dims,
                                          metrics={"backbone": "bench", "base_version": name})
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = %s", [args.maintenance_work_mem])
        cursor.execute("SET max_parallel_maintenance_workers = %s", [args.parallel_workers])
    load = load_average()
    start = time.perf_counter()
    activate_embedder(version, note="benchmark")
    calibration_s = float((version.metrics.get("hnsw") or {}).get("seconds", 0.0))
    seconds = time.perf_counter() - start - calibration_s
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("RESET max_parallel_maintenance_workers")
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [vector_index.index_name(ProductEmbedding, name)])
        size_mb = cursor.fetchone()[0] / 2**20
    version.metrics = {**version.metrics, "bench": {**meta, "build_s": seconds, "index_mb": size_mb,
                                                    "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                    "build_load": f"{load} at start, {load_average()} at end"}}
    version.save(update_fields=["metrics"])
    return seconds, size_mb


def load_meta(n: int, kind: str, args) -> dict:
    """What identifies a loaded bench catalogue (``--reuse`` needs all of it to match)."""
    from visrec.conf import visrec_settings

    return {"size": n, "vectors": kind, "dims": args.dims, "seed": args.seed, "hnsw_m": visrec_settings.HNSW_M,
            "hnsw_ef_construction": visrec_settings.HNSW_EF_CONSTRUCTION,
            "generator": [LOOKS, LOOK_OFFSET, LOOK_DIMS, LOOK_SPREAD, LOOK_NOISE, CATEGORIES, IN_STOCK_SHARE]}


def reusable_build(meta: dict) -> dict | None:
    """The stored build of an identical catalogue in the current database, if any."""
    from visrec.models import ModelVersion
    from visrec.services.catalogue.embedders import active_embedder_version

    version = active_embedder_version()
    stored = (version.metrics or {}).get("bench") if version else None
    if not stored or any(stored.get(key) != value for key, value in meta.items()):
        return None
    from shop_demo.catalog.models import Product

    if Product.objects.count() != meta["size"] or ModelVersion.objects.count() != 1:
        return None
    return stored


def prepare(n: int, kind: str, args) -> dict:
    """The catalogue of ``n`` products with ``kind`` vectors in its own database, indexed and served.

    Returns ids, in-stock flags, vectors, build seconds, index MB and whether an earlier
    build was reused (``--reuse``: same size, vectors, seed and HNSW parameters).
    """
    from django.db import connection

    use_database(f"{args.db}_{n}_{kind}")
    meta = load_meta(n, kind, args)
    vectors = unit_vectors(n, args.dims, args.seed, kind)
    stored = reusable_build(meta) if args.reuse else None
    if stored:
        from shop_demo.catalog.models import Product

        rows = list(Product.objects.order_by("pk").values_list("pk", "stock"))
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        in_stock = np.array([r[1] > 0 for r in rows], dtype=bool)
        print(f"[{n:,} {kind}] reusing the catalogue and HNSW index built {stored['built']} "
              f"({stored['build_s']:.1f}s, {stored['build_load']})", flush=True)
        ensure_calibrated(f"[{n:,} {kind}]")
        return dict(ids=ids, in_stock=in_stock, vectors=vectors, build_s=stored["build_s"],
                    index_mb=stored["index_mb"], reused=stored["built"], build_load=stored["build_load"])
    t0 = time.perf_counter()
    reset_catalogue(args.dims)
    ids, in_stock = insert_products(n, args.seed)
    copy_embeddings(ids, vectors, version_name(args.dims))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE catalog_product")
        cursor.execute("VACUUM ANALYZE visrec_productembedding")
    print(f"[{n:,} {kind}] loaded in {time.perf_counter() - t0:.1f}s ({in_stock.mean():.1%} in stock), "
          f"{load_average()}", flush=True)
    build_s, index_mb = build_and_activate(args.dims, args, meta)
    print(f"[{n:,} {kind}] HNSW built by activate_embedder in {build_s:.1f}s, index {index_mb:.0f} MB, "
          f"{load_average()}; {calibration_note()}", flush=True)
    return dict(ids=ids, in_stock=in_stock, vectors=vectors, build_s=build_s, index_mb=index_mb, reused=None,
                build_load=None)


def calibration() -> dict | None:
    """The served version's HNSW calibration (``metrics["hnsw"]``), or None."""
    from visrec.services.catalogue.embedders import active_embedder_version

    version = active_embedder_version()
    hnsw = ((version.metrics or {}).get("hnsw") if version else None) or {}
    return hnsw if hnsw.get("ef_search") else None


def calibration_note() -> str:
    hnsw = calibration()
    if hnsw is None:
        return "not calibrated"
    ef = str(hnsw["ef_search"])
    return (f"calibrated: ef_search {ef}, recall@10 {hnsw['recall'][ef]:.3f} (95% lower bound "
            f"{hnsw.get('recall_low', hnsw['recall'])[ef]:.3f}) on {hnsw['sample']} products "
            f"(target {hnsw['target']}{'' if hnsw['reached'] else ', NOT reached'}) in {hnsw['seconds']:.1f}s")


def ensure_calibrated(label: str) -> None:
    """Calibrates the served (reused) version if its index was not calibrated as it is now."""
    from visrec.services.catalogue.embedders import active_embedder_version
    from visrec.services.db import index_calibration

    version = active_embedder_version()
    if index_calibration.is_calibrated(version):
        print(f"{label} {calibration_note()}", flush=True)
        return
    print(f"{label} calibrating the reused HNSW index: {load_average()}", flush=True)
    index_calibration.calibrate_ef_search(version)
    print(f"{label} {calibration_note()}, {load_average()}", flush=True)


# --- queries ----------------------------------------------------------------------------------

class RawQuery:
    """The SQL ``similar_products`` sends for one product and filter: captured, and replayable.

    :meth:`capture` records every statement (SQL and parameters, as given to the cursor) of
    one uncached service call; the raw reference is the part from the scan settings onward
    (``set_config``... and the nearest-neighbour query), replayed in a transaction like the
    service's, through Django's cursor. With ``PREPARED_QUERIES`` (the default) that query
    is the ``EXECUTE`` of the statement the service prepared on this connection, as the
    service sends it from its second call on. What the service does besides (its version
    lookup, building the queryset, the result cache, Python) is its overhead.
    """

    MARK = "set_config('hnsw.ef_search'"

    def __init__(self, statements: list[tuple[str, list]]):
        self.statements = statements

    @classmethod
    def capture(cls, product_id: int, in_stock: bool) -> RawQuery:
        from django.db import connection

        from visrec.services.serving.similar import SimilarFilters, similar_products

        seen: list[tuple[str, list]] = []

        def record(execute, sql, params, many, context):
            seen.append((sql, list(params or [])))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            similar_products(product_id, K, SimilarFilters(in_stock=in_stock), use_cache=False)
        start = next(i for i, (sql, _) in enumerate(seen) if cls.MARK in sql)
        # A prepared query's first message also prepares it (visrec.services.db.prepared_statements);
        # the service's later ones, and so the reference, only EXECUTE it.
        return cls([("; ".join(part for part in sql.split("; ") if not part.startswith(("PREPARE ", "DEALLOCATE "))),
                     params) for sql, params in seen[start:]])

    def _statements(self, ef_search: int | None) -> list[tuple[str, list]]:
        if ef_search is None:
            return self.statements
        return [(sql, [str(ef_search), *params[1:]] if self.MARK in sql else params)
                for sql, params in self.statements]

    def run(self, ef_search: int | None = None) -> list:
        """Rows of the nearest-neighbour query (``ef_search``: instead of the service's), sent as
        the service sent them: one message of several statements, or a transaction."""
        from django.db import connection, transaction

        statements = self._statements(ef_search)
        with (transaction.atomic() if len(statements) > 1 else nullcontext()), connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                while cursor.nextset():
                    pass
            return cursor.fetchall()

    def explain(self) -> str:
        """EXPLAIN ANALYZE of the nearest-neighbour query, after the settings statement."""
        from django.db import connection, transaction

        *settings, (sql, params) = self.statements
        if not settings:  # one message "SELECT set_config(...), ...; SELECT ..." (no literal ';' in either)
            setup, sql = sql.split("; ", 1)
            count = setup.count("%s")
            settings, params = [(setup, params[:count])], params[count:]
        with transaction.atomic(), connection.cursor() as cursor:
            for s, p in settings:
                cursor.execute(s, p)
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            return "\n".join(r[0] for r in cursor.fetchall())

    def sql(self) -> str:
        return ";\n".join(sql for sql, _ in self.statements)


def service_ef_search(k: int) -> int:
    """The ``hnsw.ef_search`` that ``similar._nearest`` sets first for ``k`` results on the served
    version (its calibrated value unless ``--ef-search`` fixes one)."""
    from visrec.services.catalogue.embedders import active_embedder_version
    from visrec.services.db import vector_index

    return int(vector_index.scan_settings(k, active_embedder_version())[1][0])


def exact_neighbours(vectors: np.ndarray, ids: np.ndarray, allowed: np.ndarray | None, row: int,
                     k: int) -> tuple[set[int], float]:
    """Brute-force cosine top-k of one product's vector among ``allowed`` rows, itself excluded:
    their ids and their mean similarity."""
    scores = vectors @ vectors[row]
    scores[row] = -np.inf
    if allowed is not None:
        scores[~allowed] = -np.inf
    top = np.argpartition(-scores, k)[:k]
    return {int(i) for i in ids[top]}, float(scores[top].mean())


def measure_recall(vectors, ids, in_stock, rows, in_stock_filter: bool, budget_s: float,
                   ef_values: list[int] = ()) -> dict:
    """recall@10 of the service over ``rows`` (fewer once ``budget_s`` is spent), and of its
    captured SQL replayed per ``hnsw.ef_search`` in ``ef_values`` (with its p50 latency)."""
    from visrec.services.serving.similar import SimilarFilters, similar_products

    allowed = in_stock if in_stock_filter else None
    filters = SimilarFilters(in_stock=in_stock_filter)
    truth: list[set[int]] = []
    hits, short = 0, 0
    exact_similarity, found_similarity = [], []
    start = time.perf_counter()
    for r in rows:
        if len(truth) >= MIN_QUERIES and time.perf_counter() - start > budget_s:
            break
        exact, similarity = exact_neighbours(vectors, ids, allowed, r, K)
        found = similar_products(int(ids[r]), K, filters, use_cache=False)
        got = [pid for pid, _ in found]
        truth.append(exact)
        short += len(got) < K
        hits += len(exact.intersection(got))
        exact_similarity.append(similarity)
        found_similarity.append(float(np.mean([score for _, score in found])) if found else 0.0)
    used = rows[: len(truth)]
    result = {"recall": hits / (K * len(used)), "queries": len(used), "short_results": short, "sweep": [],
              "exact_similarity": float(np.mean(exact_similarity)),
              "found_similarity": float(np.mean(found_similarity))}
    if ef_values:
        raws = [RawQuery.capture(int(ids[r]), in_stock_filter) for r in used]
    for ef in ef_values:
        hits, times = 0, []
        for raw, exact in zip(raws, truth):
            t0 = time.perf_counter()
            got = raw.run(ef)
            times.append(time.perf_counter() - t0)
            hits += len(exact.intersection(row[0] for row in got))
        result["sweep"].append({"ef_search": ef, "recall": hits / (K * len(used)),
                                "p50_ms": float(np.percentile(times, 50) * 1000)})
        print(f"  ef_search {ef}: recall {result['sweep'][-1]['recall']:.3f}, p50 "
              f"{result['sweep'][-1]['p50_ms']:.2f} ms", flush=True)
    return result


def measure_latency(ids, rows, warmup_rows, in_stock_filter: bool, budget_s: float) -> dict:
    """p50/p99 ms of the service and of the SQL it sends, per query product.

    Three timings per product, in an order that rotates: the service as the endpoint calls
    it (result cache on, but a miss: every product is asked once, the bench's Redis database
    cleared first), the service with ``use_cache=False``, and the raw SQL captured from an
    untimed service call for that product just before. Also their mean CPU time (this process
    and its PostgreSQL backend, from /proc; Redis not counted), which other work on the
    machine does not inflate as it does wall time. Warm-up gets a quarter of
    ``budget_s``; the timed queries stop early (after ``MIN_QUERIES``) once it is spent.
    """
    from django.core.cache import cache
    from django.db import connection

    from visrec.services.serving.similar import SimilarFilters, similar_products

    filters = SimilarFilters(in_stock=in_stock_filter)
    cache.clear()
    raw: dict[int, RawQuery] = {}
    runners = {
        "service": lambda pid: similar_products(pid, K, filters),
        "service_nocache": lambda pid: similar_products(pid, K, filters, use_cache=False),
        "raw": lambda pid: raw[pid].run(),
    }
    start = time.perf_counter()
    for r in warmup_rows:
        if time.perf_counter() - start > budget_s / 4:
            break
        raw[int(ids[r])] = RawQuery.capture(int(ids[r]), in_stock_filter)
        for run in runners.values():
            run(int(ids[r]))
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu = {name: 0.0 for name in runners}  # this process + its PostgreSQL backend
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    order = list(runners)
    start = time.perf_counter()
    for i, r in enumerate(rows):
        if i >= MIN_QUERIES and time.perf_counter() - start > budget_s:
            break
        pid = int(ids[r])
        raw[pid] = RawQuery.capture(pid, in_stock_filter)
        for name in order[i % len(order):] + order[: i % len(order)]:  # rotate who goes first
            c0 = time.process_time() + cpu_seconds(backend)
            t0 = time.perf_counter()
            runners[name](pid)
            times[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() + cpu_seconds(backend) - c0
    out: dict = {"queries": len(times["service"])}
    for name, values in times.items():
        out[f"{name}_p50"] = float(np.percentile(values, 50) * 1000)
        out[f"{name}_p99"] = float(np.percentile(values, 99) * 1000)
        out[f"{name}_cpu"] = cpu[name] / len(values) * 1000
    out["ratio_p50"] = out["service_p50"] / out["raw_p50"]
    out["ratio_p99"] = out["service_p99"] / out["raw_p99"]
    out["ratio_cpu"] = out["service_cpu"] / out["raw_cpu"]
    return out


# --- CPU accounting (Linux /proc): other sessions on a shared machine inflate wall times, not these ---

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


def backend_pids(db_name: str) -> list[int]:
    """PostgreSQL backends connected to the bench database (not this process's own)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [db_name])
        return [r[0] for r in cursor.fetchall()]


def redis_pid() -> int | None:
    port = os.environ.get("CACHE_URL", "").rsplit(":", 1)[-1].split("/", 1)[0]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"redis-server" in cmd and port.encode() in cmd:
                return int(proc.name)
    return None


# --- HTTP -----------------------------------------------------------------------------------

WRK_SCRIPT = r"""
-- Each wrk thread walks its own stride of the id file: no id repeats until the file wraps.
-- With a rate (4th argument, requests/s over all threads; 0 = as fast as answers come),
-- each thread sends on a fixed schedule (wrk's delay(); LuaJIT's ffi reads the clock).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } visrec_timespec;
int clock_gettime(int clk_id, visrec_timespec *tp);
]]
local clock = ffi.new("visrec_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  ids = {}
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  query = args[2]
  stride = tonumber(args[3])
  idx = tid + 1
  local rate = tonumber(args[4] or "0")
  interval = rate > 0 and stride * 1000 / rate or 0
end
function delay()
  if interval == 0 then return 0 end
  local now = now_ms()
  next_at = next_at or now
  local wait = next_at - now
  next_at = next_at + interval
  if wait < 0 then return 0 end  -- behind schedule: the achieved rate shows it
  return math.floor(wait)
end
function request()
  local id = ids[idx]
  idx = idx + stride
  if idx > #ids then idx = idx - #ids end
  return wrk.format("GET", "/api/visrec/products/" .. id .. "/similar/?" .. query)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""

SETTINGS_MODULE = """\"\"\"Settings of the similar benchmark's gunicorn: the test settings, DEBUG off.\"\"\"
import os

from shop_demo.settings_test import *  # noqa: F401,F403
from shop_demo.settings_test import DATABASES, VISREC

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
if os.environ.get("BENCH_EF_SEARCH"):
    VISREC = {**VISREC, "HNSW_EF_SEARCH": int(os.environ["BENCH_EF_SEARCH"])}
if os.environ.get("BENCH_QUERY_THREADS"):
    VISREC = {**VISREC, "QUERY_THREADS": int(os.environ["BENCH_QUERY_THREADS"])}
# Every bench client comes from one loopback address: no per-network throttles or budget.
VISREC = {**VISREC, "THROTTLE_RATES": {}, "EVENTS_PER_NETWORK_PER_MINUTE": 0}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The WSGI servers the HTTP runs can use (``--servers``).
SERVERS = ("gunicorn", "granian")


def server_binary(server: str) -> str | None:
    """The server's executable: beside this Python's, else on the PATH; None if neither."""
    return shutil.which(server, path=str(Path(sys.executable).parent)) or shutil.which(server)


def server_layout(args) -> str:
    """The process and thread layout of each server of ``args.servers``, for the report."""
    layouts = {"gunicorn": f"gunicorn {args.workers} × {args.worker_class}"
                           f"{f' × {args.threads} threads' if args.worker_class == 'gthread' else ''}",
               "granian": f"granian {args.workers} workers × {args.threads} blocking threads"}
    return ", ".join(layouts[name] for name in args.servers)


def server_command(server: str, port: int, args) -> list[str]:
    """The command line of a WSGI server for the demo shop: gunicorn (``--worker-class``,
    ``--threads``) or granian (Rust HTTP, WSGI interface, ``--threads`` blocking threads per
    worker); ``--workers`` processes either way."""
    binary = server_binary(server) or server
    if server == "granian":
        return [binary, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(args.workers), "--blocking-threads", str(args.threads), "--no-ws",
                "--log-level", "warning", "shop_demo.wsgi:application"]
    return [binary, "shop_demo.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
            "--log-level", "warning", "--timeout", "120"]


class Server:
    """The demo shop under a WSGI server (gunicorn or granian) on a free loopback port,
    started and stopped by this process."""

    def __init__(self, workdir: Path, args, *, conn_max_age: int, query_threads: int | None = None,
                 server: str = "gunicorn"):
        self.name = server
        self.port = free_port()
        (workdir / "bench_similar_settings.py").write_text(SETTINGS_MODULE)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench_similar_settings",
               "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]), "BENCH_CONN_MAX_AGE": str(conn_max_age),
               "BENCH_EF_SEARCH": str(args.ef_search or ""), "VISREC_LOG_LEVEL": "WARNING",
               "BENCH_QUERY_THREADS": "" if query_threads is None else str(query_threads)}
        self.log = open(workdir / f"{server}-{conn_max_age}-{self.port}.log", "w")
        self.process = subprocess.Popen(server_command(server, self.port, args), cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, timeout: float = 30) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def wait_ready(self, product_id: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log.name}")
            try:
                if len(self.get(f"/api/visrec/products/{product_id}/similar/?limit={K}")["results"]) == K:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f}s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def server_cpu(server: Server, db_name: str, redis: int | None) -> dict[str, dict[int, float]]:
    """CPU seconds so far, per process: the WSGI server (master and workers), the bench database's
    backends, Redis (shared with other users of the server) and wrk (finished children of this
    process). A backend that exits during a run is missed (rare with persistent connections)."""
    import resource

    master = server.process.pid
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "server": {p: cpu_seconds(p) for p in [master, *children(master)]},
        "postgres": {p: cpu_seconds(p) for p in backend_pids(db_name)},
        "redis": {redis: cpu_seconds(redis)} if redis else {},
        "wrk": {0: usage.ru_utime + usage.ru_stime},
    }


def run_wrk(port: int, script: Path, ids_file: Path, query: str, connections: int, seconds: int,
            rate: float = 0) -> dict:
    """One wrk run; ``rate`` > 0 sends at that many requests/s in all (a schedule per thread)
    instead of each connection's next request as soon as its answer came."""
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
           f"http://127.0.0.1:{port}", "--", str(ids_file), query, str(threads), str(rate)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    stats = json.loads(line[len("WRKJSON "):])
    return {"requests": stats["requests"], "rps": stats["requests"] / (stats["duration_us"] / 1e6),
            "p50_ms": stats["p50_us"] / 1000, "p90_ms": stats["p90_us"] / 1000, "p99_ms": stats["p99_us"] / 1000,
            "max_ms": stats["max_us"] / 1000, "errors": stats["errors"]}


def measure_http(ids: np.ndarray, args, seed: int) -> list[dict]:
    """wrk runs against each server of ``--servers``, the result cache on.

    Cache-cold runs walk a shuffled file of distinct ids (each wrk thread its own stride; the
    cache is cleared before each run and in_stock is part of the cache key), so a request hits
    the cache only if the run outlasts the file ("repeated ids"). One connection gives the
    time of a request alone; ``--connections`` the throughput. The "cards" run walks the same
    distinct ids with every product card cached beforehand (the lists miss, the cards hit: a
    shop's cards are shared by many lists, while a cold run reads ten uncached cards per
    request). The hot run first requests each of its 200 ids once (the ceiling of the
    Django/DRF stack). First with persistent
    database connections (``--conn-max-age``), then the cold runs with a connection per request.
    The runs with a connection per request go to the first server only. Each server is
    stopped (SIGTERM, then SIGKILL) before the next starts or on any error.
    """
    from django.core.cache import cache

    rng = np.random.default_rng(seed + 7)
    shuffled = rng.permutation(ids)
    workdir = Path(tempfile.mkdtemp(prefix="visrec-bench-similar-"))
    script = workdir / "similar.lua"
    script.write_text(WRK_SCRIPT)
    warm_file, cold_file, hot_file = workdir / "warm.txt", workdir / "cold.txt", workdir / "hot.txt"
    warm_file.write_text("\n".join(str(i) for i in shuffled[:2000]) + "\n")
    cold_ids = shuffled[2000:]
    cold_file.write_text("\n".join(str(i) for i in cold_ids) + "\n")
    hot_ids = cold_ids[:200]
    hot_file.write_text("\n".join(str(i) for i in hot_ids) + "\n")
    queries = {True: f"limit={K}&in_stock=true", False: f"limit={K}&in_stock=false"}
    c = args.connections
    from django.db import connection

    db_name = connection.settings_dict["NAME"]
    redis = redis_pid()
    rate = TARGET_HTTP_RPS
    headline = [(True, 1, "cold", 0), (True, c, "cold", 0), (False, c, "cold", 0), (True, c, "cards", 0),
                (True, c, "hot", 0), (True, c, "hot", rate), (False, c, "hot", rate), (True, c, "cards", rate),
                (False, c, "cards", rate), (True, c, "cold", rate), (False, c, "cold", rate)]
    plan = [  # (server, CONN_MAX_AGE, [(in_stock, connections, cache state, offered requests/s or 0), ...])
        *((name, args.conn_max_age, headline) for name in args.servers),
        (args.servers[0], 0, [(True, c, "cold", 0), (False, c, "cold", 0)]),
    ]
    results = []
    try:
        for server_name, conn_max_age, runs in plan:
            server = Server(workdir, args, conn_max_age=conn_max_age, server=server_name)
            try:
                server.wait_ready(int(shuffled[0]))
                run_wrk(server.port, script, warm_file, queries[True], c, 3)  # warm-up, ids not reused
                for in_stock, connections, state, offered in runs:
                    cache.clear()  # the bench's own Redis database
                    if state == "cards":
                        warm_cards(ids)
                    if state == "hot":
                        for pid in hot_ids:
                            server.get(f"/api/visrec/products/{pid}/similar/?{queries[in_stock]}")
                    ids_file = hot_file if state == "hot" else cold_file
                    load = load_average()
                    before = server_cpu(server, db_name, redis)
                    stats = run_wrk(server.port, script, ids_file, queries[in_stock], connections,
                                    args.http_duration, offered)
                    stats["load"] = f"{load} at start, {load_average()} at end"
                    after = server_cpu(server, db_name, redis)
                    used = {part: sum(after[part].values()) - sum(v for p, v in before[part].items()
                                                                  if p in after[part])
                            for part in after}
                    stats["cpu_ms"] = {part: v / max(stats["requests"], 1) * 1000 for part, v in used.items()}
                    distinct = len(cold_ids) if state != "hot" else 0
                    stats.update(server=server_name, in_stock=in_stock, connections=connections, cache=state,
                                 offered=offered,
                                 conn_max_age=conn_max_age, repeats=max(0, stats["requests"] - distinct))
                    print("http", json.dumps(stats), load_average(), flush=True)
                    results.append(stats)
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def warm_cards(ids: np.ndarray, chunk: int = 1000) -> None:
    """Every product's card in the result cache (what a shop's traffic leaves there)."""
    from visrec.services.serving import presentation

    for start in range(0, len(ids), chunk):
        presentation.product_cards([(int(pid), 0.0) for pid in ids[start:start + chunk]])


def http_tools_missing(servers: list[str]) -> str | None:
    if not shutil.which("wrk"):
        return "wrk is not installed (Debian: apt-get install -y wrk): skipping the HTTP benchmark"
    for server in servers:
        if not server_binary(server):
            return f"{server} is not installed (pip install {server}): skipping the HTTP benchmark"
    return None


# --- report ---------------------------------------------------------------------------------

def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def filter_label(in_stock: bool) -> str:
    return "in stock" if in_stock else "none"


def ef_label(row: dict) -> str:
    """The service's ef_search, with the calibration's recall@10 and time (and ✗ if it fell short)."""
    hnsw = row.get("calibration")
    if not hnsw:
        return f"{row.get('ef_search', '?')} (not calibrated)"
    recall = hnsw["recall"][str(hnsw["ef_search"])]
    fixed = "" if row.get("ef_search") == hnsw["ef_search"] else f", fixed {row.get('ef_search')}"
    return (f"{hnsw['ef_search']} ({recall:.3f} {mark(hnsw['reached'])}, {hnsw['sample']} products, "
            f"{hnsw['seconds']:.1f} s{fixed})")


def print_report(rows: list[dict], http: dict[int, list[dict]], args) -> None:
    m, efc = (rows[0]["hnsw_m"], rows[0]["hnsw_ef_construction"]) if rows else ("?", "?")
    chosen = f"fixed by --ef-search {args.ef_search}" if args.ef_search else "each index's calibrated value"
    print()
    print(f"## visually similar: {args.dims}-d unit vectors, k={K}, hnsw.ef_search {chosen}, HNSW m={m} "
          f"ef_construction={efc}; service = similar_products as the endpoint calls it (result cache "
          f"on, every product asked once: a miss); raw SQL = the statements it sent, replayed; "
          f"calibration = the self-check's recall@10 at its ef_search (its sample, no filter)")
    print()
    print(f"| size | vectors | filter | recall@10 (target ≥ {TARGET_RECALL}) | ef_search (calibration recall@10) "
          f"| service p50 / p99 ms "
          f"| raw SQL p50 / p99 ms | ratio p50 / p99 (target ≤ {TARGET_RATIO}×) "
          f"| HTTP p50 / p99 ms (target p50 ≤ {TARGET_HTTP_P50_MS:g}) | HTTP req/s (target ≥ {TARGET_HTTP_RPS:g}) "
          f"| HNSW build s | index MB |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        lat, rec = row["latency"], row["recall"]
        cold = [h for h in http.get(row["size"], []) if h["cache"] == "cold" and h["conn_max_age"] == args.conn_max_age
                and h["in_stock"] == row["in_stock"] and h["connections"] == args.connections
                and not h.get("offered")]
        if cold and row["vectors"] == args.vectors:
            h = cold[0]
            http_lat = f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f} {mark(h['p50_ms'] <= TARGET_HTTP_P50_MS)}"
            http_rps = f"{h['rps']:.0f} {mark(h['rps'] >= TARGET_HTTP_RPS)}"
        else:
            http_lat = http_rps = "—"
        if lat:
            latency = (f"{lat['service_p50']:.2f} / {lat['service_p99']:.2f} | {lat['raw_p50']:.2f} / "
                       f"{lat['raw_p99']:.2f} | {lat['ratio_p50']:.2f} {mark(lat['ratio_p50'] <= TARGET_RATIO)} / "
                       f"{lat['ratio_p99']:.2f} {mark(lat['ratio_p99'] <= TARGET_RATIO)}")
        else:
            latency = "— | — | —"
        build = f"{row['build_s']:.0f}" + (" (reused)" if row["reused"] else "")
        print(f"| {row['size']:,} | {row['vectors']} | {filter_label(row['in_stock'])} "
              f"| {rec['recall']:.3f} {mark(rec['recall'] >= TARGET_RECALL)} | {ef_label(row)} "
              f"| {latency} | {http_lat} | {http_rps} "
              f"| {build} | {row['index_mb']:.0f} |")
    print()
    print("### detail (ms; similarity = mean cosine of the 10 results, exact search / service)")
    print()
    print("| size | vectors | filter | timed queries | service p50 / p99 | service, cache off p50 / p99 "
          "| raw p50 / p99 | CPU ms per call: service / cache off / raw (ratio) "
          "| recall queries | short of 10 | similarity exact / service | load (1 min) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        lat, rec = row["latency"], row["recall"]
        if lat:
            timings = (f"{lat['queries']} | {lat['service_p50']:.2f} / {lat['service_p99']:.2f} "
                       f"| {lat['service_nocache_p50']:.2f} / {lat['service_nocache_p99']:.2f} "
                       f"| {lat['raw_p50']:.2f} / {lat['raw_p99']:.2f} "
                       f"| {lat['service_cpu']:.2f} / {lat['service_nocache_cpu']:.2f} / {lat['raw_cpu']:.2f} "
                       f"({lat['ratio_cpu']:.2f}×)")
        else:
            timings = "— | — | — | — | —"
        print(f"| {row['size']:,} | {row['vectors']} | {filter_label(row['in_stock'])} | {timings} "
              f"| {rec['queries']} | {rec['short_results']} "
              f"| {rec['exact_similarity']:.3f} / {rec['found_similarity']:.3f} | {lat['load'] if lat else '—'} |")
    builds = {(row["size"], row["vectors"]): row for row in rows}
    print()
    print("HNSW builds (through activate_embedder, maintenance_work_mem "
          f"{args.maintenance_work_mem}, max_parallel_maintenance_workers {args.parallel_workers}): "
          + "; ".join(f"{size:,} {kind}: {row['build_s']:.0f} s, {row['index_mb']:.0f} MB"
                      + (f" (built {row['reused']}, {row['build_load']})" if row["reused"] else "")
                      for (size, kind), row in builds.items()))
    swept = [row for row in rows if row["recall"]["sweep"]]
    if swept:
        print()
        print(f"### recall@10 and p50 of the service's SQL by hnsw.ef_search (the service sets the ef_search of "
              f"the first table for k={K}; pgvector's maximum is 1000)")
        print()
        efs = [s["ef_search"] for s in swept[0]["recall"]["sweep"]]
        print("| size | vectors | filter | " + " | ".join(f"ef {e}: recall / p50 ms" for e in efs) + " |")
        print("|---:|---|---|" + "---:|" * len(efs))
        for row in swept:
            cells = " | ".join(f"{s['recall']:.3f} / {s['p50_ms']:.2f}" for s in row["recall"]["sweep"])
            print(f"| {row['size']:,} | {row['vectors']} | {filter_label(row['in_stock'])} | {cells} |")
    for size, runs in http.items():
        print()
        print(f"### HTTP at {size:,} products ({args.vectors} vectors; {server_layout(args)}, wrk on the same cores, "
              f"{args.http_duration} s per run, Redis result cache on)")
        print()
        print("| server | in_stock | connections | cache | CONN_MAX_AGE | offered req/s | requests | req/s | p50 ms "
              "| p90 ms | p99 ms | errors | repeated ids | CPU ms per request: server / postgres / redis / wrk "
              "| req/s that 2 free cores allow (CPU bound) | load (1 min) |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for h in runs:
            cpu = h.get("cpu_ms", {})
            parts = [cpu.get(k, 0.0) for k in ("server", "postgres", "redis", "wrk")]
            # With a connection per request the backends exit before they are read: no estimate.
            capacity = f"{2000 / sum(parts):.0f}" if sum(parts) > 0 and h["conn_max_age"] else "—"
            offered = f"{h['offered']:g}" if h.get("offered") else "as answered"
            if h.get("offered") and h["rps"] < 0.95 * h["offered"]:
                offered += " (fell behind: time behind schedule is not in the latency)"
            print(f"| {h['server']} | {str(h['in_stock']).lower()} | {h['connections']} | {h['cache']} "
                  f"| {h['conn_max_age']} | {offered} | {h['requests']} | {h['rps']:.0f} | {h['p50_ms']:.1f} "
                  f"| {h['p90_ms']:.1f} "
                  f"| {h['p99_ms']:.1f} | {h['errors']} | {h['repeats'] if h['cache'] == 'cold' else '—'} "
                  f"| {' / '.join(f'{x:.2f}' for x in parts)} | {capacity} | {h.get('load', '')} |")


# --- main -----------------------------------------------------------------------------------

def load_average() -> str:
    """The 1-minute load average: other work on the machine inflates every latency here."""
    return "load " + Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else ""


def source_state() -> str:
    """The commit, and whether visrec/services/similar.py differs from it (what "as shipped" measured)."""
    def git(*argv: str) -> str:
        run = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return run.stdout.strip()

    dirty = git("status", "--porcelain", "--", "visrec/services/similar.py", "visrec/services/vector_index.py")
    return f"commit {git('rev-parse', '--short', 'HEAD')}" + (" (similar.py/vector_index.py modified)" if dirty else "")


def bench_size(n: int, kind: str, args, http_note: str | None, *, recall_only: bool = False) -> tuple[list[dict], list[dict]]:
    """Recall, latency (unless ``recall_only``) and, at ``--http-size``, HTTP for one catalogue."""
    from visrec.conf import visrec_settings

    data = prepare(n, kind, args)
    ids, in_stock, vectors = data["ids"], data["in_stock"], data["vectors"]
    rng = np.random.default_rng(args.seed + n)
    picks = rng.choice(n, size=args.recall_queries + args.queries + args.warmup, replace=False)
    recall_rows = picks[: args.recall_queries]
    latency_rows = picks[args.recall_queries: args.recall_queries + args.queries]
    warmup_rows = picks[args.recall_queries + args.queries:]
    ef_values = [int(x) for x in args.ef_sweep.split(",") if x]
    rows = []
    for flag in (True, False):
        label = f"[{n:,} {kind}] in_stock={flag}"
        if args.explain:
            plan = RawQuery.capture(int(ids[recall_rows[0]]), flag).explain()
            print(f"{label} plan:\n{plan}", flush=True)
        t1 = time.perf_counter()
        print(f"{label} recall: {load_average()}", flush=True)
        recall = measure_recall(vectors, ids, in_stock, recall_rows, flag, args.budget_s, ef_values)
        print(f"{label} recall {json.dumps(recall)} ({time.perf_counter() - t1:.0f}s)", flush=True)
        latency = None
        if not recall_only:
            t1 = time.perf_counter()
            load = load_average()
            latency = measure_latency(ids, latency_rows, warmup_rows, flag, args.budget_s)
            latency["load"] = f"{load} at start, {load_average()} at end"
            print(f"{label} latency {json.dumps(latency)} ({time.perf_counter() - t1:.0f}s)", flush=True)
        rows.append({"size": n, "vectors": kind, "in_stock": flag, "recall": recall, "latency": latency,
                     "ef_search": service_ef_search(K), "calibration": calibration(),
                     "build_s": data["build_s"], "index_mb": data["index_mb"], "reused": data["reused"],
                     "build_load": data["build_load"], "hnsw_m": visrec_settings.HNSW_M,
                     "hnsw_ef_construction": visrec_settings.HNSW_EF_CONSTRUCTION})
    http: list[dict] = []
    if n == args.http_size and not recall_only:
        if http_note:
            print(http_note, flush=True)
        else:
            http = measure_http(ids, args, args.seed)
    return rows, http


def apply_overrides(args) -> None:
    """The ``--ef-search`` / ``--hnsw-*`` what-ifs, in this process (gunicorn gets ef_search by env)."""
    from django.conf import settings

    from visrec.conf import visrec_settings

    overrides = {key: value for key, value in (("HNSW_EF_SEARCH", args.ef_search), ("HNSW_M", args.hnsw_m),
                                               ("HNSW_EF_CONSTRUCTION", args.hnsw_ef_construction)) if value}
    settings.VISREC = {**settings.VISREC, **overrides}
    visrec_settings.reload()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--queries", type=int, default=500, help="timed queries per filter")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--ef-sweep", default="40,100,200,400,800", help="hnsw.ef_search values for the raw SQL")
    parser.add_argument("--budget-s", type=float, default=45.0,
                        help="seconds per recall or latency measurement before it stops early (slow plans)")
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument("--parallel-workers", type=int, default=2, help="max_parallel_maintenance_workers (build)")
    parser.add_argument("--vectors", default="catalogue", choices=["catalogue", "uniform"],
                        help="vectors of the --sizes catalogues (see unit_vectors)")
    parser.add_argument("--hard-size", type=int, default=100_000,
                        help="also measure recall on uniform vectors at this size, the hard case (0: no)")
    parser.add_argument("--explain", action="store_true", help="print the plan of the service's query")
    parser.add_argument("--prepare-only", action="store_true",
                        help="load and index the catalogues, measure nothing, keep them (for a later --reuse)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep an identical catalogue and HNSW index from an earlier --keep run")
    parser.add_argument("--ef-search", type=int, default=None, help="override VISREC['HNSW_EF_SEARCH'] (what-if)")
    parser.add_argument("--hnsw-m", type=int, default=None, help="override VISREC['HNSW_M'] (what-if)")
    parser.add_argument("--hnsw-ef-construction", type=int, default=None,
                        help="override VISREC['HNSW_EF_CONSTRUCTION'] (what-if)")
    parser.add_argument("--http-size", type=int, default=None, help="size served over HTTP (default: smallest)")
    parser.add_argument("--http-duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--conn-max-age", type=int, default=60,
                        help="gunicorn's CONN_MAX_AGE in the headline runs (persistent connections, as in "
                             "production); one pair of runs also uses 0 (a connection per request)")
    parser.add_argument("--servers", default="granian,gunicorn",
                        help="WSGI servers the HTTP runs go to, each in turn: granian and/or gunicorn")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes: one per core")
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per gthread worker (gunicorn) / blocking threads per worker (granian)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--db", default="visrec_bench_similar")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away databases")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench-similar.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.http_size is None:
        args.http_size = min(sizes)
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown or not args.servers:
        parser.error(f"--servers: {' and/or '.join(SERVERS)}, not {','.join(sorted(unknown)) or 'nothing'}")
    http_note = http_tools_missing(args.servers)
    if http_note:
        print(http_note, flush=True)

    print("command: .venv/bin/python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]), flush=True)
    start = time.perf_counter()
    setup_django()
    apply_overrides(args)
    from django.db import connection

    use_database(f"{args.db}_{sizes[0]}_{args.vectors}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
                       "current_setting('shared_buffers')")
        server, pgvector_version, shared_buffers = cursor.fetchone()
    print(f"{server.split(',')[0]}, pgvector {pgvector_version}, shared_buffers {shared_buffers}, "
          f"{os.cpu_count()} CPUs; {source_state()}", flush=True)
    rows: list[dict] = []
    http: dict[int, list[dict]] = {}
    plan = [(n, args.vectors, False) for n in sizes]
    if args.hard_size and args.vectors != "uniform":
        plan.append((args.hard_size, "uniform", True))
    if args.prepare_only:
        for n, kind, _ in plan:
            prepare(n, kind, args)
        print(f"prepared; total {time.perf_counter() - start:.0f}s")
        return
    try:
        for n, kind, recall_only in plan:
            size_rows, size_http = bench_size(n, kind, args, http_note, recall_only=recall_only)
            rows.extend(size_rows)
            if size_http:
                http[n] = size_http
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"rows": rows, "http": {str(k): v for k, v in http.items()}}, indent=1))
    finally:
        if not args.keep:
            for n, kind, _ in plan:
                drop_database(f"{args.db}_{n}_{kind}")
    print_report(rows, http, args)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
