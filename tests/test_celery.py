"""visrec's tasks run on a real Celery worker through the real Redis broker."""
from __future__ import annotations

import pytest

from visrec.celery import queue_for, route_task
from visrec.models import ProductEmbedding
from visrec.tasks import health_check

from .factories import ProductFactory


def test_tasks_are_routed_to_configured_queues(settings):
    settings.VISREC = {**settings.VISREC, "EXTRACTION_QUEUE": "gpu", "TRAINING_QUEUE": "train"}
    assert route_task("visrec.embed_images", (), {}, {}) == {"queue": "gpu"}
    assert route_task("visrec.train_embedder", (), {}, {}) == {"queue": "train"}
    assert route_task("visrec.health_check", (), {}, {}) == {"queue": queue_for("visrec.health_check")}
    assert route_task("shop.other", (), {}, {}) is None


@pytest.mark.django_db(transaction=True)
def test_task_runs_on_a_real_worker_through_redis(celery_worker_process):
    product = ProductFactory()
    ProductEmbedding.objects.create(product=product, model_version="t@1", vector=[1.0, 0.0, 0.0])
    result = health_check.delay().get(timeout=60)
    assert result["pgvector"].startswith("0.")
    assert result["product_embeddings"] == 1  # the worker reads the test database


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_catalogue_indexed_by_the_worker_is_served(celery_worker_process, worker_media, settings):
    """index_catalogue on a real worker: every image embedded, then the version switched on."""
    import time

    settings.VISREC = {**settings.VISREC, "AUTO_INDEX": False}  # only the bulk task embeds here
    from visrec.services.catalogue.embedders import active_embedder_version
    from visrec.tasks import index_catalogue

    from .conftest import make_image_bytes
    from .factories import ProductImageFactory

    images = [ProductImageFactory.with_bytes(make_image_bytes((40 * i, 90, 200 - 40 * i)), name=f"w{i}.jpg")
              for i in range(5)]
    assert index_catalogue.delay().get(timeout=60) == len(images)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and active_embedder_version() is None:
        time.sleep(0.5)
    version = active_embedder_version()
    assert version is not None
    assert ProductEmbedding.objects.filter(model_version=version.name).count() == len(images)
