""""Visually similar" at catalogue scale: recall, latency and HTTP throughput of the service.

    .venv/bin/python bench/similar.py [--sizes 100000,1000000] [--dims 128] [--queries 500]
                                      [--recall-queries 200] [--http-duration 20] [--keep]

Per catalogue size, in one run against a throw-away database ``visrec_bench_similar``:

1. products (20 categories, ~70% in stock, random prices) are inserted with
   ``INSERT ... SELECT generate_series`` and their vectors (random unit vectors, or with
   ``--clusters`` unit vectors around that many random centres) with binary ``COPY``; a
   ``ModelVersion`` is switched on with visrec's own ``activate_embedder``, which builds the
   HNSW index (timed, with ``maintenance_work_mem`` and one parallel maintenance worker);
2. recall@10 of ``similar_products`` against brute-force numpy on the same vectors and filter,
   and of the raw SQL per ``hnsw.ef_search`` (``--ef-sweep``);
3. p50/p99 latency of ``similar_products(..., use_cache=False)`` beside the raw SQL it issues
   (``nearest_products_sql`` with the same WHERE clause, parameters and ``set_config`` calls,
   in a transaction), queries rotating which runs first;
4. at the smallest size, the REST endpoint served by gunicorn on loopback under ``wrk``, with
   ids read from a file so that every request misses the Redis result cache (cache on), then
   a cache-hot run and a run with persistent database connections.

Slow plans stop a measurement early after ``--budget-s`` seconds (never below ``MIN_QUERIES``
queries); the counts are reported. ``--ef-search``, ``--hnsw-m`` and ``--hnsw-ef-construction``
override visrec's values inside this benchmark's processes only, to try settings. Prints one
markdown table with each target beside its measurement, then the details.

Needs ``wrk`` (``apt-get install wrk``) and ``gunicorn`` for step 4; without them it says so
and skips that step. Runs on the embedded PostgreSQL (or ``DATABASE_URL``'s server).
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
from contextlib import contextmanager
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
BENCH_CACHE_DB = 9  # Redis database of the result cache during the run (not the demo's or the tests')


# --- setup ----------------------------------------------------------------------------------

def admin_conninfo() -> dict:
    from shop_demo import devservices

    params = devservices.ensure_postgres()
    return dict(host=params["HOST"], port=params["PORT"], user=params["USER"], dbname="postgres")


def setup_django(db_name: str) -> None:
    """Creates the throw-away database, points the settings and the result cache at it, migrates."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings_test"
    os.environ["VISREC_TEST_DATABASE_NAME"] = db_name
    import django
    import psycopg

    from shop_demo import devservices

    if not os.environ.get("CACHE_URL"):
        os.environ["CACHE_URL"] = f"{devservices.ensure_redis()}/{BENCH_CACHE_DB}"
    if not os.environ.get("DATABASE_URL"):
        with psycopg.connect(**admin_conninfo(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone():
                conn.execute(f"CREATE DATABASE {db_name}")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop_database(db_name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    if os.environ.get("DATABASE_URL"):
        print(f"DATABASE_URL is set: drop {db_name} yourself if it is a throw-away database")
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
    from visrec.services import vector_index

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


def unit_vectors(n: int, dims: int, seed: int, clusters: int = 0, spread: float = 0.06) -> np.ndarray:
    """float32, shape ``(n, dims)``, each row of norm 1.

    Uniform on the sphere when ``clusters`` is 0: every point is almost equally far from all
    others, the hardest case for HNSW. Otherwise each point is a random one of ``clusters``
    random centres plus Gaussian noise of ``spread`` per dimension, closer to what image
    embeddings of a catalogue look like.
    """
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.standard_normal((clusters, dims), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vectors = centres[rng.integers(0, clusters, n)]
        vectors += rng.standard_normal((n, dims), dtype=np.float32) * spread
    else:
        vectors = rng.standard_normal((n, dims), dtype=np.float32)
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


def build_and_activate(dims: int, maintenance_work_mem: str) -> tuple[float, float]:
    """Switches the bench version on through visrec; returns (HNSW build seconds, index MB)."""
    from django.db import connection

    from visrec.models import ModelKind, ModelVersion, ProductEmbedding
    from visrec.services import vector_index
    from visrec.services.embedders import activate_embedder

    name = version_name(dims)
    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name=name, dimensions=dims,
                                          metrics={"backbone": "bench", "base_version": name})
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = %s", [maintenance_work_mem])
        cursor.execute("SET max_parallel_maintenance_workers = 1")
    start = time.perf_counter()
    activate_embedder(version, note="benchmark")
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("RESET max_parallel_maintenance_workers")
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [vector_index.index_name(ProductEmbedding, name)])
        size_mb = cursor.fetchone()[0] / 2**20
    return seconds, size_mb


# --- queries ----------------------------------------------------------------------------------

class RawQuery:
    """The SQL ``similar_products`` issues for one filter, runnable on its own.

    Same WHERE clause and parameters as ``similar._nearest`` builds them (the service's own
    candidate queryset, ordering cleared, the query product excluded), same ``set_config(...,
    true)`` calls, in a transaction, through Django's cursor. ``with_vectors`` adds
    ``e.vector::text`` to the select list as the service does.
    """

    def __init__(self, dims: int, in_stock: bool, *, with_vectors: bool = False):
        from visrec.services import similar, vector_index

        queryset = similar._candidate_queryset(similar.SimilarFilters(in_stock=in_stock), None, None)
        inner_sql, self.inner_params = queryset.order_by().values("pk").query.sql_with_params()
        where = f"e.product_id IN ({inner_sql}) AND e.product_id <> %s"
        self.sql = vector_index.nearest_products_sql(version_name(dims), dims, where)
        if with_vectors:
            self.sql = self.sql.replace("SELECT e.product_id,", "SELECT e.product_id, e.vector::text,", 1)
        self.iterative = vector_index.supports_iterative_scan()

    def params(self, literal: str, product_id: int, k: int) -> list:
        return [literal, *self.inner_params, product_id, literal, k]

    def run(self, literal: str, product_id: int, k: int = K, ef_search: int = 40) -> list:
        from django.db import connection, transaction

        with transaction.atomic(), connection.cursor() as cursor:
            if self.iterative:
                cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
                cursor.execute("SELECT set_config('hnsw.max_scan_tuples', %s, true)", ["100000"])
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
            cursor.execute(self.sql, self.params(literal, product_id, k))
            return cursor.fetchall()

    def explain(self, literal: str, product_id: int, ef_search: int = 40) -> str:
        from django.db import connection, transaction

        with transaction.atomic(), connection.cursor() as cursor:
            if self.iterative:
                cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
                cursor.execute("SELECT set_config('hnsw.max_scan_tuples', %s, true)", ["100000"])
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + self.sql, self.params(literal, product_id, K))
            return "\n".join(r[0] for r in cursor.fetchall())


def configured_ef_search() -> int:
    """visrec's ``HNSW_EF_SEARCH`` (40, pgvector's default, before visrec had that setting)."""
    from visrec.conf import visrec_settings

    try:
        return int(visrec_settings.HNSW_EF_SEARCH)
    except AttributeError:
        return 40


def service_ef_search(k: int) -> int:
    """The ``hnsw.ef_search`` that ``similar._nearest`` sets first for ``k`` results."""
    return max(configured_ef_search(), 2 * k)


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


def measure_recall(vectors, ids, in_stock, rows, in_stock_filter: bool, dims: int, budget_s: float,
                   ef_values: list[int] = ()) -> dict:
    """recall@10 of the service over ``rows`` (fewer once ``budget_s`` is spent), and of the raw
    SQL per ``ef_search`` in ``ef_values`` (with its p50 latency)."""
    from visrec.services import vector_index
    from visrec.services.similar import SimilarFilters, similar_products

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
    raw = RawQuery(dims, in_stock_filter)
    literals = [vector_index.vector_literal(vectors[r]) for r in used]
    for ef in ef_values:
        hits, times = 0, []
        for r, exact, literal in zip(used, truth, literals):
            t0 = time.perf_counter()
            got = raw.run(literal, int(ids[r]), K, ef)
            times.append(time.perf_counter() - t0)
            hits += len(exact.intersection(row[0] for row in got))
        result["sweep"].append({"ef_search": ef, "recall": hits / (K * len(used)),
                                "p50_ms": float(np.percentile(times, 50) * 1000)})
    return result


def measure_latency(vectors, ids, rows, warmup_rows, in_stock_filter: bool, dims: int, budget_s: float) -> dict:
    """p50/p99 ms of the service (no cache), the raw SQL, and the raw SQL with vectors selected.

    Each query product runs all three, rotating which goes first; warm-up gets a quarter of
    ``budget_s``, the timed queries stop early (after ``MIN_QUERIES``) once it is spent.
    """
    from visrec.services import vector_index
    from visrec.services.similar import SimilarFilters, similar_products

    filters = SimilarFilters(in_stock=in_stock_filter)
    ef = service_ef_search(K)
    raw = RawQuery(dims, in_stock_filter)
    raw_vectors = RawQuery(dims, in_stock_filter, with_vectors=True)
    runners = {
        "service": lambda pid, lit: similar_products(pid, K, filters, use_cache=False),
        "raw": lambda pid, lit: raw.run(lit, pid, K, ef),
        "raw_vectors": lambda pid, lit: raw_vectors.run(lit, pid, K, ef),
    }
    start = time.perf_counter()
    for r in warmup_rows:
        if time.perf_counter() - start > budget_s / 4:
            break
        for run in runners.values():
            run(int(ids[r]), vector_index.vector_literal(vectors[r]))
    times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    start = time.perf_counter()
    for i, r in enumerate(rows):
        if i >= MIN_QUERIES and time.perf_counter() - start > budget_s:
            break
        pid, literal = int(ids[r]), vector_index.vector_literal(vectors[r])
        for name in order[i % len(order):] + order[: i % len(order)]:  # rotate who goes first
            t0 = time.perf_counter()
            runners[name](pid, literal)
            times[name].append(time.perf_counter() - t0)
    out: dict = {"queries": len(times["service"])}
    for name, values in times.items():
        out[f"{name}_p50"] = float(np.percentile(values, 50) * 1000)
        out[f"{name}_p99"] = float(np.percentile(values, 99) * 1000)
    out["ratio_p50"] = out["service_p50"] / out["raw_p50"]
    out["ratio_p99"] = out["service_p99"] / out["raw_p99"]
    return out


# --- HTTP -----------------------------------------------------------------------------------

WRK_SCRIPT = r"""
-- Each wrk thread walks its own stride of the id file: no id repeats until the file wraps.
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
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """The demo shop under gunicorn on a free loopback port, started and stopped by this process."""

    def __init__(self, workdir: Path, args, *, conn_max_age: int):
        self.port = free_port()
        (workdir / "bench_similar_settings.py").write_text(SETTINGS_MODULE)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench_similar_settings",
               "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]), "BENCH_CONN_MAX_AGE": str(conn_max_age),
               "BENCH_EF_SEARCH": str(args.ef_search or ""), "VISREC_LOG_LEVEL": "WARNING"}
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        self.log = open(workdir / f"gunicorn-{conn_max_age}.log", "w")
        self.process = subprocess.Popen(
            [gunicorn, "shop_demo.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
             "--log-level", "warning", "--timeout", "120"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def get(self, path: str, timeout: float = 30) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def wait_ready(self, product_id: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log.name}")
            try:
                if len(self.get(f"/api/visrec/products/{product_id}/similar/?limit={K}")["results"]) == K:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f}s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def run_wrk(port: int, script: Path, ids_file: Path, query: str, connections: int, seconds: int) -> dict:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
           f"http://127.0.0.1:{port}", "--", str(ids_file), query, str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    stats = json.loads(line[len("WRKJSON "):])
    return {"requests": stats["requests"], "rps": stats["requests"] / (stats["duration_us"] / 1e6),
            "p50_ms": stats["p50_us"] / 1000, "p90_ms": stats["p90_us"] / 1000, "p99_ms": stats["p99_us"] / 1000,
            "max_ms": stats["max_us"] / 1000, "errors": stats["errors"]}


def measure_http(ids: np.ndarray, args, seed: int) -> list[dict]:
    """wrk runs against gunicorn, the result cache on.

    Cache-cold runs walk a shuffled file of distinct ids (each wrk thread its own stride; the
    cache is cleared before each run and in_stock is part of the cache key), so a request hits
    the cache only if the run outlasts the file ("repeated ids"). One connection gives the
    service time of a request; ``--connections`` the throughput. The hot run first requests
    each of its 200 ids once. Then the cold runs again with persistent database connections.
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
    plan = [  # (CONN_MAX_AGE, [(in_stock, connections, cache state), ...])
        (0, [(True, 1, "cold"), (False, 1, "cold"), (True, c, "cold"), (False, c, "cold"), (True, c, "hot")]),
        (60, [(True, c, "cold"), (False, c, "cold")]),
    ]
    results = []
    try:
        for conn_max_age, runs in plan:
            server = Gunicorn(workdir, args, conn_max_age=conn_max_age)
            try:
                server.wait_ready(int(shuffled[0]))
                run_wrk(server.port, script, warm_file, queries[True], c, 3)  # warm-up, ids not reused
                for in_stock, connections, state in runs:
                    cache.clear()  # the bench's own Redis database
                    if state == "hot":
                        for pid in hot_ids:
                            server.get(f"/api/visrec/products/{pid}/similar/?{queries[in_stock]}")
                    ids_file = hot_file if state == "hot" else cold_file
                    stats = run_wrk(server.port, script, ids_file, queries[in_stock], connections,
                                    args.http_duration)
                    distinct = len(cold_ids) if state == "cold" else 0
                    stats.update(in_stock=in_stock, connections=connections, cache=state,
                                 conn_max_age=conn_max_age, repeats=max(0, stats["requests"] - distinct))
                    print("http", json.dumps(stats), load_average(), flush=True)
                    results.append(stats)
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def http_tools_missing() -> str | None:
    if not shutil.which("wrk"):
        return "wrk is not installed (Debian: apt-get install -y wrk): skipping the HTTP benchmark"
    if not shutil.which("gunicorn", path=str(Path(sys.executable).parent)) and not shutil.which("gunicorn"):
        return "gunicorn is not installed (pip install gunicorn): skipping the HTTP benchmark"
    return None


# --- report ---------------------------------------------------------------------------------

def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def filter_label(in_stock: bool) -> str:
    return "in stock" if in_stock else "none"


def print_report(rows: list[dict], http: dict[int, list[dict]], args) -> None:
    data = f"{args.clusters} clusters of" if args.clusters else "random"
    print()
    print(f"## visually similar: {args.dims}-d {data} unit vectors, k={K}, hnsw.ef_search {service_ef_search(K)}, "
          f"HNSW m={rows[0]['hnsw_m'] if rows else '?'} ef_construction={rows[0]['hnsw_ef_construction'] if rows else '?'}")
    print()
    print(f"| size | filter | recall@10 (ref ≥ {TARGET_RECALL}) | service p50 / p99 ms | raw SQL p50 / p99 ms "
          f"| ratio p50 (ref ≤ {TARGET_RATIO}×) | HTTP p50 / p99 ms (ref p50 ≤ {TARGET_HTTP_P50_MS:g}) "
          f"| req/s (ref ≥ {TARGET_HTTP_RPS:g}) | HNSW build s | index MB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        lat, rec = row["latency"], row["recall"]
        cold = [h for h in http.get(row["size"], []) if h["cache"] == "cold" and h["conn_max_age"] == 0
                and h["in_stock"] == row["in_stock"] and h["connections"] == args.connections]
        if cold:
            h = cold[0]
            http_lat = f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f} {mark(h['p50_ms'] <= TARGET_HTTP_P50_MS)}"
            http_rps = f"{h['rps']:.0f} {mark(h['rps'] >= TARGET_HTTP_RPS)}"
        else:
            http_lat = http_rps = "—"
        print(f"| {row['size']:,} | {filter_label(row['in_stock'])} "
              f"| {rec['recall']:.3f} {mark(rec['recall'] >= TARGET_RECALL)} "
              f"| {lat['service_p50']:.2f} / {lat['service_p99']:.2f} | {lat['raw_p50']:.2f} / {lat['raw_p99']:.2f} "
              f"| {lat['ratio_p50']:.2f} {mark(lat['ratio_p50'] <= TARGET_RATIO)} | {http_lat} | {http_rps} "
              f"| {row['build_s']:.1f} | {row['index_mb']:.0f} |")
    print()
    print("### detail (ms; \"raw + vectors\" is the service's exact SQL, which also selects e.vector::text; "
          "similarity = mean cosine of the 10 results)")
    print()
    print("| size | filter | timed queries | service p50 / p99 | raw p50 / p99 | raw + vectors p50 / p99 | ratio p99 "
          "| recall queries | short of 10 | similarity exact / service |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        lat, rec = row["latency"], row["recall"]
        print(f"| {row['size']:,} | {filter_label(row['in_stock'])} | {lat['queries']} "
              f"| {lat['service_p50']:.2f} / {lat['service_p99']:.2f} | {lat['raw_p50']:.2f} / {lat['raw_p99']:.2f} "
              f"| {lat['raw_vectors_p50']:.2f} / {lat['raw_vectors_p99']:.2f} | {lat['ratio_p99']:.2f} "
              f"| {rec['queries']} | {rec['short_results']} "
              f"| {rec['exact_similarity']:.3f} / {rec['found_similarity']:.3f} |")
    swept = [row for row in rows if row["recall"]["sweep"]]
    if swept:
        print()
        print(f"### recall@10 and p50 of the raw SQL by hnsw.ef_search (the service sets {service_ef_search(K)} "
              f"for k={K}; pgvector's maximum is 1000)")
        print()
        efs = [s["ef_search"] for s in swept[0]["recall"]["sweep"]]
        print("| size | filter | " + " | ".join(f"ef {ef}: recall / p50 ms" for ef in efs) + " |")
        print("|---:|---|" + "---:|" * len(efs))
        for row in swept:
            cells = " | ".join(f"{s['recall']:.3f} / {s['p50_ms']:.2f}" for s in row["recall"]["sweep"])
            print(f"| {row['size']:,} | {filter_label(row['in_stock'])} | {cells} |")
    for size, runs in http.items():
        print()
        print(f"### HTTP at {size:,} products (gunicorn {args.workers} × {args.worker_class}"
              f"{f' × {args.threads} threads' if args.worker_class == 'gthread' else ''}, wrk on the same cores, "
              f"{args.http_duration} s per run, Redis result cache on)")
        print()
        print("| in_stock | connections | cache | CONN_MAX_AGE | requests | req/s | p50 ms | p90 ms | p99 ms "
              "| errors | repeated ids |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for h in runs:
            print(f"| {str(h['in_stock']).lower()} | {h['connections']} | {h['cache']} "
                  f"| {h['conn_max_age']} | {h['requests']} | {h['rps']:.0f} | {h['p50_ms']:.1f} | {h['p90_ms']:.1f} "
                  f"| {h['p99_ms']:.1f} | {h['errors']} | {h['repeats'] if h['cache'] == 'cold' else '—'} |")


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


def bench_size(n: int, args, http_note: str | None) -> tuple[list[dict], list[dict]]:
    from django.db import connection

    from visrec.services import vector_index

    t0 = time.perf_counter()
    reset_catalogue(args.dims)
    ids, in_stock = insert_products(n, args.seed)
    vectors = unit_vectors(n, args.dims, args.seed, args.clusters)
    copy_embeddings(ids, vectors, version_name(args.dims))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE catalog_product")
        cursor.execute("VACUUM ANALYZE visrec_productembedding")
    print(f"[{n:,}] loaded in {time.perf_counter() - t0:.1f}s ({in_stock.mean():.1%} in stock), {load_average()}",
          flush=True)
    build_s, index_mb = build_and_activate(args.dims, args.maintenance_work_mem)
    print(f"[{n:,}] HNSW built by activate_embedder in {build_s:.1f}s, index {index_mb:.0f} MB, {load_average()}",
          flush=True)

    rng = np.random.default_rng(args.seed + n)
    picks = rng.choice(n, size=args.recall_queries + args.queries + args.warmup, replace=False)
    recall_rows = picks[: args.recall_queries]
    latency_rows = picks[args.recall_queries: args.recall_queries + args.queries]
    warmup_rows = picks[args.recall_queries + args.queries:]
    ef_values = [int(x) for x in args.ef_sweep.split(",") if x]
    rows = []
    for flag in (True, False):
        label = f"[{n:,}] in_stock={flag}"
        plan = RawQuery(args.dims, flag).explain(vector_index.vector_literal(vectors[recall_rows[0]]),
                                                 int(ids[recall_rows[0]]), service_ef_search(K))
        plan = "\n".join(line for line in plan.splitlines() if "Order By:" not in line
                         and "Sort Key: (((e.vector)" not in line)
        print(f"{label} plan:\n{plan}", flush=True)
        t1 = time.perf_counter()
        recall = measure_recall(vectors, ids, in_stock, recall_rows, flag, args.dims, args.budget_s, ef_values)
        print(f"{label} recall {json.dumps(recall)} ({time.perf_counter() - t1:.0f}s)", flush=True)
        t1 = time.perf_counter()
        latency = measure_latency(vectors, ids, latency_rows, warmup_rows, flag, args.dims, args.budget_s)
        print(f"{label} latency {json.dumps(latency)} ({time.perf_counter() - t1:.0f}s), {load_average()}",
              flush=True)
        rows.append({"size": n, "in_stock": flag, "recall": recall, "latency": latency, "build_s": build_s,
                     "index_mb": index_mb, "hnsw_m": vector_index.HNSW_M,
                     "hnsw_ef_construction": vector_index.HNSW_EF_CONSTRUCTION})
    http: list[dict] = []
    if n == args.http_size:
        if http_note:
            print(http_note, flush=True)
        else:
            http = measure_http(ids, args, args.seed)
    return rows, http


def apply_overrides(args) -> None:
    """The ``--ef-search`` / ``--hnsw-*`` what-ifs, in this process (gunicorn gets ef_search by env)."""
    from django.conf import settings

    from visrec.conf import visrec_settings
    from visrec.services import vector_index

    if args.ef_search:
        settings.VISREC = {**settings.VISREC, "HNSW_EF_SEARCH": args.ef_search}
        visrec_settings.reload()
    if args.hnsw_m:
        vector_index.HNSW_M = args.hnsw_m
    if args.hnsw_ef_construction:
        vector_index.HNSW_EF_CONSTRUCTION = args.hnsw_ef_construction


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
    parser.add_argument("--clusters", type=int, default=0, help="unit vectors around this many centres (0: uniform)")
    parser.add_argument("--ef-search", type=int, default=None, help="override VISREC['HNSW_EF_SEARCH'] (what-if)")
    parser.add_argument("--hnsw-m", type=int, default=None, help="override visrec's HNSW m (what-if)")
    parser.add_argument("--hnsw-ef-construction", type=int, default=None,
                        help="override visrec's HNSW ef_construction (what-if)")
    parser.add_argument("--http-size", type=int, default=None, help="size served over HTTP (default: smallest)")
    parser.add_argument("--http-duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--db", default="visrec_bench_similar")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away database")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench-similar.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.http_size is None:
        args.http_size = min(sizes)
    http_note = http_tools_missing()
    if http_note:
        print(http_note, flush=True)

    print("command: .venv/bin/python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]), flush=True)
    start = time.perf_counter()
    setup_django(args.db)
    apply_overrides(args)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
                       "current_setting('shared_buffers')")
        server, pgvector_version, shared_buffers = cursor.fetchone()
    print(f"{server.split(',')[0]}, pgvector {pgvector_version}, shared_buffers {shared_buffers}, "
          f"{os.cpu_count()} CPUs; {source_state()}", flush=True)
    rows: list[dict] = []
    http: dict[int, list[dict]] = {}
    try:
        for n in sizes:
            size_rows, size_http = bench_size(n, args, http_note)
            rows.extend(size_rows)
            if size_http:
                http[n] = size_http
    finally:
        if rows:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"rows": rows, "http": {str(k): v for k, v in http.items()}}, indent=1))
        if not args.keep:
            drop_database(args.db)
    print_report(rows, http, args)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
