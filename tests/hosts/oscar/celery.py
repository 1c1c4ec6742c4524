"""The sandbox shop's Celery app, as Celery's Django guide writes one; visrec's tasks are shared tasks.

A worker: ``celery -A tests.hosts.oscar worker -Q visrec,visrec_extraction,visrec_training``.
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.hosts.oscar.settings")

app = Celery("oscar_sandbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def add_visrec_schedule(sender: Celery, **kwargs) -> None:
    """visrec's periodic tasks (nightly training, the one-minute pending-work sweep)."""
    from visrec.celery import beat_schedule

    sender.conf.beat_schedule = {**(sender.conf.beat_schedule or {}), **beat_schedule()}
