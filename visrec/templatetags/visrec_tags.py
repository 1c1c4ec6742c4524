"""Template tags: ``{% load visrec_tags %}`` then ``{% visually_similar product limit=8 %}``.

A tag never breaks a page: a product without a vector gets a same-category fallback
(or nothing), and any error is logged and renders nothing.
"""
from __future__ import annotations

import logging

from django import template

from ..services.serving import presentation, similar

logger = logging.getLogger(__name__)
register = template.Library()


@register.inclusion_tag("visrec/widgets/visually_similar.html", takes_context=True)
def visually_similar(context, product, limit: int = 8, title: str = "Looks like this", **filters) -> dict:
    """A row of products that look like ``product`` (filters: in_stock, category, ...)."""
    try:
        ranked = similar.similar_or_fallback(getattr(product, "pk", product), int(limit), similar.parse_filters(**filters))
        cards = presentation.product_cards(ranked)
    except Exception:  # noqa: BLE001 - a widget must never break the page
        logger.exception("visrec: visually_similar failed for %r", product)
        cards = []
    return {"products": cards, "title": title, "widget": "similar", "request": context.get("request")}


@register.inclusion_tag("visrec/widgets/recommended_for_you.html", takes_context=True)
def recommended_for_you(context, limit: int = 8, title: str = "Picked for you", **filters) -> dict:
    """A row of products for the requesting shopper (trained model + session, or trending)."""
    from ..services.foryou import recommend as foryou
    from ..services.privacy.tracking import subject_for_request

    request = context.get("request")
    cards, source = [], ""
    try:
        if request is not None:
            ranked, source = foryou.recommend_for_subject(subject_for_request(request), int(limit),
                                                          similar.parse_filters(**filters))
            cards = presentation.product_cards(ranked)
    except Exception:  # noqa: BLE001 - a widget must never break the page
        logger.exception("visrec: recommended_for_you failed")
        cards = []
    return {"products": cards, "title": title, "widget": "foryou", "source": source, "request": request}
