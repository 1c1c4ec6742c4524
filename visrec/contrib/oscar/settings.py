"""The settings an oscar shop gives visrec: where oscar keeps images, prices, stock and categories.

``VISREC = visrec_settings()`` (keyword arguments override or add keys, e.g.
``visrec_settings(BACKBONE="resnet50")``).
"""
from __future__ import annotations

from typing import Any

VISREC_PRODUCT_MODEL = "catalogue.Product"
VISREC_IMAGE_MODEL = "catalogue.ProductImage"

#: oscar's schema: images in ``ProductImage.original`` ordered by ``display_order``, prices and
#: stock on ``StockRecord`` rows, categories many-to-many, ``is_public`` for what shoppers may
#: see, variants as children of a parent product (visrec recommends the parent).
PRESET: dict[str, Any] = {
    "IMAGE_FIELD": "original",
    "IMAGE_PRODUCT_FIELD": "product",
    "IMAGE_ORDER_FIELD": "display_order",
    "IMAGE_ALT_FIELD": "caption",
    "CATEGORY_FIELD": "categories",
    "IN_STOCK_FILTER": {"stockrecords__num_in_stock__gt": 0},
    "PRICE_FIELD": "stockrecords__price",
    "VISIBILITY_FILTER": {"is_public": True},
    "PARENT_FIELD": "parent",
    "PRICE_FORMAT": "visrec.contrib.oscar.prices.format_price",
}


def visrec_settings(**overrides: Any) -> dict[str, Any]:
    """The ``VISREC`` dict for an oscar shop, with ``overrides`` applied."""
    return {**PRESET, **overrides}
