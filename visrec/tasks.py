"""Celery tasks: thin wrappers over :mod:`visrec.services`, JSON arguments only.

Queues come from ``VISREC`` through :func:`visrec.celery.route_task`.
"""
from __future__ import annotations

from dataclasses import asdict

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .services import health
from .services.runs import recorded_run
from .services.catalogue import extraction, outbox

#: Errors worth retrying: the database or storage was briefly unreachable.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(name="visrec.health_check")
def health_check() -> dict:
    """Reports what a worker sees of the database and pgvector (a smoke test for a deployment)."""
    return health.database_health()


@shared_task(
    name="visrec.embed_images",
    acks_late=True,               # a worker killed mid-batch leaves the message to be redelivered
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    max_retries=5,
)
def embed_images(image_ids: list, force: bool = False) -> dict:
    """Embeds host images (idempotent on content hash and model version); serves the
    version once the whole catalogue has vectors."""
    report = extraction.embed_images(image_ids, force=force)
    extraction.activate_if_complete()
    return {k: v for k, v in asdict(report).items() if k != "failures"} | {
        "failures": {str(k): v for k, v in report.failures.items()}
    }


@shared_task(name="visrec.refresh_product_vectors", autoretry_for=TRANSIENT_ERRORS, max_retries=5)
def refresh_product_vectors(product_ids: list) -> int:
    """Recomputes product vectors after images were deleted."""
    return extraction.refresh_product_vectors(product_ids)


@shared_task(name="visrec.sweep_pending_work")
def sweep_pending_work() -> int:
    """Every minute: sends again image work that no worker finished in time (broker down, worker killed)."""
    return outbox.sweep()


@shared_task(name="visrec.index_catalogue")
def index_catalogue(mode: str = "missing", chunk_size: int = 256) -> int:
    """Queues the catalogue's images for extraction in chunks; returns how many."""
    with recorded_run("index_catalogue") as run:
        ids = extraction.images_to_index(mode)
        for chunk in extraction.chunked(ids, chunk_size):
            embed_images.delay(chunk, force=mode != "missing")
        if ids:
            run.done(f"{len(ids)} images queued ({mode})", images=len(ids), mode=mode)
        else:
            run.skipped(f"no images to index ({mode})", images=0, mode=mode)
    return len(ids)


@shared_task(name="visrec.train_embedder", acks_late=False)
def train_embedder() -> dict:
    """Nightly: fine-tunes the embedder; switches only if not worse (see services.finetuning)."""
    from .services.catalogue import finetuning

    with recorded_run("train_embedder") as run:
        try:
            outcome = finetuning.train_embedder()
        except finetuning.NothingToTrain as exc:
            run.skipped(str(exc))
            return {"promoted": False, "reason": str(exc)}
        result = asdict(outcome)
        run.done(_verdict(result.get("promoted"), result.get("version"), result.get("reason", "")), **result)
    return result


@shared_task(name="visrec.train_recommender", acks_late=False)
def train_recommender() -> dict:
    """Nightly: trains "for you" on recent events; switches only if Recall@20 is not worse."""
    from .services.foryou import training as recommender_training

    with recorded_run("train_recommender") as run:
        try:
            version = recommender_training.train_recommender()
        except recommender_training.NothingToLearn as exc:
            run.skipped(str(exc))
            return {"promoted": False, "reason": str(exc)}
        run.done(_verdict(version.is_active, version.name, version.notes), version=version.name,
                 promoted=version.is_active)
    return {"version": version.name, "promoted": version.is_active, "notes": version.notes, "metrics": version.metrics}


@shared_task(name="visrec.purge_expired_events", autoretry_for=TRANSIENT_ERRORS, max_retries=3)
def purge_expired_events() -> int:
    """Nightly: deletes raw events older than RETENTION_DAYS, in batches."""
    from .services.privacy.shopper_data import purge_expired_events as purge

    with recorded_run("purge_expired_events") as run:
        deleted = purge()
        run.done(f"{deleted} expired events deleted", deleted=deleted)
    return deleted


def _verdict(promoted: bool | None, version: str | None, notes: str) -> str:
    """One line for the health page: what a training run produced and whether it is served."""
    head = f"{version} promoted" if promoted else f"{version} trained, not promoted" if version else "not promoted"
    return f"{head}: {notes}" if notes else head
