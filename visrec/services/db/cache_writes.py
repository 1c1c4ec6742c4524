"""Cache writes that go out with this process's next cache read instead of on their own.

A "similar" list that missed the cache ends with a write; waiting for it costs a cache round
trip on the request's path (0.25-0.3 ms with Redis on loopback here, a sixth of a 100,000
product query). Writes queued with :func:`defer` go out with the next read through
:func:`read_many` (one pipelined round trip with :class:`visrec.cache.RedisCache`; other
backends are written at once, since they cannot combine the two), at the end of the request (``request_finished``, after the
response went out), after a Celery task, at exit, or once ``MAX_PENDING`` are queued.

Only entries that carry their own validity may wait: similar lists are stored with the
embeddings generation they were computed under, and a reader compares it with the current
one, so an entry that goes out late (after a bump) is a miss, never a stale answer. A queued
write that never goes out (the process is killed) is a lost entry: a later miss.
"""
from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable

from .cache_guard import cache

logger = logging.getLogger(__name__)

MAX_PENDING = 200

_lock = threading.Lock()
_pending: dict[str, tuple[object, int | None]] = {}


def defer(key: str, value: object, timeout: int | None) -> None:
    """Queues ``cache.set(key, value, timeout)`` for this process's next round trip; with a
    cache backend that cannot send writes with a read (not :class:`visrec.cache.RedisCache`),
    sets it now (a queued write would only cost another request a round trip)."""
    if _combined() is None:
        cache.set(key, value, timeout)
        return
    with _lock:
        _pending[key] = (value, timeout)
        full = len(_pending) >= MAX_PENDING
    if full:
        flush()


def pending_count() -> int:
    """How many writes wait (for tests and diagnostics)."""
    return len(_pending)


def read_many(keys: Iterable[str]) -> dict:
    """``cache.get_many(keys)``, sending the queued writes first in the same round trip."""
    keys = list(keys)
    writes = _take()
    if writes:
        combined = _combined()
        if combined is not None:
            return combined(writes, keys)
        _set_all(writes)  # the cache backend changed since they were queued (settings in tests)
    return cache.get_many(keys)


def flush(**_signal_kwargs) -> None:
    """Sends the queued writes now; a cache error is logged (the entries are lost, not the caller's work)."""
    writes = _take()
    try:
        _set_all(writes)
    except Exception:  # noqa: BLE001 - a cache that is down must not fail the response that already went out
        logger.warning("visrec: %d deferred cache writes lost", sum(map(len, writes.values())), exc_info=True)


def _combined():
    """The cache backend's "writes then a read in one round trip" method, or None."""
    return getattr(cache, "set_many_then_get_many", None)


def _set_all(writes: dict[int | None, dict[str, object]]) -> None:
    for timeout, entries in writes.items():
        cache.set_many(entries, timeout)


def _take() -> dict[int | None, dict[str, object]]:
    """The queued writes, grouped by timeout, and an empty queue."""
    with _lock:
        taken = list(_pending.items())
        _pending.clear()
    grouped: dict[int | None, dict[str, object]] = {}
    for key, (value, timeout) in taken:
        grouped.setdefault(timeout, {})[key] = value
    return grouped


atexit.register(flush)
