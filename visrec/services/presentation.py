"""Product cards for widgets and API responses: one query whatever the number of products."""
from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import FieldDoesNotExist
from django.db.models import OuterRef, Subquery

from ..conf import get_image_model, get_product_model, visrec_settings

#: The image model's field read for the card's alt text when it has one (else the product's name).
ALT_TEXT_FIELD = "alt_text"


def product_cards(ranked: Sequence[tuple[int, float]]) -> list[dict]:
    """Display data for ranked products, in the given order.

    One query: the products, each with its first image's file name (and alt text) read by
    a subquery in the image model's order.

    Args:
        ranked: ``[(product_id, score), ...]``.

    Returns:
        one dict per product still in the catalogue: ``pk``, ``name``, ``url``,
        ``price``, ``image_url``, ``alt``, ``score`` and ``product`` (the instance).
    """
    ids = [pid for pid, _ in ranked]
    if not ids:
        return []
    Product = get_product_model()
    Image = get_image_model()
    product_attr = Image._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD).attname
    first = Image._default_manager.filter(**{product_attr: OuterRef("pk")}).order_by(
        visrec_settings.IMAGE_ORDER_FIELD or "pk", "pk")
    annotations = {"_visrec_image": Subquery(first.values(visrec_settings.IMAGE_FIELD)[:1])}
    if _has_field(Image, ALT_TEXT_FIELD):
        annotations["_visrec_alt"] = Subquery(first.values(ALT_TEXT_FIELD)[:1])
    products = Product._default_manager.annotate(**annotations).order_by().in_bulk(ids)
    storage = Image._meta.get_field(visrec_settings.IMAGE_FIELD).storage
    price_field = visrec_settings.PRICE_FIELD
    cards = []
    for pid, score in ranked:
        product = products.get(pid)
        if product is None:
            continue
        image_name = product._visrec_image
        cards.append({
            "pk": pid,
            "product": product,
            "name": str(product),
            "url": product.get_absolute_url() if hasattr(product, "get_absolute_url") else "",
            "price": getattr(product, price_field, None) if price_field else None,
            "image_url": storage.url(image_name) if image_name else "",
            "alt": getattr(product, "_visrec_alt", "") or str(product),
            "score": score,
        })
    return cards


def _has_field(model, name: str) -> bool:
    try:
        return model._meta.get_field(name).concrete
    except FieldDoesNotExist:
        return False
