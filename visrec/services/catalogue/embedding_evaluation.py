"""What the embeddings are worth: precision@k of nearest neighbours on known labels.

Compares, on the same products, every embedder version that has product vectors (the
pretrained backbone, fine-tuned versions) and a colour-histogram baseline computed from
the product images. Labels are the host's categories and, when a ground-truth file is
given, any per-product attributes in it (the demo writes colour, pattern and style).

Ground-truth format (JSON)::

    {"products": [{"pk": 17, "colour": "red", "pattern": "stripes"}, ...]}

(``"products"`` may also be a mapping whose values are such objects.)
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...conf import get_image_model, visrec_settings
from ...evaluation.embeddings import colour_histogram_features, plot_map, precision_at_k, project_2d
from ...models import ModelKind, ModelVersion, ProductEmbedding
from .finetuning import product_categories

logger = logging.getLogger(__name__)

HISTOGRAM = "colour histogram (baseline)"


@dataclass
class EvaluationReport:
    rows: list[dict] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    maps: dict[str, str] = field(default_factory=dict)
    products: int = 0


def load_ground_truth(path: str | Path) -> dict[int, dict]:
    """Per-product attributes from a ground-truth JSON file, keyed by product pk."""
    data = json.loads(Path(path).read_text())
    products = data.get("products", data)
    items = products.values() if isinstance(products, dict) else products
    out = {}
    for item in items:
        pk = item.get("pk", item.get("id"))
        if pk is not None:
            out[int(pk)] = {k: v for k, v in item.items() if k not in {"pk", "id", "slug", "name"}}
    return out


def _first_images(product_ids: list[int], size: int = 96) -> list[Image.Image | None]:
    """The first image of each product, small, for the histogram baseline and map thumbnails."""
    Image_ = get_image_model()
    product_attr = Image_._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD).attname
    order = [product_attr, visrec_settings.IMAGE_ORDER_FIELD or "pk", "pk"]
    first: dict[int, object] = {}
    for obj in Image_._default_manager.filter(**{f"{product_attr}__in": product_ids}).order_by(*order):
        first.setdefault(getattr(obj, product_attr), obj)
    images: list[Image.Image | None] = []
    for pid in product_ids:
        obj = first.get(pid)
        try:
            with getattr(obj, visrec_settings.IMAGE_FIELD).open("rb") as handle:
                image = Image.open(handle)
                image.draft("RGB", (size, size))
                image = image.convert("RGB")
                image.thumbnail((size, size))
        except Exception:  # noqa: BLE001 - an unreadable image gets no thumbnail
            image = None
        images.append(image)
    return images


def _category_names(values: list | None) -> list[str] | None:
    """Display names for category values (the related object's str when the field is a ForeignKey)."""
    if not values:
        return None
    from ...conf import get_product_model

    field = get_product_model()._meta.get_field(visrec_settings.CATEGORY_FIELD)
    if not field.is_relation:
        return [str(v) for v in values]
    names = {obj.pk: str(obj) for obj in field.related_model._default_manager.filter(pk__in=set(values))}
    return [names.get(v, str(v)) for v in values]


def evaluate_embeddings(
    *,
    ground_truth: str | Path | None = None,
    k: int = 10,
    output_dir: str | Path | None = None,
    versions: list[str] | None = None,
    max_products: int | None = None,
) -> EvaluationReport:
    """Precision@k per method and label, and a 2-D map per method.

    Args:
        ground_truth: optional JSON of per-product attributes (see module docstring).
        k: neighbours per product.
        output_dir: where the maps (PNG) go; no maps when ``None``.
        versions: embedder versions to compare (default: every version with product vectors).
        max_products: evaluate on the first N products (by pk) that every method covers.
    """
    if versions is None:
        versions = list(ModelVersion.objects.filter(kind=ModelKind.EMBEDDER).order_by("created_at")
                        .values_list("name", flat=True))
    versions = [v for v in versions if ProductEmbedding.objects.filter(model_version=v).exists()]
    if not versions:
        raise LookupError("no product vectors yet; run visrec_index first")
    common = None
    for name in versions:
        ids = set(ProductEmbedding.objects.filter(model_version=name).values_list("product_id", flat=True))
        common = ids if common is None else common & ids
    product_ids = sorted(common)[: max_products or None]
    categories = product_categories(product_ids)
    truth = load_ground_truth(ground_truth) if ground_truth else {}
    labels: dict[str, list] = {}
    if categories:
        labels["category"] = [categories.get(p) for p in product_ids]
    attributes = sorted({key for attrs in truth.values() for key in attrs if key != "category"})
    for key in attributes:
        if key in {"colour", "pattern", "color"}:
            labels[key] = [truth.get(p, {}).get(key) for p in product_ids]
    if categories and "colour" in labels:
        labels["category+colour"] = [
            None if c is None or col is None else f"{c}|{col}" for c, col in zip(labels["category"], labels["colour"])
        ]
    images = _first_images(product_ids)
    methods: dict[str, np.ndarray] = {}
    for name in versions:
        found = dict(ProductEmbedding.objects.filter(model_version=name, product_id__in=product_ids)
                     .values_list("product_id", "vector"))
        methods[name] = np.stack([np.asarray(found[p], dtype=np.float32) for p in product_ids])
    blank = Image.new("RGB", (8, 8), (255, 255, 255))
    methods[HISTOGRAM] = colour_histogram_features([im or blank for im in images])

    report = EvaluationReport(products=len(product_ids), columns=["method", *[f"P@{k} {n}" for n in labels]])
    for method, vectors in methods.items():
        row = {"method": method}
        for name, values in labels.items():
            row[f"P@{k} {name}"] = precision_at_k(vectors, values, k=k)
        report.rows.append(row)
        if output_dir is not None:
            coords, how = project_2d(vectors)
            slug = "".join(ch if ch.isalnum() else "_" for ch in method)[:60]
            path = Path(output_dir) / f"map_{slug}.png"
            label_for_map = _category_names(labels.get("category")) or ["product"] * len(product_ids)
            plot_map(coords, [im or blank for im in images], [str(x) for x in label_for_map], path,
                     title=f"{method} — {how} of {len(product_ids)} products, coloured by category")
            report.maps[method] = str(path)
    return report
