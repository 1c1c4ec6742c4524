"""CPU per cache call: Django's Redis cache against ``visrec.cache.RedisCache`` (one client per pool).

    python bench/cache_client.py [--calls 5000]

Both backends talk to the same Redis (the demo's, started if needed) in the same run, one
after the other and then again; the table gives CPU and wall microseconds per call and the
ratio to Django's backend (the reference).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(cache, calls: int, op) -> tuple[float, float]:
    op(cache)  # connect
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        op(cache)
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

    from visrec.cache import RedisCache

    location = settings.CACHES["default"]["LOCATION"]
    params = {"KEY_PREFIX": "bench-cache-client"}
    backends = {"django.core.cache.backends.redis.RedisCache": DjangoRedisCache(location, params),
                "visrec.cache.RedisCache": RedisCache(location, params)}
    keys = [f"k{i}" for i in range(10)]
    next(iter(backends.values())).set_many({key: {"card": key} for key in keys}, 60)
    ops = {"get_many (10 keys)": lambda c: c.get_many(keys), "get (1 key)": lambda c: c.get(keys[0])}
    print(f"command: python bench/cache_client.py --calls {args.calls}")
    print()
    print("| operation | backend | CPU µs per call | wall µs per call | CPU ratio to Django's |")
    print("|---|---|---:|---:|---:|")
    for label, op in ops.items():
        results = {name: [] for name in backends}
        for _ in range(2):  # alternate, twice: keep the better of each
            for name, cache in backends.items():
                results[name].append(measure(cache, args.calls, op))
        best = {name: min(runs) for name, runs in results.items()}
        reference = best["django.core.cache.backends.redis.RedisCache"][0]
        for name, (cpu, wall) in best.items():
            print(f"| {label} | `{name}` | {cpu:.0f} | {wall:.0f} | {cpu / reference:.2f}× |")
    for cache in backends.values():
        cache.delete_many(keys)


if __name__ == "__main__":
    main()
