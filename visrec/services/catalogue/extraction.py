"""Turning the host's product images into vectors in pgvector.

One function, :func:`embed_images`, serves the Celery task, the ``visrec_index`` command
and the benchmarks. It is idempotent on (content hash, model version): an image whose
file has not changed since it was embedded under the same version is skipped, so a task
that is delivered twice (``acks_late`` after a worker died) writes each vector once.
A broken image is recorded as failed with its reason and never stops the batch.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from ...conf import get_image_model, visrec_settings
from ...imaging import ImageRejected, PreprocessConfig, content_hash, preprocess
from ...models import EmbeddingStatus, ImageEmbedding, ModelVersion, ProductEmbedding, WorkKind
from ...prefetch import prefetch
from ..serving.generation import bump_embeddings_generation
from . import outbox, products
from .embedders import load_embedder, target_embedder_version, written_versions

logger = logging.getLogger(__name__)


@dataclass
class ExtractionReport:
    """What one extraction run did."""

    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    missing: int = 0
    products: int = 0
    failures: dict[int, str] = field(default_factory=dict)

    def merge(self, other: ExtractionReport) -> None:
        for name in ("embedded", "skipped", "failed", "missing", "products"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)


@dataclass
class _Item:
    image_id: int
    product_id: int
    digest: str = ""
    array: np.ndarray | None = None
    error: str = ""


def preprocess_config(backbone) -> PreprocessConfig:
    """The preprocessing a backbone needs, with the shop's limits and optional steps."""
    return PreprocessConfig(
        size=backbone.input_size,
        mean=tuple(backbone.mean),
        std=tuple(backbone.std),
        autocontrast=visrec_settings.AUTOCONTRAST,
        denoise=visrec_settings.DENOISE,
        max_bytes=visrec_settings.MAX_IMAGE_BYTES,
        max_pixels=visrec_settings.MAX_IMAGE_PIXELS,
    )


def read_image_file(image_file, max_bytes: int) -> bytes:
    """The bytes of a stored image file, or :class:`ImageRejected` saying why not."""
    if not image_file:
        raise ImageRejected("no file attached")
    try:
        size = image_file.size
    except (OSError, ValueError) as exc:
        raise ImageRejected(f"file missing from storage: {image_file.name}") from exc
    if size > max_bytes:
        raise ImageRejected(f"file is {size} bytes, over the limit of {max_bytes}")
    try:
        with image_file.storage.open(image_file.name, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ImageRejected(f"file could not be read: {exc}") from exc


def embed_images(
    image_ids: Iterable[int],
    *,
    version: ModelVersion | None = None,
    force: bool = False,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExtractionReport:
    """Embeds host images and refreshes their products' vectors.

    Args:
        image_ids: primary keys of the host's image model.
        version: the embedder version to write; default: :func:`target_embedder_version`.
        force: re-embed even if the stored vector matches the file's hash.
        batch_size: images per forward pass (default ``EXTRACTION_BATCH_SIZE``).
        progress: called with the number of images handled after each batch.

    Returns:
        counts of embedded, skipped, failed and missing images.
    """
    image_ids = list(dict.fromkeys(image_ids))
    report = ExtractionReport()
    if not image_ids:
        return report
    started = timezone.now()  # recorded work older than this is what this run reads
    version = version or target_embedder_version()
    embedder = load_embedder(version)
    versions = embedder.versions
    config = preprocess_config(embedder.backbone)
    batch_size = batch_size or visrec_settings.EXTRACTION_BATCH_SIZE

    Image = get_image_model()
    image_field = visrec_settings.IMAGE_FIELD
    product_attr = Image._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD).attname
    rows = {
        obj.pk: obj
        for obj in Image._default_manager.filter(pk__in=image_ids).only("pk", product_attr, image_field)
    }
    report.missing = len(image_ids) - len(rows)
    # A variant's images are its parent's: the parent is what lists show.
    owners = products.canonical_ids({getattr(obj, product_attr) for obj in rows.values()})
    done: dict[int, dict[str, str]] = {}
    for image_id, model_version, digest in ImageEmbedding.objects.filter(
        image_id__in=list(rows), model_version__in=versions, status=EmbeddingStatus.DONE
    ).values_list("image_id", "model_version", "content_hash"):
        done.setdefault(image_id, {})[model_version] = digest

    def load(obj) -> _Item:
        item = _Item(image_id=obj.pk, product_id=owners[getattr(obj, product_attr)])
        try:
            data = read_image_file(getattr(obj, image_field), config.max_bytes)
            item.digest = content_hash(data)
            stored = done.get(obj.pk, {})
            if not force and all(stored.get(v) == item.digest for v in versions):
                return item  # unchanged since it was embedded: nothing to do
            item.array = preprocess(data, config)
        except ImageRejected as exc:
            item.error = exc.reason
        except Exception as exc:  # noqa: BLE001 - a broken image must never stop the batch
            logger.exception("visrec: unexpected error preprocessing image %s", obj.pk)
            item.error = f"unexpected error: {exc.__class__.__name__}: {exc}"
        return item

    batch: list[_Item] = []

    def flush() -> None:
        if not batch:
            return
        ready = [it for it in batch if it.array is not None]
        failed = [it for it in batch if it.error]
        vectors = embedder.embed(np.stack([it.array for it in ready])) if ready else {}
        # Image vectors and their products' vectors commit together, per batch: a worker
        # killed between two batches leaves no image without its product vector.
        with transaction.atomic():
            _write(ready, vectors, failed, versions)
            report.products += update_product_vectors({it.product_id for it in batch}, versions)
        for it in batch:
            if it.array is not None:
                report.embedded += 1
            elif it.error:
                report.failed += 1
                report.failures[it.image_id] = it.error
            else:
                report.skipped += 1
        if progress:
            progress(len(batch))
        batch.clear()

    ordered = [rows[i] for i in image_ids if i in rows]
    workers = max(0, int(visrec_settings.DECODE_WORKERS))
    for item in prefetch(ordered, load, workers, window=2 * batch_size):
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()
    outbox.finished(WorkKind.EMBED, image_ids, started)
    return report


def refresh_product_vectors(product_ids: Iterable) -> int:
    """Recomputes product vectors (after images were deleted) under the versions being written,
    and clears their recorded refreshes; returns how many vectors were written."""
    product_ids = list(dict.fromkeys(product_ids))
    started = timezone.now()
    written = update_product_vectors(product_ids, written_versions(target_embedder_version()))
    outbox.finished(WorkKind.REFRESH, product_ids, started)
    return written


def _write(ready: list[_Item], vectors: dict[str, np.ndarray], failed: list[_Item], versions: list[str]) -> None:
    """One bulk upsert per batch: vectors of the embedded images, reasons of the failed."""
    now = timezone.now()
    objs = []
    for model_version, matrix in vectors.items():
        for it, vector in zip(ready, matrix):
            objs.append(ImageEmbedding(
                image_id=it.image_id, product_id=it.product_id, model_version=model_version,
                content_hash=it.digest, status=EmbeddingStatus.DONE, error="", vector=vector, updated_at=now,
            ))
    for it in failed:
        for model_version in versions:
            objs.append(ImageEmbedding(
                image_id=it.image_id, product_id=it.product_id, model_version=model_version,
                content_hash=it.digest, status=EmbeddingStatus.FAILED, error=it.error[:2000], vector=None,
                updated_at=now,
            ))
    if objs:
        ImageEmbedding.objects.bulk_create(
            objs,
            update_conflicts=True,
            unique_fields=["image", "model_version"],
            update_fields=["product", "content_hash", "status", "error", "vector", "updated_at"],
        )


def update_product_vectors(product_ids: Iterable[int], versions: Iterable[str]) -> int:
    """Sets each product's vector to the normalised mean of its embedded images' vectors.

    Products left with no embedded image lose their vector. Returns how many product
    vectors were written.
    """
    product_ids = sorted(set(product_ids))
    versions = list(versions)
    image_table = ImageEmbedding._meta.db_table
    product_table = ProductEmbedding._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {product_table} (product_id, model_version, vector, image_count, updated_at)
            SELECT product_id, model_version, l2_normalize(avg(vector)), count(*), now()
            FROM {image_table}
            WHERE status = 'done' AND product_id = ANY(%s) AND model_version = ANY(%s)
            GROUP BY product_id, model_version
            ON CONFLICT (product_id, model_version) DO UPDATE
            SET vector = EXCLUDED.vector, image_count = EXCLUDED.image_count, updated_at = EXCLUDED.updated_at
            """,
            [product_ids, versions],
        )
        written = cursor.rowcount
        transaction.on_commit(bump_embeddings_generation)
        cursor.execute(
            f"""
            DELETE FROM {product_table} p
            WHERE p.product_id = ANY(%s) AND p.model_version = ANY(%s) AND NOT EXISTS (
                SELECT 1 FROM {image_table} i
                WHERE i.product_id = p.product_id AND i.model_version = p.model_version AND i.status = 'done'
            )
            """,
            [product_ids, versions],
        )
    return written


def images_to_index(mode: str, version: ModelVersion | None = None) -> list[int]:
    """Primary keys of host images to (re-)embed.

    Args:
        mode: ``"missing"`` (no vector under the version yet, failed ones excluded, and
            every image with recorded work: saved since it was embedded), ``"failed"``
            (recorded as failed) or ``"all"``.
    """
    version = version or target_embedder_version()
    Image = get_image_model()
    images = Image._default_manager.order_by("pk")
    if mode == "all":
        return list(images.values_list("pk", flat=True))
    recorded = ImageEmbedding.objects.filter(model_version=version.name)
    if mode == "failed":
        return list(recorded.filter(status=EmbeddingStatus.FAILED).order_by("image_id").values_list("image_id", flat=True))
    if mode == "missing":
        have = recorded.filter(status__in=[EmbeddingStatus.DONE, EmbeddingStatus.FAILED]).values("image_id")
        missing = list(images.exclude(pk__in=have).values_list("pk", flat=True))
        # And images saved again since they were embedded (their recorded work is pending).
        return list(dict.fromkeys(missing + outbox.pending_ids(WorkKind.EMBED)))
    raise ValueError(f"mode must be 'missing', 'failed' or 'all', not {mode!r}")


def coverage(version: ModelVersion) -> dict[str, int]:
    """How many host images have a done / failed vector under a version, of how many."""
    Image = get_image_model()
    recorded = ImageEmbedding.objects.filter(model_version=version.name)
    return {
        "images": Image._default_manager.count(),
        "done": recorded.filter(status=EmbeddingStatus.DONE).count(),
        "failed": recorded.filter(status=EmbeddingStatus.FAILED).count(),
    }


def chunked(ids: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of ``ids`` of at most ``size`` items."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def index_catalogue(
    mode: str = "missing",
    *,
    batch_size: int | None = None,
    chunk_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> ExtractionReport:
    """Embeds the catalogue's images, then serves the version once the catalogue is complete.

    Args:
        mode: which images, see :func:`images_to_index`.
        chunk_size: images loaded and written per :func:`embed_images` call.
    """
    version = target_embedder_version()
    report = ExtractionReport()
    ids = images_to_index(mode, version)
    for chunk in chunked(ids, chunk_size):
        report.merge(embed_images(chunk, version=version, force=mode != "missing",
                                  batch_size=batch_size, progress=progress))
    activate_if_complete(version)
    return report


def activate_if_complete(version: ModelVersion | None = None) -> bool:
    """Serves the target version once every image of the catalogue has a vector (or a
    recorded failure) under it; returns whether it is served."""
    from .embedders import activate_embedder, ensure_indexes

    version = version or target_embedder_version()
    if version.is_active:
        ensure_indexes(version)
        return True
    state = coverage(version)
    if state["done"] + state["failed"] < state["images"]:
        return False
    activate_embedder(version, note=f"catalogue complete: {state}")
    return True
