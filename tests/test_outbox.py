"""Image work goes through an outbox: recorded with the host's save, sent after commit, swept when lost."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from celery import current_app
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone

from visrec.models import EmbeddingStatus, ImageEmbedding, PendingWork, WorkKind
from visrec.services.catalogue import extraction, outbox
from visrec.services.catalogue.embedders import target_embedder_version

from .conftest import make_image_bytes
from .factories import ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db

PROBE_QUEUE = "visrec_outbox_probe"


@pytest.fixture
def broker_down(settings):
    """The Celery app pointed at a port where nothing listens (as when Redis is down)."""
    saved = current_app.conf.broker_url
    current_app.conf.broker_url = "redis://127.0.0.1:1/0"
    current_app._pool = None
    yield
    current_app.conf.broker_url = saved
    current_app._pool = None


@pytest.fixture
def probe_queue(settings):
    """visrec's extraction queue renamed to one the test reads from the real broker."""
    settings.VISREC = {**settings.VISREC, "EXTRACTION_QUEUE": PROBE_QUEUE, "DEFAULT_QUEUE": PROBE_QUEUE}
    with current_app.connection_for_write() as connection:
        client = connection.default_channel.client
        client.delete(PROBE_QUEUE)
        yield client
        client.delete(PROBE_QUEUE)


def test_an_image_saved_while_the_broker_is_down_raises_nothing_and_keeps_its_work(
        broker_down, django_capture_on_commit_callbacks):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        image = ProductImageFactory.with_bytes(make_image_bytes())
    assert time.monotonic() - started < 5  # one attempt, no retries for seconds
    work = PendingWork.objects.get()
    assert (work.kind, work.image_id, work.attempts) == (WorkKind.EMBED, image.pk, 0)
    # The sweep cannot send either; the row stays for the next sweep.
    assert outbox.sweep(now=timezone.now() + dt.timedelta(hours=1)) == 0
    assert PendingWork.objects.get().attempts == 0


def test_saved_work_reaches_the_real_broker_after_commit(probe_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        image = ProductImageFactory.with_bytes(make_image_bytes())
    assert probe_queue.llen(PROBE_QUEUE) == 0  # nothing before the commit
    for callback in callbacks:
        callback()
    assert probe_queue.llen(PROBE_QUEUE) == 1
    assert PendingWork.objects.filter(image=image).exists()  # until the work itself is done


def test_the_work_clears_its_rows_but_not_a_later_save():
    image = ProductImageFactory.with_bytes(make_image_bytes())
    extraction.embed_images([image.pk])
    assert not PendingWork.objects.exists()
    later = PendingWork.objects.create(kind=WorkKind.EMBED, image=image, created_at=timezone.now() + dt.timedelta(1))
    extraction.embed_images([image.pk])  # read the file before that save: its work stays
    assert list(PendingWork.objects.all()) == [later]


def test_the_sweep_sends_stale_work_with_a_doubling_wait(probe_queue, settings):
    settings.VISREC = {**settings.VISREC, "PENDING_WORK_RETRY_SECONDS": 60, "PENDING_WORK_MAX_ATTEMPTS": 3}
    with outbox.held_back():
        images = [ProductImageFactory.with_bytes(make_image_bytes((i * 50, 0, 0))) for i in range(3)]
    assert probe_queue.llen(PROBE_QUEUE) == 0  # held back: nothing sent
    now = timezone.now()
    assert outbox.sweep(now=now) == 0  # recorded just now: not stale
    assert outbox.sweep(now=now + dt.timedelta(seconds=61)) == 3
    assert probe_queue.llen(PROBE_QUEUE) == 1  # one task for the three
    assert set(PendingWork.objects.values_list("attempts", flat=True)) == {1}
    sent_at = now + dt.timedelta(seconds=61)
    assert outbox.sweep(now=sent_at + dt.timedelta(seconds=100)) == 0  # the second wait is 120 s
    assert outbox.sweep(now=sent_at + dt.timedelta(seconds=121)) == 3
    third = sent_at + dt.timedelta(seconds=121)
    assert outbox.sweep(now=third + dt.timedelta(seconds=241)) == 3
    assert outbox.sweep(now=third + dt.timedelta(days=30)) == 0  # sent 3 times: left alone
    assert PendingWork.objects.filter(outbox.stuck()).count() == len(images)


def test_index_command_does_recorded_work_without_a_broker(broker_down, django_capture_on_commit_callbacks):
    """A re-saved image (a new file) is embedded again by visrec_index --missing, from its recorded work."""
    product = ProductFactory()
    with django_capture_on_commit_callbacks(execute=True):
        image = ProductImageFactory.with_bytes(make_image_bytes((200, 0, 0)), product=product)
    call_command("visrec_index", verbosity=0)
    version = target_embedder_version().name
    first = ImageEmbedding.objects.get(image=image, model_version=version)
    assert first.status == EmbeddingStatus.DONE and not PendingWork.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        image.image.save("again.jpg", ContentFile(make_image_bytes((0, 0, 200))), save=True)
    assert PendingWork.objects.filter(image=image).exists()
    call_command("visrec_index", verbosity=0)
    second = ImageEmbedding.objects.get(image=image, model_version=version)
    assert second.content_hash != first.content_hash and not PendingWork.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_an_image_records_a_refresh_even_when_its_product_goes_too(broker_down):
    """The refresh row is written while the product's deletion cascades; it has no foreign-key
    constraint, so the commit (really made here) does not fail."""
    product = ProductFactory()
    ProductImageFactory.with_bytes(make_image_bytes(), product=product)
    PendingWork.objects.all().delete()
    product_id = product.pk
    product.delete()  # autocommit: the deletion and the refresh row commit together
    refresh = PendingWork.objects.get(kind=WorkKind.REFRESH)
    assert refresh.product_id == product_id
    assert extraction.refresh_product_vectors([product_id]) == 0 and not PendingWork.objects.exists()
