"""Switching the served model version of a kind atomically (one flag, one transaction)."""
from __future__ import annotations

import logging
import time

from django.db import transaction
from django.utils import timezone

from ...models import ModelVersion
from .generation import bump_embeddings_generation, embeddings_generation

logger = logging.getLogger(__name__)

#: Longest time a process serves its memo of a version without asking the database, for
#: hosts whose cache is per process (then a switch elsewhere does not reach the generation
#: number this process reads).
SERVED_MEMO_SECONDS = 5.0
#: kind -> (embeddings generation, monotonic time read, version)
_served: dict[str, tuple[int, float, ModelVersion | None]] = {}


def active_version(kind: str) -> ModelVersion | None:
    """The served version of a kind, or ``None`` (one query; see :func:`served_version`)."""
    return ModelVersion.objects.filter(kind=kind, is_active=True).first()


def served_version(kind: str, generation: int | None = None) -> ModelVersion | None:
    """:func:`active_version` for request paths, without a query on most requests.

    Memoised in this process while the embeddings generation is unchanged (every switch
    bumps it, in the cache all processes share) and for at most ``SERVED_MEMO_SECONDS``;
    saving or deleting any version in this process forgets the memo at once.

    Args:
        generation: the current :func:`~visrec.services.serving.generation.embeddings_generation`
            when the caller has already read it (saves a cache round trip).
    """
    if generation is None:
        generation = embeddings_generation()
    now = time.monotonic()
    memo = _served.get(kind)
    if memo is not None and memo[0] == generation and now - memo[1] < SERVED_MEMO_SECONDS:
        return memo[2]
    version = active_version(kind)
    _served[kind] = (generation, now, version)
    return version


def forget_served_versions(*args, **kwargs) -> None:
    """Drops this process's memo of served versions (a ``ModelVersion`` was saved or deleted)."""
    _served.clear()


def activate_version(version: ModelVersion, *, note: str = "") -> None:
    """Makes ``version`` the only active version of its kind.

    The caller has fully built the version (vectors written, indexes created): readers,
    who always filter on the active version, see the old one until this commits.
    """
    with transaction.atomic():
        list(ModelVersion.objects.select_for_update().filter(kind=version.kind, is_active=True))
        ModelVersion.objects.filter(kind=version.kind, is_active=True).exclude(pk=version.pk).update(is_active=False)
        version.is_active = True
        version.activated_at = timezone.now()
        if note:
            version.notes = note
        version.save(update_fields=["is_active", "activated_at", "notes"])
        transaction.on_commit(bump_embeddings_generation)
    logger.info("visrec: %s %s is now served", version.kind, version.name)
