"""The demo shop's Celery app; visrec's tasks are shared tasks it discovers."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")

app = Celery("shop_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def add_visrec_schedule(sender: Celery, **kwargs) -> None:
    """visrec's nightly jobs, at the times set in ``VISREC``."""
    from visrec.celery import beat_schedule

    sender.conf.beat_schedule = {**(sender.conf.beat_schedule or {}), **beat_schedule()}
