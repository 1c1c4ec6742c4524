"""Shared fixtures: real PostgreSQL+pgvector (from the settings), a real Celery worker on Redis."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes its files to its own media folder."""
    settings.MEDIA_ROOT = tmp_path / "media"


def make_image_bytes(color=(200, 30, 30), size=(64, 64), fmt="JPEG", mode="RGB") -> bytes:
    """An image made in memory with PIL, as bytes of the given format."""
    image = Image.new(mode, size, color)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real Celery worker process on the embedded (or configured) Redis, using the test database.

    Tests that use it must commit their data (``transactional_db``) so the worker sees it.
    """
    from django.conf import settings
    from django.db import connection

    from shop_demo.celery import app

    queues = ",".join(sorted({
        settings.VISREC.get("DEFAULT_QUEUE", "visrec"),
        settings.VISREC.get("EXTRACTION_QUEUE", "visrec_extraction"),
        settings.VISREC.get("TRAINING_QUEUE", "visrec_training"),
        "default",
    }))
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "shop_demo.settings_test",
        "VISREC_TEST_DATABASE_NAME": connection.settings_dict["NAME"],
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "OMP_NUM_THREADS": "1",
    })
    hostname = f"visrec-test-{os.getpid()}@localhost"
    log = open(ROOT / "var" / "test-worker.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "--pool", "solo",
         "--without-gossip", "--without-mingle", "-Q", queues, "-n", hostname, "-l", "info"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    app.conf.broker_url = settings.CELERY_BROKER_URL
    app.conf.result_backend = settings.CELERY_RESULT_BACKEND
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Celery worker exited; see {log.name}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            break
    else:
        process.terminate()
        raise RuntimeError(f"Celery worker did not answer a ping in 60 s; see {log.name}")
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
