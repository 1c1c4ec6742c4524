"""visrec.cache.RedisCache: Django's Redis cache, one client per connection pool."""
from __future__ import annotations

import logging

import pytest
from django.conf import settings
from redis.exceptions import ConnectionError, ResponseError

from visrec.cache import RedisCache


def make_cache(**options) -> RedisCache:
    return RedisCache(settings.CACHES["default"]["LOCATION"], {"KEY_PREFIX": "visrec-cache-test", "OPTIONS": options})


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


def client_id(client) -> int:
    from visrec.cache import round_trip

    return round_trip(client, [("CLIENT", "ID")])[0]


def test_an_error_reply_is_raised_after_every_reply_is_read():
    """The connection stays in step and in use: the next round trip on it gets its own replies."""
    from visrec.cache import round_trip

    cache = make_cache()
    client = cache._cache.get_client(write=True)
    before = client_id(client)
    with pytest.raises(ResponseError):
        round_trip(client, [("SET", "rt-a", b"x"), ("INCR", "rt-a"), ("GET", "rt-a")])
    assert client_id(client) == before  # not dropped: every reply had been read
    assert round_trip(client, [("GET", "rt-a"), ("DEL", "rt-a")]) == [b"x", 1]
    replies = round_trip(client, [("INCR", "rt-b"), ("HSET", "rt-b")], raise_errors=False)
    assert replies[0] == 1 and isinstance(replies[1], ResponseError)
    assert cache.get_many([]) == {} and cache._cache.set_many_then_get_many([({"rt-b": 1}, 5)], []) == {}
    assert cache._cache.get_many(["rt-b"]) == {"rt-b": 1}


def fail_next_calls(monkeypatch, client, method: str, error: BaseException) -> list:
    """Makes the pool's connections raise ``error`` from ``method``, once for each item of the
    returned list (append more to fail more calls)."""
    connection_class = client.connection_pool.connection_class
    real = getattr(connection_class, method)
    failures = [1]

    def failing(self, *args, **kwargs):
        if failures:
            failures.pop()
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(connection_class, method, failing)
    return failures


def test_a_failed_connection_is_replaced_once_then_the_error_raised(monkeypatch):
    """A pooled connection that fails (Redis restarted, an idle connection dropped) is closed and
    the commands go again on a new one; a second failure reaches the caller."""
    cache = make_cache()
    cache.set_many({"kept": 7}, 30)
    client = cache._cache.get_client(write=True)
    before = client_id(client)
    failures = fail_next_calls(monkeypatch, client, "send_packed_command", ConnectionError("dropped"))
    assert cache.get_many(["kept"]) == {"kept": 7}
    assert client_id(client) != before  # on a new connection
    failures[:] = [1, 1]
    with pytest.raises(ConnectionError):
        cache.get_many(["kept"])
    assert cache.get_many(["kept"]) == {"kept": 7}


def test_an_interrupted_round_trip_never_leaves_a_reply_unread(monkeypatch):
    cache = make_cache()
    cache.set_many({"kept": 7}, 30)
    client = cache._cache.get_client(write=True)
    before = client_id(client)
    fail_next_calls(monkeypatch, client, "read_response", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        cache.get_many(["kept"])
    assert client_id(client) != before  # the connection with the unread reply was closed
    assert cache.get_many(["kept"]) == {"kept": 7}


def test_failed_writes_are_logged_and_the_read_still_answers(monkeypatch, caplog):
    """A write that Redis refuses (out of memory, a read-only replica) loses the entry, not the read."""
    cache = make_cache()
    cache.set_many({"kept": 7}, 30)
    backend = cache._cache
    monkeypatch.setattr(backend, "_set_commands", lambda data, timeout: [("HSET", key) for key in data])
    with caplog.at_level(logging.WARNING, logger="visrec.cache"):
        assert backend.set_many_then_get_many([({cache.make_key("new"): 1}, 30)], [cache.make_key("kept")]) == {
            cache.make_key("kept"): 7}
    assert "1 of 1 cache writes failed" in caplog.text


def test_each_thread_keeps_its_own_connection_and_gives_it_back_when_it_ends(monkeypatch):
    import gc
    import threading

    from visrec import cache as cache_module

    cache = make_cache()
    client = cache._cache.get_client(write=True)
    pool = client.connection_pool
    mine = cache_module.thread_connection(pool)
    assert cache_module.thread_connection(pool) is mine and client_id(client) == client_id(client)
    assert mine in pool._in_use_connections  # kept out of the pool while this thread lives

    theirs = {}

    def other_thread():
        theirs["connection"] = cache_module.thread_connection(pool)
        theirs["id"] = client_id(client)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    gc.collect()
    assert theirs["connection"] is not mine and theirs["id"] != client_id(client)
    assert theirs["connection"] not in pool._in_use_connections  # given back when its thread ended

    # A forked child (another pid) never writes on its parent's socket.
    monkeypatch.setattr(cache_module.os, "getpid", lambda: -1)
    assert cache_module.thread_connection(pool) is not mine
    assert cache.get_many(["nothing"]) == {}


@pytest.mark.parametrize("options", [{"max_connections": 1},
                                     {"max_connections": 1, "pool_class": "redis.BlockingConnectionPool",
                                      "timeout": 1}],
                         ids=["max_connections=1", "blocking pool"])
def test_a_small_or_blocking_pool_lends_a_connection_per_round_trip(options):
    """A kept connection would leave Django's own calls on the same pool without one."""
    from visrec import cache as cache_module

    cache = make_cache(**options)
    pool = cache._cache.get_client(write=True).connection_pool
    assert not cache_module.pins(pool)
    assert cache.get("x") is None  # Django's path
    cache.set_many({"x": 1}, 30)  # visrec's round trips
    assert cache.get_many(["x", "y"]) == {"x": 1}
    assert cache.get("x") == 1 and cache.incr("x") == 2  # Django's path still has its connection
    cache.delete("x")


def test_the_default_pool_lends_each_thread_one():
    from visrec import cache as cache_module

    assert cache_module.pins(make_cache()._cache.get_client(write=True).connection_pool)
