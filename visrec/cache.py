"""An optional cache backend: Django's Redis cache without a new client object per operation.

Django's ``RedisCache`` builds a ``redis.Redis`` client for every cache call (its
connections are pooled, but building the client and its response-callback table costs
about 0.15 ms of CPU per call here, a third to a half of the call: ``bench/cache_client.py``).
On a hot path that reads the
cache twice per request ("similar" lists, product cards) that is a sizeable share of the
request. This backend keeps one client per connection pool; ``redis.Redis`` clients are
thread-safe. Use it in place of Django's::

    CACHES = {"default": {"BACKEND": "visrec.cache.RedisCache", "LOCATION": "redis://..."}}
"""
from __future__ import annotations

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ReusingRedisCacheClient(RedisCacheClient):
    """Django's Redis cache client with one ``redis.Redis`` per connection pool, built once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    """``django.core.cache.backends.redis.RedisCache`` reusing its clients (see the module)."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
