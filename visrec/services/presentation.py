"""Product cards for widgets and API responses: two queries whatever the number of products."""
from __future__ import annotations

from collections.abc import Sequence

from ..conf import get_image_model, get_product_model, visrec_settings


def product_cards(ranked: Sequence[tuple[int, float]]) -> list[dict]:
    """Display data for ranked products, in the given order.

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
    products = Product._default_manager.in_bulk(ids)
    product_attr = Image._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD).attname
    order = [product_attr, visrec_settings.IMAGE_ORDER_FIELD or "pk", "pk"]
    first_image: dict[int, object] = {}
    for image in Image._default_manager.filter(**{f"{product_attr}__in": ids}).order_by(*order):
        first_image.setdefault(getattr(image, product_attr), image)
    price_field = visrec_settings.PRICE_FIELD
    cards = []
    for pid, score in ranked:
        product = products.get(pid)
        if product is None:
            continue
        image = first_image.get(pid)
        file = getattr(image, visrec_settings.IMAGE_FIELD) if image is not None else None
        cards.append({
            "pk": pid,
            "product": product,
            "name": str(product),
            "url": product.get_absolute_url() if hasattr(product, "get_absolute_url") else "",
            "price": getattr(product, price_field, None) if price_field else None,
            "image_url": file.url if file else "",
            "alt": getattr(image, "alt_text", "") or str(product),
            "score": score,
        })
    return cards
