"""Celery wiring a host adds to its own Celery app: queue routing and the beat schedule.

In settings::

    CELERY_TASK_ROUTES = ["visrec.celery.route_task"]

and in the host's ``celery.py``::

    from visrec.celery import beat_schedule
    app.conf.beat_schedule.update(beat_schedule())
"""
from __future__ import annotations

from typing import Any

from .conf import visrec_settings

#: Which queue setting each visrec task goes to; tasks not listed use DEFAULT_QUEUE.
TASK_QUEUES: dict[str, str] = {
    "visrec.embed_images": "EXTRACTION_QUEUE",
    "visrec.train_embedder": "TRAINING_QUEUE",
    "visrec.train_recommender": "TRAINING_QUEUE",
}


def queue_for(task_name: str) -> str:
    """The queue a visrec task is routed to, from the ``VISREC`` settings."""
    return getattr(visrec_settings, TASK_QUEUES.get(task_name, "DEFAULT_QUEUE"))


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict | None:
    """A Celery router: visrec's tasks to visrec's queues, anything else untouched."""
    if not name.startswith("visrec."):
        return None
    return {"queue": queue_for(name)}


def beat_schedule() -> dict[str, dict[str, Any]]:
    """visrec's periodic tasks for ``app.conf.beat_schedule``, times from ``VISREC``."""
    from celery.schedules import crontab

    return {
        "visrec-nightly-embedder-training": {
            "task": "visrec.train_embedder",
            "schedule": crontab(**visrec_settings.TRAINING_SCHEDULE),
        },
        "visrec-nightly-event-retention": {
            "task": "visrec.purge_expired_events",
            "schedule": crontab(**visrec_settings.RETENTION_SCHEDULE),
        },
        "visrec-pending-work-sweep": {
            "task": "visrec.sweep_pending_work",
            "schedule": 60.0,
        },
        "visrec-nightly-recommender-training": {
            "task": "visrec.train_recommender",
            "schedule": crontab(**visrec_settings.RECOMMENDER_SCHEDULE),
        },
    }
