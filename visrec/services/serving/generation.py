"""A counter that changes whenever stored vectors or the served version change.

Cached results (similar products, search) are stored with it, and a process's memo of the
served versions is keyed on it, so one increment invalidates them all without tracking
which entries a change touched. It starts at a random number, so a cleared or evicted
cache never brings back a number that entries or memos were stored under.
"""
from __future__ import annotations

import secrets

from ..db.cache_guard import cache
from ..db.cache_writes import read_many

GENERATION_KEY = "visrec:embeddings-generation"


def embeddings_generation() -> int:
    """The current generation number."""
    return cache.get_or_set(GENERATION_KEY, _fresh_start, None)


def generation_and_entry(key: str | None) -> tuple[int, object]:
    """The current generation and the cache entry under ``key`` (None without a key), in one
    cache round trip: callers compare the entry with the generation it was stored under."""
    if key is None:
        return embeddings_generation(), None
    found = read_many([GENERATION_KEY, key])  # also sends this process's deferred writes
    return found.get(GENERATION_KEY) or embeddings_generation(), found.get(key)


def bump_embeddings_generation() -> None:
    """Invalidates cached results: called after vectors are written or a version switches."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:
        cache.set(GENERATION_KEY, _fresh_start(), None)


def _fresh_start() -> int:
    return secrets.randbits(48)
