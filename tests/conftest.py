"""Shared fixtures: real PostgreSQL+pgvector (from the settings), real Celery workers on Redis."""
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
#: The oscar host's suite runs under its own settings: scripts/test.sh runs it after this one.
collect_ignore = ["hosts/oscar"]
WORKER_MEDIA_ROOT = ROOT / "var" / "test-worker-media"


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test writes its files to its own media folder."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    from visrec.services.db import cache_guard, cache_writes

    cache_guard.reset()  # a test that took the cache down leaves it usable
    cache_writes.flush()  # a write deferred by the previous test goes out before the clear
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _prepared_statements_deallocated_after():
    """A test leaves no prepared statement on the connection the next test gets."""
    yield
    from django.db import connection

    from visrec.services.db import prepared_statements

    if prepared_statements.held(connection) and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
    prepared_statements.forget()


@pytest.fixture(autouse=True)
def _query_pool_closed_after():
    """A test that ran queries on visrec's query threads leaves no connection holding the test database."""
    yield
    from visrec.services.db import concurrent_queries

    concurrent_queries.shutdown()


def make_image_bytes(color=(200, 30, 30), size=(64, 64), fmt="JPEG", mode="RGB") -> bytes:
    """An image made in memory with PIL, as bytes of the given format."""
    image = Image.new(mode, size, color)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def start_worker(*, settings_module: str = "shop_demo.settings_test", extra_env: dict | None = None,
                 name: str = "main", pythonpath: str | None = None) -> tuple[subprocess.Popen, str]:
    """Starts a real Celery worker process on the test broker and test database; waits for its ping."""
    from django.conf import settings
    from django.db import connection

    from shop_demo.celery import app
    from visrec.conf import visrec_settings

    queues = ",".join(sorted({
        visrec_settings.EXTRACTION_QUEUE,
        settings.VISREC.get("DEFAULT_QUEUE", "visrec"),
        settings.VISREC.get("EXTRACTION_QUEUE", "visrec_extraction"),
        settings.VISREC.get("TRAINING_QUEUE", "visrec_training"),
        "default",
    }))
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": settings_module,
        "VISREC_TEST_DATABASE_NAME": connection.settings_dict["NAME"],
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "CACHE_URL": settings.CACHES["default"]["LOCATION"],
        "DJANGO_MEDIA_ROOT": str(WORKER_MEDIA_ROOT),
        "OMP_NUM_THREADS": "1",
        **(extra_env or {}),
    })
    if pythonpath:
        env["PYTHONPATH"] = f"{pythonpath}:{ROOT}"
    hostname = f"visrec-test-{name}-{os.getpid()}@localhost"
    log = open(ROOT / "var" / f"test-worker-{name}.log", "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "--pool", "solo",
         "--without-gossip", "--without-mingle", "-Q", queues, "-n", hostname, "-l", "info"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    app.conf.broker_url = settings.CELERY_BROKER_URL
    app.conf.result_backend = settings.CELERY_RESULT_BACKEND
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"Celery worker exited; see {log.name}")
            if app.control.ping(destination=[hostname], timeout=0.5):
                return process, hostname
        raise RuntimeError(f"Celery worker did not answer a ping in 90 s; see {log.name}")
    except BaseException:
        stop_worker(process)  # never leave a worker behind: it would consume and commit other tests' tasks
        raise


def purge_test_queues() -> None:
    """Drops messages left in visrec's queues by earlier runs (the test broker database only)."""
    from django.conf import settings

    from shop_demo.celery import app

    names = {settings.VISREC.get(k, d) for k, d in (("DEFAULT_QUEUE", "visrec"),
             ("EXTRACTION_QUEUE", "visrec_extraction"), ("TRAINING_QUEUE", "visrec_training"))} | {
             "default", "visrec_kill_test"}
    with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
        channel = conn.default_channel
        for name in names:
            channel.queue_purge(name)
        channel.client.delete("unacked", "unacked_index")


def stop_worker(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real Celery worker process on the embedded (or configured) Redis, using the test database.

    Tests that use it must commit their data (``transactional_db``) and keep their files
    in the worker's media folder (the ``worker_media`` fixture).
    """
    purge_test_queues()
    process, _ = start_worker()
    yield process
    stop_worker(process)


@pytest.fixture
def worker_media(settings):
    """Files written by the test are where the worker processes read them."""
    WORKER_MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
    settings.MEDIA_ROOT = WORKER_MEDIA_ROOT
    return WORKER_MEDIA_ROOT

