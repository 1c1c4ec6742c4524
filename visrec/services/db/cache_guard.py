"""visrec's use of Django's cache, degrading instead of failing when the cache is down.

Everything visrec keeps in the cache can be recomputed from PostgreSQL (lists, cards, the
served-version counter, per-shopper lists), so an outage of the cache (Redis restarting,
a network partition) must cost speed, not answers: through :data:`cache`, a read that fails
returns its default (a miss) and a write that fails is dropped, both logged; after a
failure the cache is not asked again for ``BREAKER_SECONDS`` (each request would otherwise
wait for a connection timeout), then it is tried again. Errors that are the caller's
(``ValueError`` from ``incr`` of a missing key, a ``TypeError``) pass through.
"""
from __future__ import annotations

import logging
import threading
import time

from django.core.cache import cache as django_cache

logger = logging.getLogger(__name__)

#: Seconds the cache is left alone after it failed.
BREAKER_SECONDS = 5.0
#: What a method returns while the cache is unavailable (reads miss, writes do nothing).
DEFAULTS = {"get_many": dict, "set_many_then_get_many": dict, "add": bool, "has_key": bool,
            "delete_many": type(None), "set_many": list}
#: Errors of the caller, not of the cache: raised as they are.
CALLER_ERRORS = (ValueError, TypeError, KeyError, AttributeError)

_lock = threading.Lock()
_down_until = 0.0


def available() -> bool:
    """Whether the cache is to be asked now (not within ``BREAKER_SECONDS`` of a failure)."""
    return time.monotonic() >= _down_until


def reset() -> None:
    """Closes the breaker (tests; the cache is asked again at once)."""
    global _down_until
    _down_until = 0.0


def _tripped(operation: str, exc: Exception) -> None:
    global _down_until
    with _lock:
        first = available()
        _down_until = time.monotonic() + BREAKER_SECONDS
    if first:
        logger.warning("visrec: cache unavailable (%s: %s: %s); serving from the database for %.0f s",
                       operation, exc.__class__.__name__, exc, BREAKER_SECONDS)


def _default(name: str, args: tuple, kwargs: dict):
    if name == "get":
        return kwargs.get("default", args[1] if len(args) > 1 else None)
    if name == "get_or_set":
        return None
    return DEFAULTS.get(name, type(None))()


class GuardedCache:
    """Django's default cache, each method guarded as the module says."""

    def __getattr__(self, name: str):
        target = getattr(django_cache, name)
        if not callable(target):
            return target

        def guarded(*args, **kwargs):
            if not available():
                return _default(name, args, kwargs)
            try:
                return target(*args, **kwargs)
            except CALLER_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - any outage of any backend
                _tripped(name, exc)
                return _default(name, args, kwargs)

        return guarded


#: Use instead of ``django.core.cache.cache`` everywhere in visrec.
cache = GuardedCache()
