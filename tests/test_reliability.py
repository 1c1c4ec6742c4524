"""Faults that real deployments meet: a worker killed mid-task with an hour-long visibility
timeout, and Redis restarting under the shop."""
from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest

from visrec.models import EmbeddingStatus, ImageEmbedding, PendingWork
from visrec.services.catalogue import outbox
from visrec.services.catalogue.embedders import target_embedder_version

from .conftest import make_image_bytes, purge_test_queues, start_worker, stop_worker
from .factories import ProductFactory, ProductImageFactory
from .test_worker_kill import noisy_png

N_IMAGES = 40


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_work_of_a_killed_worker_is_swept_within_seconds_not_an_hour(worker_media, tmp_path, settings):
    """kill -9 of the worker mid-batch: its message would come back only after the broker's
    visibility timeout (an hour here); the pending-work sweep sends it again, and every image
    is embedded exactly once."""
    settings.VISREC = {**settings.VISREC, "EXTRACTION_QUEUE": "visrec_kill_test"}
    settings_file = tmp_path / "sweep_settings.py"
    settings_file.write_text(
        "from shop_demo.settings_test import *\n"
        "VISREC = {**VISREC, 'EXTRACTION_BATCH_SIZE': 2, 'DECODE_WORKERS': 0, 'EXTRACTION_QUEUE': 'visrec_kill_test'}\n"
    )
    with outbox.held_back():  # recorded, not sent: the sweep sends them as one task
        images = [ProductImageFactory.with_bytes(noisy_png(i), name=f"sweep{i}.png") for i in range(N_IMAGES)]
    ids = [image.pk for image in images]
    version = target_embedder_version().name
    purge_test_queues()
    env = {"CELERY_VISIBILITY_TIMEOUT": "3600"}
    victim, _ = start_worker(settings_module="sweep_settings", pythonpath=str(tmp_path), name="sweep-victim",
                             extra_env=env)
    try:
        assert outbox.sweep(older_than=dt.timedelta(0)) == N_IMAGES
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if ImageEmbedding.objects.filter(model_version=version, status=EmbeddingStatus.DONE).count() >= 2:
                break
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
    before = dict(ImageEmbedding.objects.filter(model_version=version).values_list("image_id", "updated_at"))
    assert 0 < len(before) < N_IMAGES, "the worker must be killed in the middle of the batch"
    assert PendingWork.objects.count() == N_IMAGES  # the killed task finished nothing

    started = time.monotonic()
    rescuer, _ = start_worker(settings_module="sweep_settings", pythonpath=str(tmp_path), name="sweep-rescuer",
                              extra_env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and PendingWork.objects.exists():
            outbox.sweep(older_than=dt.timedelta(seconds=2))  # what beat does every minute
            time.sleep(1)
    finally:
        stop_worker(rescuer)
    assert not PendingWork.objects.exists(), "the swept work was done"
    assert time.monotonic() - started < 240  # minutes, not the hour of the visibility timeout
    rows = list(ImageEmbedding.objects.filter(image_id__in=ids, model_version=version).values_list("image_id", "status"))
    assert sorted(r[0] for r in rows) == sorted(ids) and {r[1] for r in rows} == {EmbeddingStatus.DONE}
    after = dict(ImageEmbedding.objects.filter(model_version=version).values_list("image_id", "updated_at"))
    assert all(after[i] == before[i] for i in before)  # nothing embedded before the kill was redone


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_shop_rides_out_a_redis_restart(client, django_capture_on_commit_callbacks):
    """The embedded Redis (broker, cache, session cache) killed and started again: every
    endpoint answers meanwhile, and the cache is used again after."""
    from shop_demo import devservices

    from visrec.services.db import cache_guard

    from .test_similar import make_version, plant

    if os.environ.get("CELERY_BROKER_URL") or os.environ.get("CACHE_URL"):
        pytest.skip("an external Redis is not ours to restart")
    make_version()
    products = [ProductFactory(name=f"Vase {i}") for i in range(4)]
    plant(products, [[1, 0.1 * i] + [0] * 14 for i in range(4)])
    url = f"/api/visrec/products/{products[0].pk}/similar/"
    assert client.get(url).status_code == 200
    port = int((devservices.REDIS_DIR / "port").read_text())
    os.kill(int((devservices.REDIS_DIR / "redis.pid").read_text()), signal.SIGKILL)
    try:
        time.sleep(0.2)
        assert client.get(url).status_code == 200
        assert client.get("/api/visrec/for-you/").status_code == 200
        events = client.post("/api/visrec/events/", {"events": [{"type": "view", "product": products[1].pk}]},
                             content_type="application/json")
        assert events.status_code == 202
        with django_capture_on_commit_callbacks(execute=True):
            ProductImageFactory.with_bytes(make_image_bytes(), product=products[2])  # queued in PostgreSQL
        assert PendingWork.objects.filter(image__product=products[2]).exists()
    finally:
        restarted = devservices.ensure_redis()
    assert restarted.endswith(f":{port}")  # the same port: every process finds it again
    cache_guard.reset()
    assert client.get(url).status_code == 200
    from django.core.cache import cache

    assert cache.get("visrec:embeddings-generation") is not None  # the cache is written again
