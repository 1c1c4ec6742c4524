""""Similar" queries prepared once per connection against the same queries planned on every call.

    PYTHONPATH=.benchlib .venv/bin/python bench/prepared.py [--size 100000] [--hnsw-m 24] [--queries 300] [--rounds 6]
                                                            [--drop] [--json FILE]

On the catalogue of ``bench/similar.py`` (its database ``visrec_bench_similar_<size>_catalogue``:
reused when an identical one was kept with ``--keep``, else built as that bench builds it),
``similar_products`` runs uncached on one connection with ``VISREC["PREPARED_QUERIES"]`` on
(visrec's default: ``EXECUTE`` of a statement prepared on the connection, PostgreSQL's
``plan_cache_mode`` ``auto``) and off (the same SQL, parsed and planned on every call), in
alternating rounds, with and without the in-stock filter. Reported per query: CPU of the
PostgreSQL backend (read from /proc, so other work on a shared machine inflates it less than
wall time; it counts in 10 ms clock ticks, so a run needs hundreds of queries), CPU of this
process (the client), wall-clock p50, and the ratio prepared / unprepared of each, every figure
the median over the rounds. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import similar as catalogue_bench  # noqa: E402 - bench/similar.py: its catalogue and CPU accounting

K = catalogue_bench.K


def measure(product_ids: list[int], in_stock: bool, prepared: bool) -> dict:
    """Per-query backend CPU, client CPU and wall p50 (ms) of ``similar_products`` for these products."""
    from django.db import connection
    from django.test import override_settings

    from visrec.services.serving.similar import SimilarFilters, similar_products

    filters = SimilarFilters(in_stock=in_stock)
    with override_settings(VISREC={**_visrec(), "PREPARED_QUERIES": prepared}):
        similar_products(product_ids[0], K, filters, use_cache=False)  # prepares it (on), warms up (off)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        walls = []
        backend_before, client_before = catalogue_bench.cpu_seconds(backend), time.thread_time()
        for pid in product_ids:
            start = time.perf_counter()
            found = similar_products(pid, K, filters, use_cache=False)
            walls.append(time.perf_counter() - start)
            if len(found) != K:
                raise RuntimeError(f"product {pid}: {len(found)} results, not {K}")
        backend_cpu = catalogue_bench.cpu_seconds(backend) - backend_before
        client_cpu = time.thread_time() - client_before
    n = len(product_ids)
    return {"backend_ms": backend_cpu / n * 1000, "client_ms": client_cpu / n * 1000,
            "p50_ms": float(np.percentile(walls, 50)) * 1000}


def measure_all(args, data: dict, rng, rows: list) -> None:
    """Alternating rounds per filter; appends ``(in_stock, {prepared: medians})`` to ``rows``."""
    for in_stock in (True, False):
        results: dict[bool, list[dict]] = {True: [], False: []}
        for round_ in range(args.rounds):
            picks = [int(p) for p in rng.choice(data["ids"], size=args.queries, replace=False)]
            for prepared in ((True, False) if round_ % 2 == 0 else (False, True)):
                results[prepared].append(measure(picks, in_stock, prepared))
        median = {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                  for mode, runs in results.items()}
        rows.append((in_stock, median))
        print(f"in_stock={in_stock}: {median}", flush=True)


def ratio(value: float, reference: float) -> str:
    """``value / reference`` as "0.71×"; "n/a" where the reference read zero.

    /proc counts CPU in clock ticks (10 ms), so a short run (the smoke test's few queries) can
    read no backend CPU at all in one mode.
    """
    return f"{value / reference:.2f}×" if reference > 0 else "n/a"


def _visrec() -> dict:
    from django.conf import settings

    return dict(settings.VISREC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hnsw-m", type=int, default=None, help="as bench/similar.py's (24 reuses its headline build)")
    parser.add_argument("--hnsw-ef-construction", type=int, default=None)
    parser.add_argument("--queries", type=int, default=300, help="queries per round and mode")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--db", default="visrec_bench_similar")
    parser.add_argument("--drop", action="store_true", help="drop the catalogue's database at the end")
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    args = parser.parse_args()
    # What bench/similar.py's catalogue builder reads of its own arguments.
    args.reuse, args.ef_search = True, None
    args.maintenance_work_mem, args.parallel_workers = "2GB", 2

    print("command: .venv/bin/python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]), flush=True)
    catalogue_bench.setup_django()
    catalogue_bench.apply_overrides(args)
    data = catalogue_bench.prepare(args.size, "catalogue", args)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        server, pgvector_version = cursor.fetchone()
    print(f"{server.split(',')[0]}, pgvector {pgvector_version}; {catalogue_bench.source_state()}; "
          f"{catalogue_bench.load_average()}", flush=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    try:
        measure_all(args, data, rng, rows)
    finally:
        if args.drop:
            catalogue_bench.drop_database(f"{args.db}_{args.size}_catalogue")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "rows": [
            {"in_stock": in_stock, "prepared": median[True], "unprepared": median[False]} for in_stock, median in rows]},
            indent=1))
    print(f"\n{args.size:,} products, k={K}, {args.rounds} rounds × {args.queries} queries per mode "
          f"(medians over rounds); {catalogue_bench.load_average()}\n")
    print("| filter | PostgreSQL CPU ms/query: unprepared → prepared (ratio) "
          "| client CPU ms/query (ratio) | wall p50 ms (ratio) |")
    print("|---|---|---|---|")
    for in_stock, median in rows:
        on, off = median[True], median[False]
        cells = [f"{off[key]:.3f} → {on[key]:.3f} ({ratio(on[key], off[key])})"
                 for key in ("backend_ms", "client_ms", "p50_ms")]
        print(f"| {catalogue_bench.filter_label(in_stock)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
