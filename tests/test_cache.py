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


def test_set_many_sets_each_key_with_its_expiry_or_none_or_deletes_with_0():
    cache = make_cache()
    client = cache._cache.get_client(write=True)
    cache.set_many({"a": 1, "b": {"c": 2}}, 30)
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": {"c": 2}}
    assert 0 < client.ttl(cache.make_key("a")) <= 30 and 0 < client.ttl(cache.make_key("b")) <= 30
    cache.set_many({"a": 3}, None)
    assert cache.get("a") == 3 and client.ttl(cache.make_key("a")) == -1  # no expiry
    cache.set_many({"a": 4, "b": 5}, 0)
    assert cache.get_many(["a", "b"]) == {}
