"""A worker killed mid-batch, then restarted, leaves every image embedded exactly once."""
from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from visrec.models import EmbeddingStatus, ImageEmbedding, ProductEmbedding
from visrec.services.catalogue.embedders import target_embedder_version
from visrec.tasks import embed_images

from .conftest import purge_test_queues, start_worker, stop_worker
from .factories import ProductImageFactory

N_IMAGES = 60


def noisy_png(seed: int) -> bytes:
    """A large, slow-to-decode image, so that the batch takes seconds."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(1400, 1400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killed_worker_loses_nothing_and_duplicates_nothing(worker_media, tmp_path, settings):
    # A queue of its own: no other worker of the test session may take this task.
    settings.VISREC = {**settings.VISREC, "EXTRACTION_QUEUE": "visrec_kill_test", "AUTO_INDEX": False}
    settings_file = tmp_path / "kill_settings.py"
    settings_file.write_text(
        "from shop_demo.settings_test import *\n"
        "VISREC = {**VISREC, 'EXTRACTION_BATCH_SIZE': 2, 'DECODE_WORKERS': 0, 'EXTRACTION_QUEUE': 'visrec_kill_test'}\n"
    )
    images = [ProductImageFactory.with_bytes(noisy_png(i), name=f"noise{i}.png") for i in range(N_IMAGES)]
    ids = [image.pk for image in images]
    version = target_embedder_version().name
    purge_test_queues()
    env = {"CELERY_VISIBILITY_TIMEOUT": "3"}
    first, _ = start_worker(settings_module="kill_settings", pythonpath=str(tmp_path), name="victim", extra_env=env)
    try:
        embed_images.delay(ids)
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline:
            done = ImageEmbedding.objects.filter(model_version=version, status=EmbeddingStatus.DONE).count()
            if done >= 2:
                break
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    before = dict(ImageEmbedding.objects.filter(model_version=version).values_list("image_id", "updated_at"))
    assert 0 < len(before) < N_IMAGES, "the worker must be killed in the middle of the batch"

    second, _ = start_worker(settings_module="kill_settings", pythonpath=str(tmp_path), name="rescuer", extra_env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if ImageEmbedding.objects.filter(model_version=version, status=EmbeddingStatus.DONE).count() == N_IMAGES:
                break
            time.sleep(0.5)
    finally:
        stop_worker(second)
    rows = list(ImageEmbedding.objects.filter(image_id__in=ids, model_version=version).values_list("image_id", "status"))
    assert sorted(r[0] for r in rows) == sorted(ids)  # exactly one row per image
    assert {r[1] for r in rows} == {EmbeddingStatus.DONE}
    after = dict(ImageEmbedding.objects.filter(model_version=version).values_list("image_id", "updated_at"))
    assert all(after[i] == before[i] for i in before)  # what was embedded before the kill was not redone
    assert ProductEmbedding.objects.filter(model_version=version, product__images__in=ids).distinct().count() == N_IMAGES
