"""The outbox of image work: recorded in PostgreSQL with the host's save, queued to Celery after.

Saving or deleting a host image writes a :class:`~visrec.models.PendingWork` row in the
host's own transaction, and once that commits the work is sent to Celery. Sending never
raises: with the broker unreachable (Redis down, a web process without Celery configured)
the row stays, and the periodic sweep (:func:`sweep`, the ``visrec.sweep_pending_work``
task every minute) sends again what no worker has finished within
``PENDING_WORK_RETRY_SECONDS``: after a broker outage, and after a worker killed mid-task
whose message would otherwise wait for the broker's visibility timeout. The work deletes
its rows when done (:func:`finished`); doing it twice writes nothing twice (extraction is
idempotent on the file's hash and the model version). ``visrec_index`` does the recorded
work in process, no broker needed.

Bulk loads (imports) record rows without sending one task per image inside
:func:`held_back`, then do the work in bulk (``visrec_index``).
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from ...celery import queue_for
from ...conf import visrec_settings
from ...models import PendingWork, WorkKind

logger = logging.getLogger(__name__)

#: Task that does each kind of work, and its argument.
TASKS = {WorkKind.EMBED: "visrec.embed_images", WorkKind.REFRESH: "visrec.refresh_product_vectors"}
#: Ids per task the sweep sends.
CHUNK = 256
#: Seconds one attempt to reach the broker may take.
CONNECT_TIMEOUT = 2.0

_held_back: contextvars.ContextVar[bool] = contextvars.ContextVar("visrec_outbox_held_back", default=False)


def record(kind: str, ids: Iterable) -> list:
    """Records work on images (``embed``) or products (``refresh``) in the caller's transaction,
    and sends it to Celery once that commits (unless :func:`held_back`). Returns the ids."""
    ids = [i for i in dict.fromkeys(ids) if i is not None]
    if not ids:
        return ids
    field = "image_id" if kind == WorkKind.EMBED else "product_id"
    PendingWork.objects.bulk_create([PendingWork(kind=kind, **{field: i}) for i in ids])
    if not _held_back.get():
        transaction.on_commit(lambda: send(kind, ids))
    return ids


def send(kind: str, ids: list, **options) -> bool:
    """Queues one task for ``ids``; ``False`` (logged, nothing raised) when the broker is unreachable.

    One connection attempt, no retries (Celery's defaults retry for seconds: a dashboard
    upload would hang on them), at most ``CONNECT_TIMEOUT`` seconds to connect.
    """
    from celery import current_app

    name = TASKS[kind]
    try:
        with current_app.connection_for_write(connect_timeout=CONNECT_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=0)
            current_app.send_task(name, args=[list(ids)], kwargs=options, queue=queue_for(name), retry=False,
                                  connection=connection)
    except Exception as exc:  # noqa: BLE001 - a broker outage must never break the host's save
        logger.warning("visrec: could not queue %s for %d ids (%s: %s); the pending-work sweep will retry",
                       name, len(ids), exc.__class__.__name__, exc)
        return False
    return True


def finished(kind: str, ids: Iterable, started: dt.datetime) -> int:
    """Deletes the rows of work on ``ids`` recorded before ``started`` (when the work read its
    inputs): a save after that keeps its row. Returns how many were deleted."""
    ids = list(ids)
    if not ids:
        return 0
    field = "image_id__in" if kind == WorkKind.EMBED else "product_id__in"
    deleted, _ = PendingWork.objects.filter(kind=kind, created_at__lte=started, **{field: ids}).delete()
    return deleted


def pending_ids(kind: str) -> list:
    """Ids with recorded work of ``kind`` (for ``visrec_index``), oldest first."""
    field = "image_id" if kind == WorkKind.EMBED else "product_id"
    rows = PendingWork.objects.filter(kind=kind).exclude(**{f"{field}__isnull": True}).order_by("created_at")
    return list(dict.fromkeys(rows.values_list(field, flat=True)))


def sweep(*, now: dt.datetime | None = None, older_than: dt.timedelta | None = None) -> int:
    """Sends again the work not done within ``older_than`` (``PENDING_WORK_RETRY_SECONDS``) of
    being recorded, then of each sending, the wait doubling each time (a backlog that a
    slow worker is still working through is not sent over and over); returns how many rows
    it sent. A row sent ``PENDING_WORK_MAX_ATTEMPTS`` times is left alone (shown in the admin).
    """
    now = now or timezone.now()
    if older_than is None:
        older_than = dt.timedelta(seconds=visrec_settings.PENDING_WORK_RETRY_SECONDS)
    candidates = (PendingWork.objects.annotate(last=Coalesce("queued_at", "created_at"))
                  .filter(last__lt=now - older_than, attempts__lt=visrec_settings.PENDING_WORK_MAX_ATTEMPTS))
    sent = 0
    for kind in TASKS:
        field = "image_id" if kind == WorkKind.EMBED else "product_id"
        rows = [(pk, target) for pk, target, last, attempts in
                candidates.filter(kind=kind).exclude(**{f"{field}__isnull": True}).order_by("created_at")
                .values_list("pk", field, "last", "attempts")
                if last < now - older_than * 2 ** attempts]
        for chunk in _chunks(rows, CHUNK):
            if not send(kind, list(dict.fromkeys(i for _, i in chunk))):
                return sent  # the broker is down: the next sweep tries again
            PendingWork.objects.filter(pk__in=[pk for pk, _ in chunk]).update(
                queued_at=now, attempts=F("attempts") + 1)
            sent += len(chunk)
    return sent


def stuck() -> Q:
    """Rows the sweep gave up on (sent ``PENDING_WORK_MAX_ATTEMPTS`` times)."""
    return Q(attempts__gte=visrec_settings.PENDING_WORK_MAX_ATTEMPTS)


@contextmanager
def held_back() -> Iterator[None]:
    """Inside, recorded work is not sent to Celery (one task per image of a bulk load); do it
    with ``visrec_index`` (or leave it to the sweep)."""
    token = _held_back.set(True)
    try:
        yield
    finally:
        _held_back.reset(token)


def _chunks(rows: list, size: int) -> Iterator[list]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
