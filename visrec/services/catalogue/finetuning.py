"""Fine-tuning the embedder on the shop's own catalogue, with a guarded switch.

Steps of :func:`train_embedder` (the nightly Celery task and ``visrec_train_embedder``):

1. read the catalogue's backbone vectors (the active version's *base* version);
2. hold out 20% of products (a stable hash of their id);
3. decode every image once: embed one augmented view of it (crop, flip, scale: no colour
   change) and take its colour descriptor (:mod:`visrec.colour`);
4. train a projection head (:mod:`visrec.training.projection`): supervised by the host's
   categories where ``CATEGORY_FIELD`` is set, self-supervised by the views otherwise;
   keep one prototype per category and choose the shares of colour and category affinity
   (:func:`choose_fusion`, on half of the held-out products);
5. save the head as a versioned artefact and re-embed the whole catalogue under the new
   version (the head applied to the stored backbone vectors, fused with the colours: no
   CNN pass needed; extraction computes the same vector for a new image);
6. measure old and new on the other held-out products: precision@10 of same category (or,
   without categories, how often an augmented view finds its own product first);
7. switch to the new version only if it is at least as good; otherwise keep the old,
   drop the new vectors and record why in the version's notes.

A failure anywhere leaves the served version untouched.
"""
from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from PIL import Image, ImageOps

from ...colour import DEFAULT_BINS, batch_descriptors
from ...conf import get_image_model, visrec_settings
from ...embedder import served_vectors
from ...evaluation.embeddings import precision_at_k
from ...imaging import ImageRejected, decode_image, preprocess_image
from ...models import EmbeddingStatus, ImageEmbedding, ModelKind, ModelVersion, ProductEmbedding
from ...training.projection import TrainingConfig, category_prototypes, train_head
from ..db import vector_index
from . import products
from .embedders import activate_embedder, active_embedder_version, load_embedder
from .extraction import preprocess_config, read_image_file, update_product_vectors

logger = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2
#: Colour and category-affinity weights that :func:`choose_fusion` tries.
COLOUR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
CATEGORY_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
#: Fewer held-out products than this cannot measure precision@10 of categories.
MIN_JUDGED_PRODUCTS = 10
#: ``"auto"``'s colour weight for a catalogue without categories.
UNLABELLED_COLOUR_WEIGHT = 0.3


class NothingToTrain(RuntimeError):
    """The catalogue has no embedded images to learn from."""


@dataclass
class TrainingOutcome:
    version: str
    promoted: bool
    old_score: float
    new_score: float
    metric: str
    reason: str


def is_held_out(product_id: int) -> bool:
    """Stable 20% split of products by a hash of their id."""
    digest = hashlib.sha256(f"visrec-holdout:{product_id}".encode()).digest()
    return digest[0] < 256 * HOLDOUT_FRACTION


def _catalogue(base_version: str):
    rows = list(
        ImageEmbedding.objects.filter(model_version=base_version, status=EmbeddingStatus.DONE)
        .order_by("image_id").values_list("image_id", "product_id", "vector", "content_hash")
    )
    if not rows:
        raise NothingToTrain(f"no embedded images under {base_version}; run visrec_index first")
    image_ids = np.array([r[0] for r in rows], dtype=np.int64)
    product_ids = np.array([r[1] for r in rows], dtype=np.int64)
    vectors = np.stack([np.asarray(r[2], dtype=np.float32) for r in rows])
    hashes = [r[3] for r in rows]
    return image_ids, product_ids, vectors, hashes


def product_categories(product_ids) -> dict[int, object]:
    """The host's category of each product (``{}`` when CATEGORY_FIELD is "")."""
    return products.primary_categories(product_ids)


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """A view of the same product: random crop (60-100% of the side), flip, small rotation."""
    width, height = image.size
    scale = rng.uniform(0.6, 1.0)
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    view = image.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    angle = rng.uniform(-12, 12)
    return view.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=(255, 255, 255))


def training_views(embedder, image_ids: np.ndarray, base: np.ndarray, seed: int, progress=None,
                   view_rows: np.ndarray | None = None):
    """What training needs from the pixels, in one decoding pass over the catalogue.

    Args:
        view_rows: bool (N,): the images that get an augmented view through the CNN (default
            all); the others keep their base vector as their view. The CNN pass is most of a
            fine-tuning's time on CPUs, so large catalogues view a sample (``FINETUNE_MAX_VIEWS``).

    Returns:
        ``(views, colours)``: the backbone vectors of one augmented view of each image
        (its base vector where the file is unreadable or not viewed) and the colour descriptor
        of each image (:func:`visrec.colour.batch_descriptors` of its preprocessed array, the
        same computation extraction does; a zero row where unreadable).
    """
    Image_ = get_image_model()
    field = visrec_settings.IMAGE_FIELD
    objs = Image_._default_manager.in_bulk(image_ids.tolist())
    backbone = embedder.backbone
    config = preprocess_config(backbone)
    views = base.copy()
    colours = np.zeros((len(image_ids), DEFAULT_BINS**3), dtype=np.float32)
    batch_size = visrec_settings.EXTRACTION_BATCH_SIZE
    for start in range(0, len(image_ids), batch_size):
        arrays, originals, rows, colour_rows = [], [], [], []
        for row in range(start, min(start + batch_size, len(image_ids))):
            obj = objs.get(int(image_ids[row]))
            if obj is None:
                continue
            try:
                image = decode_image(read_image_file(getattr(obj, field), config.max_bytes), config)
            except ImageRejected:
                continue
            if view_rows is None or view_rows[row]:
                view = augment(image, random.Random(seed * 1_000_003 + int(image_ids[row])))
                arrays.append(preprocess_image(view, config))
                rows.append(row)
            originals.append(preprocess_image(image, config))
            colour_rows.append(row)
        if arrays:
            views[rows] = backbone.embed(np.stack(arrays))
        if originals:
            colours[colour_rows] = batch_descriptors(np.stack(originals), backbone.mean, backbone.std, DEFAULT_BINS)
        if progress:
            progress(min(batch_size, len(image_ids) - start))
    return views, colours


def _product_vectors(image_vectors: np.ndarray, product_ids: np.ndarray, products: list[int]) -> np.ndarray:
    """Each product's vector: the normalised mean of its images' vectors (as extraction stores it)."""
    index = {p: i for i, p in enumerate(products)}
    out = np.zeros((len(products), image_vectors.shape[1]), dtype=np.float64)
    for row, product in enumerate(product_ids):
        i = index.get(int(product))
        if i is not None:
            out[i] += image_vectors[row]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def in_selection_half(product_id: int) -> bool:
    """Half of the held-out products choose the fusion weights; the other half judges the version."""
    return hashlib.sha256(f"visrec-fusion:{product_id}".encode()).digest()[0] % 2 == 0


def judging_split(held_products: set[int]) -> tuple[set[int], bool, set[int]]:
    """Which held-out products choose the fusion weights and which judge the version.

    Returns:
        ``(selection, split, judged)``: with enough held-out products the two halves of
        :func:`in_selection_half` (``split`` true); otherwise both are all of them.
    """
    selection = {p for p in held_products if in_selection_half(p)}
    split = min(len(selection), len(held_products) - len(selection)) > MIN_JUDGED_PRODUCTS
    if not split:  # too few to split: the weights are chosen and judged on the same products
        return set(held_products), False, set(held_products)
    return selection, True, held_products - selection


def choose_fusion(fused, product_ids, rows, categories) -> tuple[float, float, dict]:
    """The shares of colour and category affinity in the served vectors.

    With the host's categories: on held-out products (the selection half), the largest
    colour weight of 0, 0.1 ... 0.5 (or ``COLOUR_WEIGHT`` when it is a number) for which
    some category weight of 0, 0.1 ... 0.3 keeps same-category precision@10 at least
    that of the head alone, with the smallest such category weight: as much colour as
    the catalogue's own categories say costs nothing. Without categories nothing can say
    what colour costs: ``"auto"`` takes 0.3 and no category term.

    Args:
        fused: ``callable(colour_weight, category_weight, rows) -> served vectors`` of those image rows.
        rows: image rows of the selection products.

    Returns:
        ``(colour_weight, category_weight, {"colour,category": precision})``.
    """
    setting = visrec_settings.COLOUR_WEIGHT
    colour_weights = COLOUR_WEIGHTS if setting == "auto" else (float(setting),)
    selection = sorted({int(p) for p in product_ids[rows]})
    if not categories or len(selection) <= MIN_JUDGED_PRODUCTS:
        return (UNLABELLED_COLOUR_WEIGHT if setting == "auto" else float(setting)), 0.0, {}
    labels = [categories.get(p) for p in selection]

    def score(colour: float, category: float) -> float:
        return _score(_product_vectors(fused(colour, category, rows), product_ids[rows], selection), labels)

    tried = {(0.0, 0.0): score(0.0, 0.0)}
    floor = tried[(0.0, 0.0)]
    chosen = (0.0, 0.0)
    for colour in sorted(colour_weights):
        for category in CATEGORY_WEIGHTS:
            if (colour, category) not in tried:
                tried[(colour, category)] = score(colour, category)
            if tried[(colour, category)] >= floor:
                chosen = (colour, category)
                break
    if setting != "auto" and chosen[0] != float(setting):  # a fixed colour weight is kept regardless
        best = max(CATEGORY_WEIGHTS, key=lambda c: tried[(float(setting), c)])
        chosen = (float(setting), best)
    return chosen[0], chosen[1], {f"{c},{k}": round(v, 4) for (c, k), v in tried.items()}


def _score(vectors: np.ndarray, labels: list, k: int = 10) -> float:
    return precision_at_k(vectors, labels, k=k)


def _self_retrieval(queries: np.ndarray, catalogue: np.ndarray) -> float:
    """How often a view's nearest catalogue vector is its own image (rows aligned)."""
    nearest = np.argmax(queries @ catalogue.T, axis=1)
    return float(np.mean(nearest == np.arange(len(queries))))


def train_embedder(config: TrainingConfig | None = None, progress=None) -> TrainingOutcome:
    """Trains, re-embeds, evaluates and (if not worse) switches the served embedder.

    Args:
        config: head hyper-parameters.
        progress: optional ``callable(stage: str, done: int, total: int)``.
    """
    config = config or TrainingConfig()
    active = active_embedder_version()
    if active is None:
        raise NothingToTrain("no embedder is served yet; run visrec_index first")
    embedder = load_embedder(active)
    base_version = active.metrics.get("base_version", active.name)
    image_ids, product_ids, base, hashes = _catalogue(base_version)
    categories = product_categories(product_ids)
    category_index = {c: i for i, c in enumerate(sorted({c for c in categories.values() if c is not None}, key=str))}
    cat = np.array([category_index.get(categories.get(int(p)), -1) for p in product_ids], dtype=np.int64)
    held = np.array([is_held_out(int(p)) for p in product_ids])
    train_rows = np.flatnonzero(~held)
    if len(train_rows) < 4:
        raise NothingToTrain("fewer than 4 training images")

    def tick(stage):
        return (lambda n: progress(stage, n)) if progress else None

    held_products = {int(p) for p in product_ids[held]}
    selection, split, judged_products = judging_split(held_products)
    by_category = bool(categories) and len(judged_products) > MIN_JUDGED_PRODUCTS
    budget = visrec_settings.FINETUNE_MAX_VIEWS
    view_rows = None
    if budget and len(train_rows) > budget:  # a stable sample of the training images, by a hash of the image
        order = np.argsort([hashlib.sha256(f"visrec-view:{i}".encode()).digest() for i in image_ids[train_rows]])
        view_rows = np.zeros(len(image_ids), dtype=bool)
        view_rows[train_rows[order[:budget]]] = True
        if not by_category:  # only the self-retrieval judge needs the held-out images' views
            view_rows |= held
    views, colours = training_views(embedder, image_ids, base, seed=config.seed, progress=tick("augment"),
                                    view_rows=view_rows)
    _, group = np.unique(product_ids, return_inverse=True)
    head, history = train_head(base[train_rows], views[train_rows], cat[train_rows], group[train_rows], config,
                               progress=(lambda e, loss: progress("train", 1)) if progress else None)
    head_vectors = head.project(base)  # once: every fusion tried below reuses it
    head.prototypes = category_prototypes(head_vectors[train_rows], cat[train_rows])
    selection_rows = np.flatnonzero([int(p) in selection for p in product_ids])

    def fused(colour: float, category: float, rows=slice(None)) -> np.ndarray:
        return served_vectors(head_vectors[rows], colours[rows], head.prototypes, colour,
                              category if head.prototypes is not None else 0.0)

    colour_weight, category_weight, trials = choose_fusion(fused, product_ids, selection_rows, categories)
    projected = fused(colour_weight, category_weight)

    name = f"{base_version}+ft{timezone.now():%Y%m%dT%H%M%S%f}"
    vector_index.validate_version(name)
    version = ModelVersion(
        kind=ModelKind.EMBEDDER, name=name, dimensions=projected.shape[1],
        metrics={"backbone": active.metrics.get("backbone"), "base_version": base_version,
                 "fusion": {"colour": colour_weight, "category": category_weight, "bins": DEFAULT_BINS,
                            "selection_precision": trials, "selection_products": len(selection)},
                 "training": {"images": int(len(train_rows)), "held_out_images": int(held.sum()),
                              "epochs_run": len(history),
                              "viewed_images": int(len(image_ids) if view_rows is None else view_rows.sum()),
                              "supervised": bool((cat >= 0).any()), "final_loss": history[-1] if history else None,
                              "config": config.__dict__}},
    )
    version.artefact.save(f"{name.replace('@', '_').replace('+', '_')}.pt", ContentFile(head.to_bytes()), save=False)
    version.save()
    try:
        _write_version(version.name, image_ids, product_ids, projected, hashes)
        update_product_vectors(product_ids.tolist(), [version.name])
        # The version is judged on the held-out products that did not choose its weights.
        judged = held & ~np.isin(product_ids, list(selection)) if split else held
        outcome = _evaluate_and_switch(active, version, projected, base, views, colours, product_ids, categories,
                                       judged)
    except Exception:
        _drop_version_vectors(version.name)
        version.notes = "training failed; the previous version keeps serving"
        version.save(update_fields=["notes"])
        raise
    return outcome


def _write_version(name: str, image_ids, product_ids, vectors, hashes) -> None:
    now = timezone.now()
    step = 2000
    for start in range(0, len(image_ids), step):
        ImageEmbedding.objects.bulk_create(
            [ImageEmbedding(image_id=int(i), product_id=int(p), model_version=name, content_hash=h,
                            status=EmbeddingStatus.DONE, vector=v, updated_at=now)
             for i, p, v, h in zip(image_ids[start:start + step], product_ids[start:start + step],
                                   vectors[start:start + step], hashes[start:start + step])],
            update_conflicts=True, unique_fields=["image", "model_version"],
            update_fields=["product", "content_hash", "status", "vector", "updated_at"],
        )


def _drop_version_vectors(name: str) -> None:
    with transaction.atomic():
        ImageEmbedding.objects.filter(model_version=name).delete()
        ProductEmbedding.objects.filter(model_version=name).delete()


def _product_matrix(version_name: str, product_ids: list[int]) -> np.ndarray:
    found = dict(ProductEmbedding.objects.filter(model_version=version_name, product_id__in=product_ids)
                 .values_list("product_id", "vector"))
    return np.stack([np.asarray(found[p], dtype=np.float32) for p in product_ids])


def _evaluate_and_switch(active, version, projected, base, views, colours, product_ids, categories,
                         held) -> TrainingOutcome:
    held_products = sorted({int(p) for p in product_ids[held]})
    if categories and len(held_products) > MIN_JUDGED_PRODUCTS:
        metric = "held-out precision@10 (same category)"
        labels = [categories.get(p) for p in held_products]
        old = _score(_product_matrix(active.name, held_products), labels)
        new = _score(_product_matrix(version.name, held_products), labels)
    else:
        metric = "held-out self-retrieval of augmented views"
        rows = np.flatnonzero(held)
        old_embedder, new_embedder = load_embedder(active), load_embedder(version)
        old = _self_retrieval(old_embedder.served_from(views[rows], colours[rows]),
                              old_embedder.served_from(base[rows], colours[rows]))
        new = _self_retrieval(new_embedder.served_from(views[rows], colours[rows]), projected[rows])
    version.metrics = {**version.metrics, "evaluation": {"metric": metric, "old_version": active.name,
                                                         "old": old, "new": new, "held_out_products": len(held_products)}}
    if new >= old:
        reason = f"promoted: {metric} {new:.4f} >= {old:.4f} of {active.name}"
        version.notes = reason
        version.save(update_fields=["metrics", "notes"])
        activate_embedder(version, note=reason)
        promoted = True
    else:
        reason = f"kept {active.name}: {metric} {new:.4f} < {old:.4f}"
        version.notes = reason
        version.save(update_fields=["metrics", "notes"])
        _drop_version_vectors(version.name)
        promoted = False
    logger.info("visrec: %s", reason)
    return TrainingOutcome(version.name, promoted, old, new, metric, reason)
