"""CPU per cache call: Django's Redis cache against ``visrec.cache.RedisCache`` (one client per pool).

    python bench/cache_client.py [--calls 5000]

Both backends talk to the same Redis (the demo's, started if needed) in the same run, one
after the other and then again; the table gives CPU and wall microseconds per call and the
ratio to Django's backend (the reference). A third row is visrec's backend taking a
connection from redis-py's pool and giving it back on every call, as it did before each
thread kept its own (:func:`visrec.cache.thread_connection`).
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


class PooledPerCall:
    """``visrec.cache.RedisCache`` with a connection taken from the pool for each call and given
    back after it, in place of the thread's own (the earlier behaviour, for comparison)."""

    def __init__(self, cache) -> None:
        self.cache, self.taken = cache, []

    def _take(self, pool):
        self.taken.append((pool, pool.get_connection()))
        return self.taken[-1][1]

    def call(self, op):
        import visrec.cache as module

        kept, module.thread_connection = module.thread_connection, self._take
        try:
            return op(self.cache)
        finally:
            module.thread_connection = kept
            while self.taken:
                pool, connection = self.taken.pop()
                pool.release(connection)


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
    django_cache, visrec_cache = DjangoRedisCache(location, params), RedisCache(location, params)
    pooled = PooledPerCall(RedisCache(location, params))
    reference = "`django.core.cache.backends.redis.RedisCache`"
    # (row label, cache, how it calls an operation)
    backends = [(reference, django_cache, lambda op: op),
                ("`visrec.cache.RedisCache`", visrec_cache, lambda op: op),
                ("`visrec.cache.RedisCache`, a pooled connection per call", pooled,
                 lambda op: lambda _cache: pooled.call(op))]
    keys = [f"k{i}" for i in range(10)]
    django_cache.set_many({key: {"card": key} for key in keys}, 60)
    ops = {"get_many (10 keys)": lambda c: c.get_many(keys), "get (1 key)": lambda c: c.get(keys[0])}
    print(f"command: python bench/cache_client.py --calls {args.calls}")
    print()
    print("| operation | backend | CPU µs per call | wall µs per call | CPU ratio to Django's |")
    print("|---|---|---:|---:|---:|")
    for label, op in ops.items():
        results = {name: [] for name, _, _ in backends}
        for _ in range(2):  # alternate, twice: keep the better of each
            for name, cache, calling in backends:
                results[name].append(measure(cache, args.calls, calling(op)))
        best = {name: min(runs) for name, runs in results.items()}
        for name, (cpu, wall) in best.items():
            print(f"| {label} | {name} | {cpu:.0f} | {wall:.0f} | {cpu / best[reference][0]:.2f}× |")
    django_cache.delete_many(keys)


if __name__ == "__main__":
    main()
