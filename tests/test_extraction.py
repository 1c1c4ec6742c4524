"""Extraction: images -> vectors in pgvector, idempotent, robust to broken files, triggered on commit."""
from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from visrec import signal_handlers
from visrec.models import EmbeddingStatus, ImageEmbedding, ModelVersion, ProductEmbedding
from visrec.services.catalogue import extraction
from visrec.services.catalogue.embedders import active_embedder_version, target_embedder_version

from .conftest import make_image_bytes
from .factories import ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db


def test_embeds_images_and_product_vector_is_normalised_mean():
    product = ProductFactory()
    first = ProductImageFactory.with_bytes(make_image_bytes((220, 20, 20)), product=product)
    second = ProductImageFactory.with_bytes(make_image_bytes((20, 20, 220), size=(80, 50)), product=product, position=1)
    report = extraction.embed_images([first.pk, second.pk])
    assert (report.embedded, report.failed, report.skipped) == (2, 0, 0)
    version = target_embedder_version()
    rows = {e.image_id: e for e in ImageEmbedding.objects.filter(model_version=version.name)}
    assert {r.status for r in rows.values()} == {EmbeddingStatus.DONE}
    a, b = (np.asarray(rows[i.pk].vector, dtype=np.float32) for i in (first, second))
    assert a.shape == (version.dimensions,)
    assert np.linalg.norm(a) == pytest.approx(1, abs=1e-4)
    mean = (a + b) / np.linalg.norm(a + b)
    stored = np.asarray(ProductEmbedding.objects.get(product=product, model_version=version.name).vector)
    np.testing.assert_allclose(stored, mean, atol=1e-5)


def test_idempotent_on_content_hash_and_reembeds_changed_file():
    image = ProductImageFactory.with_bytes(make_image_bytes((10, 120, 10)))
    extraction.embed_images([image.pk])
    row = ImageEmbedding.objects.get(image=image)
    again = extraction.embed_images([image.pk])
    assert (again.embedded, again.skipped) == (0, 1)
    assert ImageEmbedding.objects.get(image=image).updated_at == row.updated_at
    image.image.save("new.jpg", ContentFile(make_image_bytes((240, 240, 0))), save=True)
    changed = extraction.embed_images([image.pk])
    assert changed.embedded == 1
    assert ImageEmbedding.objects.get(image=image).content_hash != row.content_hash
    assert ImageEmbedding.objects.filter(image=image).count() == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is not a picture at all", "not an image"),
        (make_image_bytes(size=(400, 400))[:900], "truncated"),
    ],
)
def test_broken_image_is_recorded_and_does_not_stop_the_batch(data, reason):
    good = ProductImageFactory.with_bytes(make_image_bytes())
    bad = ProductImageFactory.with_bytes(data, name="broken.jpg")
    other = ProductImageFactory.with_bytes(make_image_bytes((0, 0, 200)))
    report = extraction.embed_images([good.pk, bad.pk, other.pk])
    assert (report.embedded, report.failed) == (2, 1)
    failed = ImageEmbedding.objects.get(image=bad)
    assert failed.status == EmbeddingStatus.FAILED and failed.vector is None
    assert reason in failed.error.lower()
    assert not ProductEmbedding.objects.filter(product=bad.product).exists()
    # Fixing the file makes the next run embed it.
    bad.image.save("fixed.jpg", ContentFile(make_image_bytes((50, 50, 50))), save=True)
    assert extraction.embed_images([bad.pk]).embedded == 1
    assert ImageEmbedding.objects.get(image=bad).status == EmbeddingStatus.DONE


def test_oversize_file_is_refused(settings):
    settings.VISREC = {**settings.VISREC, "MAX_IMAGE_BYTES": 100}
    image = ProductImageFactory.with_bytes(make_image_bytes(size=(300, 300)))
    report = extraction.embed_images([image.pk])
    assert report.failed == 1
    assert "over the limit" in ImageEmbedding.objects.get(image=image).error


def test_missing_file_is_recorded():
    image = ProductImageFactory.with_bytes(make_image_bytes())
    image.image.storage.delete(image.image.name)
    extraction.embed_images([image.pk])
    assert "missing" in ImageEmbedding.objects.get(image=image).error


def test_save_queues_embedding_on_commit_and_raw_saves_are_skipped(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("visrec.services.catalogue.outbox.send", lambda kind, ids, **kw: sent.append((kind, ids)))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        image = ProductImageFactory.with_bytes(make_image_bytes())
    assert sent == []  # nothing is sent before the transaction commits
    for callback in callbacks:
        callback()
    assert sent == [("embed", [image.pk])]
    with django_capture_on_commit_callbacks(execute=True) as raw_callbacks:
        signal_handlers.post_save_image(sender=type(image), instance=image, created=False, raw=True)
    assert raw_callbacks == []


def test_delete_refreshes_product_vector(django_capture_on_commit_callbacks, monkeypatch):
    product = ProductFactory()
    keep = ProductImageFactory.with_bytes(make_image_bytes((200, 0, 0)), product=product)
    gone = ProductImageFactory.with_bytes(make_image_bytes((0, 0, 200)), product=product, position=1)
    extraction.embed_images([keep.pk, gone.pk])
    monkeypatch.setattr("visrec.services.catalogue.outbox.send",
                        lambda kind, ids, **kw: kind == "refresh" and extraction.refresh_product_vectors(ids))
    with django_capture_on_commit_callbacks(execute=True):
        gone.delete()
    version = target_embedder_version().name
    only = np.asarray(ImageEmbedding.objects.get(image=keep, model_version=version).vector)
    stored = np.asarray(ProductEmbedding.objects.get(product=product, model_version=version).vector)
    np.testing.assert_allclose(stored, only, atol=1e-5)


def test_index_command_embeds_missing_then_serves_the_version(capsys):
    images = [ProductImageFactory.with_bytes(make_image_bytes((i * 40, 100, 200 - i * 40))) for i in range(4)]
    broken = ProductImageFactory.with_bytes(b"garbage", name="x.jpg")
    assert active_embedder_version() is None
    call_command("visrec_index", "--missing", "--batch-size", "2")
    out = capsys.readouterr().out
    assert "embedded 4" in out and "failed 1" in out
    active = active_embedder_version()
    assert active is not None and active.name == target_embedder_version().name
    assert ProductEmbedding.objects.filter(model_version=active.name).count() == 4
    call_command("visrec_index")
    assert "embedded 0" in capsys.readouterr().out
    call_command("visrec_index", "--failed")
    assert "failed 1" in capsys.readouterr().out
    assert ModelVersion.objects.filter(is_active=True).count() == 1
    assert len(images) == 4 and broken.pk


def test_index_command_rejects_bad_batch_size():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="positive"):
        call_command("visrec_index", "--batch-size", "0")
