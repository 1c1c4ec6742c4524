"""Switching the served model version of a kind atomically (one flag, one transaction)."""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from ..models import ModelVersion
from .generation import bump_embeddings_generation

logger = logging.getLogger(__name__)


def active_version(kind: str) -> ModelVersion | None:
    """The served version of a kind, or ``None``."""
    return ModelVersion.objects.filter(kind=kind, is_active=True).first()


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
