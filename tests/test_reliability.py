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

from .conftest import purge_test_queues, start_worker, stop_worker
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


REDIS_RESTART_PROBE = """
import io, json, os, signal, time
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image
from shop_demo import devservices
from shop_demo.catalog.models import Product, ProductImage
from visrec.models import PendingWork
from visrec.services.db import cache_guard

products = list(Product.objects.order_by("pk"))
client = Client()
url = f"/api/visrec/products/{products[0].pk}/similar/"
found = {"before": client.get(url).status_code}
port = int((devservices.REDIS_DIR / "port").read_text())
os.kill(int((devservices.REDIS_DIR / "redis.pid").read_text()), signal.SIGKILL)
time.sleep(0.3)
try:
    found["similar"] = client.get(url).status_code
    found["for_you"] = client.get("/api/visrec/for-you/").status_code
    found["events"] = client.post("/api/visrec/events/", {"events": [{"type": "view", "product": products[1].pk}]},
                                  content_type="application/json").status_code
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buffer, format="PNG")
    image = ProductImage(product=products[2])
    image.image.save("during-outage.png", ContentFile(buffer.getvalue()), save=True)  # must not raise
    found["pending"] = PendingWork.objects.filter(image=image).exists()
finally:
    restarted = devservices.ensure_redis()
found["same_port"] = restarted.endswith(f":{port}")
cache_guard.reset()
found["after"] = client.get(url).status_code
found["cached_again"] = cache.get("visrec:embeddings-generation") is not None
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_shop_rides_out_a_redis_restart(settings):
    """The embedded Redis (broker, cache, session cache) killed and started again under a
    shop process (a child: its clients are the ones that see the outage): every endpoint
    answers meanwhile, image work waits in PostgreSQL, Redis comes back on its port and the
    cache is used again."""
    import json
    import subprocess
    import sys

    from django.db import connection

    from .conftest import ROOT
    from .test_similar import make_version, plant

    if os.environ.get("CELERY_BROKER_URL") or os.environ.get("CACHE_URL"):
        pytest.skip("an external Redis is not ours to restart")
    make_version()
    products = [ProductFactory(name=f"Vase {i}") for i in range(4)]
    plant(products, [[1, 0.1 * i] + [0] * 14 for i in range(4)])
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop_demo.settings_test",
           "VISREC_TEST_DATABASE_NAME": connection.settings_dict["NAME"], "CACHE_URL": settings.CACHES["default"]["LOCATION"],
           "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    result = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", REDIS_RESTART_PROBE], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180)
    # This process's broker connections died with that Redis: later tests get new ones.
    from celery import current_app
    from kombu import pools

    pools.reset()
    current_app._pool = None
    current_app.amqp._producer_pool = None
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"before": 200, "similar": 200, "for_you": 200, "events": 202, "pending": True,
                     "same_port": True, "after": 200, "cached_again": True}
