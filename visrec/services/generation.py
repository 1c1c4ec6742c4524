"""A counter that changes whenever stored vectors or the served version change.

Cached results (similar products, search) put it in their keys, so one increment
invalidates them all without tracking which entries a change touched.
"""
from __future__ import annotations

from django.core.cache import cache

GENERATION_KEY = "visrec:embeddings-generation"


def embeddings_generation() -> int:
    """The current generation number."""
    return cache.get_or_set(GENERATION_KEY, 1, None)


def bump_embeddings_generation() -> None:
    """Invalidates cached results: called after vectors are written or a version switches."""
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:
        cache.set(GENERATION_KEY, 2, None)
