"""visrec.cache.RedisCache: Django's Redis cache, one client per connection pool."""
from __future__ import annotations

from django.conf import settings

from visrec.cache import RedisCache


def make_cache() -> RedisCache:
    return RedisCache(settings.CACHES["default"]["LOCATION"], {"KEY_PREFIX": "visrec-cache-test"})


def test_one_client_per_pool_and_the_cache_still_works():
    cache = make_cache()
    assert cache._cache.get_client("a") is cache._cache.get_client("b")
    cache.set_many({"x": {"n": 1}, "y": [2]}, 30)
    assert cache.get_many(["x", "y", "z"]) == {"x": {"n": 1}, "y": [2]}
    cache.delete_many(["x", "y"])
    assert cache.get("x") is None


def test_the_demo_uses_it():
    assert settings.CACHES["default"]["BACKEND"] == "visrec.cache.RedisCache"
