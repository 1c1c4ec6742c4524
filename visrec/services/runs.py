"""Records of scheduled runs (nightly training, purge, indexing) that the health page reads.

A task wraps its work in :func:`recorded_run`; the row says when it ran, whether it did
something, nothing (with the reason) or failed (with the error), and a short summary. Only
the newest :data:`KEEP_PER_TASK` rows of each task are kept.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.utils import timezone

from ..models import RunOutcome, TaskRun

logger = logging.getLogger(__name__)

KEEP_PER_TASK = 50


class RunRecord:
    """What the wrapped work reports: ``done(summary)`` or ``skipped(reason)``, plus details."""

    def __init__(self, row: TaskRun | None):
        self.row = row
        self.outcome = RunOutcome.DONE
        self.summary = ""
        self.details: dict = {}

    def done(self, summary: str, **details) -> None:
        self.outcome, self.summary = RunOutcome.DONE, summary
        self.details.update(details)

    def skipped(self, reason: str, **details) -> None:
        self.outcome, self.summary = RunOutcome.SKIPPED, reason
        self.details.update(details)


@contextlib.contextmanager
def recorded_run(task: str) -> Iterator[RunRecord]:
    """Records one run of ``task``; an exception marks it failed and propagates.

    Recording never breaks the work: if the row cannot be written (database trouble),
    the work still runs and the failure is logged.
    """
    try:
        row = TaskRun.objects.create(task=task)
    except DatabaseError:
        logger.exception("visrec: could not record the start of %s", task)
        row = None
    record = RunRecord(row)
    try:
        yield record
    except BaseException as exc:
        _finish(record, RunOutcome.FAILED, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    else:
        _finish(record, record.outcome, record.summary)


def _finish(record: RunRecord, outcome: str, summary: str) -> None:
    if record.row is None:
        return
    row = record.row
    row.finished_at, row.outcome, row.summary, row.details = timezone.now(), outcome, summary, record.details
    try:
        row.save(update_fields=["finished_at", "outcome", "summary", "details"])
        old = TaskRun.objects.filter(task=row.task).values_list("pk", flat=True)[KEEP_PER_TASK:]
        TaskRun.objects.filter(pk__in=list(old)).delete()
    except DatabaseError:
        logger.exception("visrec: could not record the end of %s", row.task)


def last_runs(tasks: list[str] | None = None) -> dict[str, TaskRun]:
    """The newest run of each task (of ``tasks``, or of every task that ran)."""
    rows = TaskRun.objects.order_by("task", "-started_at").distinct("task")
    if tasks is not None:
        rows = rows.filter(task__in=tasks)
    return {row.task: row for row in rows}


def last_successes(tasks: list[str] | None = None) -> dict[str, TaskRun]:
    """The newest run of each task that finished without failing (did work, or had nothing to do)."""
    rows = (TaskRun.objects.filter(outcome__in=[RunOutcome.DONE, RunOutcome.SKIPPED])
            .order_by("task", "-started_at").distinct("task"))
    if tasks is not None:
        rows = rows.filter(task__in=tasks)
    return {row.task: row for row in rows}
