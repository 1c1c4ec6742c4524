"""What a process sees of visrec: the database, the work waiting, the scheduled runs, what is served.

:func:`database_health` is the worker's smoke test (the ``visrec.health_check`` task);
:func:`health_report` is the admin's health page: the outbox of image work, the Celery
queues' depth, the served embedder's coverage of the catalogue, the last run of each
scheduled task, the served versions with their verdict and the privacy budget left. It
never raises for a part it cannot read (the broker down, say): that part says why, and a
line in ``problems`` says so too.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, Min, Q
from django.utils import timezone

from ..conf import visrec_settings
from ..models import (
    ImageEmbedding,
    ModelKind,
    ModelVersion,
    PendingWork,
    ProductEmbedding,
    RunOutcome,
    TaskRun,
    WorkKind,
)
from .experiments.assignment import current_experiment

logger = logging.getLogger(__name__)

#: Scheduled every night by :func:`visrec.celery.beat_schedule` (task record name -> what it does).
NIGHTLY_TASKS = {
    "train_embedder": "Fine-tune the image embedder",
    "train_recommender": "Train \u201cfor you\u201d",
    "purge_expired_events": "Delete expired shopper events",
}
#: Recorded when they run, on demand.
ON_DEMAND_TASKS = {"index_catalogue": "Index the catalogue"}
#: A nightly task whose last success is older than this is flagged.
STALE_AFTER = dt.timedelta(hours=26)
#: A run still ``running`` this long after it started was killed (its worker died before saying so).
KILLED_AFTER = dt.timedelta(hours=6)
#: Seconds the broker may take to connect and answer.
BROKER_TIMEOUT = 2.0
#: Settings naming visrec's Celery queues.
QUEUE_SETTINGS = ("DEFAULT_QUEUE", "EXTRACTION_QUEUE", "TRAINING_QUEUE")


def database_health() -> dict:
    """Returns the pgvector version and how many image/product embeddings are stored."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return {
        "pgvector": row[0] if row else None,
        "image_embeddings": ImageEmbedding.objects.count(),
        "product_embeddings": ProductEmbedding.objects.count(),
    }


@dataclass
class OutboxHealth:
    """Image work recorded and not yet done (:class:`~visrec.models.PendingWork`).

    ``overdue``: rows older than ``PENDING_WORK_RETRY_SECONDS`` (the sweep sends them again);
    ``stuck``: rows sent ``PENDING_WORK_MAX_ATTEMPTS`` times that the sweep gave up on.
    """

    pending: int = 0
    embed: int = 0
    refresh: int = 0
    overdue: int = 0
    stuck: int = 0
    oldest_age: dt.timedelta | None = None


@dataclass
class QueueDepth:
    name: str
    setting: str
    messages: int | None = None


@dataclass
class BrokerHealth:
    """Messages waiting in visrec's Celery queues; ``reachable`` False with ``error`` when the
    broker did not answer within :data:`BROKER_TIMEOUT`."""

    reachable: bool
    queues: list[QueueDepth]
    error: str = ""
    transport: str = ""


@dataclass
class CoverageHealth:
    """How much of the catalogue the served embedder covers; ``version`` None before the first indexing."""

    version: str | None
    images: int = 0
    done: int = 0
    failed: int = 0

    @property
    def missing(self) -> int:
        return max(self.images - self.done - self.failed, 0)


@dataclass
class TaskHealth:
    """One scheduled task: its last run, its last success and what to make of them.

    ``state``: ``ok``, ``nothing_done``, ``running``, ``killed``, ``failed``, ``stale`` or
    ``never``; ``problem`` says in words what is wrong ("" when nothing is).
    """

    task: str
    label: str
    nightly: bool
    state: str
    last: TaskRun | None = None
    last_success: TaskRun | None = None
    problem: str = ""


@dataclass
class ServedVersion:
    kind: str
    label: str
    version: ModelVersion | None
    verdict: str = ""


@dataclass
class BudgetHealth:
    total: float
    spent: float
    left: float
    period_start: dt.date
    renews_on: dt.date


@dataclass
class HealthReport:
    checked_at: dt.datetime
    database: dict = field(default_factory=dict)
    outbox: OutboxHealth | None = None
    broker: BrokerHealth | None = None
    coverage: CoverageHealth | None = None
    tasks: list[TaskHealth] = field(default_factory=list)
    served: list[ServedVersion] = field(default_factory=list)
    experiment: object | None = None  # the running A/B test (visrec.models.Experiment), if any
    budget: BudgetHealth | None = None
    problems: list[str] = field(default_factory=list)


def outbox_health(now: dt.datetime | None = None) -> OutboxHealth:
    """Counts of the pending image work and the age of the oldest (one query)."""
    from .catalogue.outbox import stuck

    now = now or timezone.now()
    overdue_before = now - dt.timedelta(seconds=visrec_settings.PENDING_WORK_RETRY_SECONDS)
    row = PendingWork.objects.aggregate(
        pending=Count("pk"), embed=Count("pk", filter=Q(kind=WorkKind.EMBED)),
        refresh=Count("pk", filter=Q(kind=WorkKind.REFRESH)),
        overdue=Count("pk", filter=Q(created_at__lt=overdue_before)), stuck=Count("pk", filter=stuck()),
        oldest=Min("created_at"))
    oldest = row.pop("oldest")
    return OutboxHealth(**row, oldest_age=(now - oldest) if oldest else None)


def queue_names() -> list[tuple[str, str]]:
    """visrec's Celery queues, ``(setting, name)``, each name once."""
    seen: dict[str, str] = {}
    for setting in QUEUE_SETTINGS:
        seen.setdefault(getattr(visrec_settings, setting), setting)
    return [(setting, name) for name, setting in seen.items()]


def broker_health(timeout: float = BROKER_TIMEOUT) -> BrokerHealth:
    """Messages waiting in each of visrec's queues, read through the Celery app's broker connection.

    On Redis that is the queue's ``LLEN`` (summed over kombu's priority lists); on other
    transports the queue's message count from a passive declare. One connection attempt
    with ``timeout`` seconds to connect and to answer; never raises.
    """
    from celery import current_app

    queues = [QueueDepth(name, setting) for setting, name in queue_names()]
    try:
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        with current_app.connection_for_read(connect_timeout=timeout, transport_options=options) as conn:
            conn.ensure_connection(max_retries=0)
            channel = conn.default_channel
            for queue in queues:
                queue.messages = _queue_depth(channel, queue.name)
            return BrokerHealth(True, queues, transport=str(getattr(conn.transport, "driver_type", "")))
    except Exception as exc:
        logger.warning("visrec: the health page could not read the Celery queues (%s: %s)",
                       type(exc).__name__, exc)
        return BrokerHealth(False, queues, error=f"{type(exc).__name__}: {exc}"[:300])


def _queue_depth(channel, name: str) -> int:
    size = getattr(channel, "_size", None)  # kombu's virtual transports (Redis: LLEN of each priority list)
    if callable(size):
        return int(size(name))
    from kombu.exceptions import ChannelError

    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except ChannelError:  # AMQP: a queue nobody declared yet has no messages
        return 0


def coverage_health() -> CoverageHealth:
    """The served embedder's done / failed / missing images."""
    from .catalogue.embedders import active_embedder_version
    from .catalogue.extraction import coverage

    version = active_embedder_version()
    if version is None:
        from ..conf import get_image_model

        return CoverageHealth(None, images=get_image_model()._default_manager.count())
    return CoverageHealth(version.name, **coverage(version))


def task_health(now: dt.datetime | None = None) -> list[TaskHealth]:
    """The nightly tasks, then those run on demand, then any other recorded task, each judged."""
    from .runs import last_runs, last_successes

    now = now or timezone.now()
    last, succeeded = last_runs(), last_successes()
    names = {**NIGHTLY_TASKS, **ON_DEMAND_TASKS, **{t: t.replace("_", " ") for t in sorted(last)
                                                     if t not in NIGHTLY_TASKS and t not in ON_DEMAND_TASKS}}
    out = []
    for task, label in names.items():
        run, success = last.get(task), succeeded.get(task)
        nightly = task in NIGHTLY_TASKS
        state, problem = _judge(run, success, nightly, now)
        out.append(TaskHealth(task, label, nightly, state, last=run, last_success=success, problem=problem))
    return out


def _judge(run: TaskRun | None, success: TaskRun | None, nightly: bool, now: dt.datetime) -> tuple[str, str]:
    """``(state, problem)`` of one task from its last run and last success."""
    if run is None:
        if nightly:
            return "never", "no run on record: is Celery beat running with visrec's beat_schedule()?"
        return "never", ""
    if run.outcome == RunOutcome.RUNNING:
        if now - run.started_at > KILLED_AFTER:
            return "killed", (f"started {_ago(now - run.started_at)} ago and never finished: probably killed "
                              "(its worker died or was stopped)")
        return "running", ""
    if run.outcome == RunOutcome.FAILED:
        return "failed", f"failed {_ago(now - run.started_at)} ago: {run.summary}"
    if nightly:
        finished = (success.finished_at or success.started_at) if success else None
        if finished is None or now - finished > STALE_AFTER:
            return "stale", (f"last succeeded {_ago(now - finished)} ago (more than "
                             f"{int(STALE_AFTER.total_seconds() // 3600)} h): is Celery beat running?"
                             if finished else "no successful run on record")
    return ("ok" if run.outcome == RunOutcome.DONE else "nothing_done"), ""


def _ago(delta: dt.timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def served_versions() -> list[ServedVersion]:
    """The served embedder and recommender with their verdict in words."""
    from .model_report import verdict
    from .serving.versions import active_version

    out = []
    for kind, label in ((ModelKind.EMBEDDER, "Image embedder"), (ModelKind.RECOMMENDER, "\u201cFor you\u201d recommender")):
        version = active_version(kind)
        out.append(ServedVersion(kind, label, version, verdict(version).text if version else ""))
    return out


def budget_health() -> BudgetHealth:
    """The privacy budget of the current period: epsilon spent and left, and when it renews."""
    from .privacy.dp_releases import period_start, spent

    start = period_start()
    total = float(visrec_settings.PRIVACY_BUDGET_EPSILON)
    used = spent(start)
    return BudgetHealth(total, used, max(0.0, total - used), start,
                        start + dt.timedelta(days=visrec_settings.PRIVACY_PERIOD_DAYS))


def health_report(now: dt.datetime | None = None, *, broker_timeout: float = BROKER_TIMEOUT) -> HealthReport:
    """Everything the health page shows, and the problems among it in words."""
    now = now or timezone.now()
    report = HealthReport(checked_at=now)
    problems = report.problems

    def part(name: str, compute):
        try:
            return compute()
        except Exception as exc:
            logger.exception("visrec: the health page could not read %s", name)
            problems.append(f"{name} could not be read ({type(exc).__name__}: {exc})")
            return None

    report.database = part("the database", database_health) or {}
    report.outbox = part("the pending work", lambda: outbox_health(now))
    report.broker = broker_health(broker_timeout)
    report.coverage = part("the embedding coverage", coverage_health)
    report.tasks = part("the scheduled runs", lambda: task_health(now)) or []
    report.served = part("the served versions", served_versions) or []
    report.budget = part("the privacy budget", budget_health)
    report.experiment = part("the running experiment", current_experiment)  # its arms serve, not the recommender

    if report.database and not report.database.get("pgvector"):
        problems.append("the pgvector extension is not installed in the database")
    if not report.broker.reachable:
        problems.append(f"the Celery broker did not answer within {broker_timeout:g} s ({report.broker.error}); "
                        "image work waits in the outbox and is sent once it is back")
    outbox = report.outbox
    if outbox and outbox.stuck:
        problems.append(f"{outbox.stuck} pending image job(s) were sent "
                        f"{visrec_settings.PENDING_WORK_MAX_ATTEMPTS} times and never finished: run visrec_index, "
                        "and look at the worker's log")
    elif outbox and outbox.overdue:
        problems.append(f"{outbox.overdue} pending image job(s) are older than "
                        f"{visrec_settings.PENDING_WORK_RETRY_SECONDS} s: are the extraction workers running?")
    coverage = report.coverage
    if coverage and coverage.version is None and coverage.images:
        problems.append("no image embedder is served yet: run visrec_index")
    elif coverage and coverage.version:
        if coverage.failed:
            problems.append(f"{coverage.failed} image(s) failed to embed under {coverage.version}")
        if coverage.missing:
            problems.append(f"{coverage.missing} image(s) have no vector under {coverage.version} yet")
    for task in report.tasks:
        if task.problem:
            problems.append(f"{task.label} ({task.task}): {task.problem}")
    budget = report.budget
    if budget and budget.total > 0 and budget.left < 0.1 * budget.total:
        problems.append(f"the privacy budget is nearly spent: epsilon {budget.left:.2f} of {budget.total:.2f} "
                        f"left until {budget.renews_on}")
    return report
