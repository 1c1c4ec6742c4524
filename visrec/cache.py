"""An optional cache backend: Django's Redis cache without a new client object per operation.

Django's ``RedisCache`` builds a ``redis.Redis`` client for every cache call (its
connections are pooled, but building the client and its response-callback table costs
about 0.15 ms of CPU per call here, a third to a half of the call: ``bench/cache_client.py``).
On a hot path that reads the
cache twice per request ("similar" lists, product cards) that is a sizeable share of the
request. This backend keeps one client per connection pool; ``redis.Redis`` clients are
thread-safe. Use it in place of Django's::

    CACHES = {"default": {"BACKEND": "visrec.cache.RedisCache", "LOCATION": "redis://..."}}

It also sends writes and a read in one pipelined round trip
(:meth:`RedisCache.set_many_then_get_many`), which :mod:`visrec.services.db.cache_writes` uses
so that a "similar" list's write does not wait on the request's path; ``get_many``,
``set_many`` and that round trip write the commands on a pooled connection directly
(:func:`round_trip`) rather than through redis-py's pipeline machinery, on a connection each
thread keeps (:func:`thread_connection`).
"""
from __future__ import annotations

import logging
import os
import threading

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from redis import BlockingConnectionPool
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

logger = logging.getLogger(__name__)


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

    def set_many_then_get_many(self, writes: list[tuple[dict, int | None]], keys: list) -> dict:
        """Each ``(data, timeout)`` of ``writes`` set, then ``keys`` read: one pipelined round
        trip where reads and writes go to the same server (two calls otherwise)."""
        reader, writer = self.get_client(None), self.get_client(None, write=True)
        if reader is not writer:  # reads go to a replica
            for data, timeout in writes:
                self.set_many(data, timeout)
            return self.get_many(keys)
        commands = [command for data, timeout in writes for command in self._set_commands(data, timeout)]
        replies = round_trip(reader, [*commands, *([("MGET", *keys)] if keys else [])], raise_errors=False)
        failed = [reply for reply in replies[:len(commands)] if isinstance(reply, Exception)]
        if failed:  # the writes are lost, not the read (Redis out of memory, a read-only replica)
            logger.warning("visrec: %d of %d cache writes failed: %s", len(failed), len(commands), failed[0])
        if not keys:
            return {}
        if isinstance(replies[-1], Exception):
            raise replies[-1]
        return self._found(keys, replies[-1])

    def get_many(self, keys):
        keys = list(keys)
        if not keys:
            return {}
        return self._found(keys, round_trip(self.get_client(None), [("MGET", *keys)])[0])

    def _found(self, keys: list, values: list) -> dict:
        """``{key: value}`` of an ``MGET``'s reply, the keys it did not find left out."""
        return {key: self._serializer.loads(value) for key, value in zip(keys, values) if value is not None}

    def set_many(self, data, timeout):
        """One ``SET`` with its expiry per key in one round trip, without a transaction:
        Django's ``MULTI``, ``MSET`` and an ``EXPIRE`` per key cost half as much again in
        client CPU for ten product cards (timed ad hoc). Each key is still set atomically
        with its expiry; a cache needs no more."""
        if data:
            round_trip(self.get_client(None, write=True), list(self._set_commands(data, timeout)))

    def _set_commands(self, data: dict, timeout: int | None):
        """The commands that set ``data`` with a backend ``timeout`` (seconds; ``None``: no
        expiry; 0: delete, as Django's backend does)."""
        for key, value in data.items():
            if timeout == 0:
                yield ("DEL", key)
            elif timeout is None:
                yield ("SET", key, self._serializer.dumps(value))
            else:
                yield ("SET", key, self._serializer.dumps(value), "EX", timeout)


class _Pinned:
    """A thread's own connection of a pool, given back to the pool when the thread ends."""

    def __init__(self, pool) -> None:
        self.pool, self.pid = pool, os.getpid()
        self.connection = pool.get_connection()

    def __del__(self) -> None:
        if self.pid == os.getpid():  # never a parent process's socket in a forked child
            try:
                self.pool.release(self.connection)
            except Exception:  # noqa: BLE001 - interpreter shutdown, a pool already reset
                pass


_threads = threading.local()

#: A pool allowing at least this many connections (redis-py's default is 100) lends each
#: thread one to keep; a smaller or blocking one lends a connection per round trip, since a
#: kept one would leave Django's own calls on the same pool without one (redis-py's
#: MaxConnectionsError, or a blocking pool's wait and timeout).
PIN_MIN_CONNECTIONS = 100


def pins(pool) -> bool:
    """Whether :func:`round_trip` keeps a connection of ``pool`` per thread."""
    return not isinstance(pool, BlockingConnectionPool) and pool.max_connections >= PIN_MIN_CONNECTIONS


def thread_connection(pool):
    """This thread's connection of ``pool``: taken from the pool on first use and kept.

    Taking a connection from redis-py 8's pool and giving it back cost 0.01-0.05 ms of CPU
    per round trip (a lock, a health check, observability counters, an event;
    ``bench/cache_client.py``), up to a quarter of an ``MGET``'s. A server's threads are few and long-lived, so each keeps one
    (per process: a forked child takes its own).
    """
    held = getattr(_threads, "pinned", None)
    if held is None:
        held = _threads.pinned = {}
    pinned = held.get(id(pool))
    if pinned is None or pinned.pool is not pool or pinned.pid != os.getpid():
        pinned = held[id(pool)] = _Pinned(pool)
    return pinned.connection


def round_trip(client, commands: list[tuple], *, raise_errors: bool = True) -> list:
    """The replies to ``commands``, sent together on this thread's connection of ``client``'s
    pool (:func:`thread_connection`; one taken and given back where the pool is small,
    :func:`pins`).

    What a ``transaction=False`` pipeline does, without its command stack, per-command
    callbacks and retry wrappers: 0.16 against 0.25 ms of CPU for a ``SET`` and an ``MGET``,
    0.15 against 0.20 ms for an ``MGET`` alone (redis-py 8 here, timed ad hoc). Every reply
    is read before an error reply is raised, so the connection stays in step. A connection
    that fails (Redis restarted, an idle connection dropped) is closed and the commands go
    once more on it, connected again (a single immediate retry, where a redis-py client would
    follow its ``retry`` setting); a second failure raises. ``raise_errors=False``: error
    replies come back in the list, as exceptions, instead of the first being raised.
    """
    pool = client.connection_pool
    pinned = pins(pool)
    packed = None
    for attempt in (1, 2):
        connection = thread_connection(pool) if pinned else pool.get_connection()
        try:
            packed = packed or connection.pack_commands(commands)
            connection.send_packed_command(packed, check_health=attempt > 1)
            replies, error = [], None
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except ResponseError as exc:
                    replies.append(exc)
                    error = error or exc
        except (ConnectionError, TimeoutError):
            connection.disconnect()
            if attempt == 2:
                raise
            continue
        except BaseException:
            connection.disconnect()  # a reply may be left unread: never reuse the connection
            raise
        finally:
            if not pinned:
                pool.release(connection)
        if error is not None and raise_errors:
            raise error
        return replies
    raise AssertionError("unreachable")


class RedisCache(DjangoRedisCache):
    """``django.core.cache.backends.redis.RedisCache`` reusing its clients (see the module)."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

    def validate_key(self, key) -> None:
        """No check: Django's warns of keys that memcached would refuse (spaces, over 250
        characters), which Redis takes; on a hot path it costs a few microseconds a key."""

    def set_many_then_get_many(self, writes: dict, keys, version=None) -> dict:
        """``set_many(entries, timeout)`` for each ``timeout: entries`` of ``writes``, then
        ``get_many(keys)``, in one round trip (used by :mod:`visrec.services.db.cache_writes`)."""
        made_writes = [({self.make_and_validate_key(key, version=version): value for key, value in entries.items()},
                        self.get_backend_timeout(timeout)) for timeout, entries in writes.items()]
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        found = self._cache.set_many_then_get_many(made_writes, list(made))
        return {made[key]: value for key, value in found.items()}
