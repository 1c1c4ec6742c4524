"""Celery tasks: thin wrappers over :mod:`visrec.services`, JSON arguments only."""
from __future__ import annotations

from celery import shared_task

from .services import health


@shared_task(name="visrec.health_check")
def health_check() -> dict:
    """Reports what a worker sees of the database and pgvector (a smoke test for a deployment)."""
    return health.database_health()
