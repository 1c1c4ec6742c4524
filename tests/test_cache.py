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


def test_an_error_reply_is_raised_after_every_reply_is_read():
    """The connection stays in step: the next round trip gets its own replies, not leftovers."""
    import pytest
    from redis.exceptions import ResponseError

    from visrec.cache import round_trip

    cache = make_cache()
    client = cache._cache.get_client(write=True)
    with pytest.raises(ResponseError):
        round_trip(client, [("SET", "rt-a", b"x"), ("INCR", "rt-a"), ("GET", "rt-a")])
    assert round_trip(client, [("GET", "rt-a"), ("DEL", "rt-a")]) == [b"x", 1]
    assert cache.get_many([]) == {} and cache._cache.set_many_then_get_many([({"rt-b": 1}, 5)], []) == {}
    assert cache._cache.get_many(["rt-b"]) == {"rt-b": 1}


def test_a_dropped_connection_is_replaced_once():
    """A pooled connection that Redis closed (a restart, an idle timeout) costs no error."""
    cache = make_cache()
    cache.set_many({"kept": 7}, 30)
    client = cache._cache.get_client(write=True)
    connection = client.connection_pool.get_connection()
    client_id = connection.send_command("CLIENT", "ID") or connection.read_response()
    client.connection_pool.release(connection)
    other = type(client)(connection_pool=type(client.connection_pool)(**client.connection_pool.connection_kwargs))
    assert other.execute_command("CLIENT", "KILL", "ID", client_id) == 1
    assert cache.get_many(["kept"]) == {"kept": 7}  # on a new connection
    assert len(client.connection_pool._available_connections) == 1
    connection = client.connection_pool.get_connection()
    assert (connection.send_command("CLIENT", "ID") or connection.read_response()) != client_id
    client.connection_pool.release(connection)
    other.close()
