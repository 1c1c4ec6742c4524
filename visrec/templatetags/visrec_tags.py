"""Template tags: ``{% load visrec_tags %}`` then ``{% visually_similar product limit=8 %}``.

A tag never breaks a page: a product without a vector gets a same-category fallback
(or nothing), and any error is logged and renders nothing. Tags on one page know what the
ones before them showed (kept on the request), so ``{% recommended_for_you product=product %}``
after ``{% visually_similar product %}`` repeats neither the product nor its look-alikes.
"""
from __future__ import annotations

import logging

from django import template
from django.urls import reverse

from .. import __version__
from ..services.serving import presentation, similar

logger = logging.getLogger(__name__)
register = template.Library()

#: Attribute of the request holding the product ids visrec's widgets showed on the page.
SHOWN_ATTRIBUTE = "_visrec_shown"


def _shown(request) -> set:
    """The ids shown by earlier visrec widgets of this request (a set kept on the request)."""
    if request is None:
        return set()
    shown = getattr(request, SHOWN_ATTRIBUTE, None)
    if shown is None:
        shown = set()
        setattr(request, SHOWN_ATTRIBUTE, shown)
    return shown


@register.inclusion_tag("visrec/widgets/visually_similar.html", takes_context=True)
def visually_similar(context, product, limit: int = 8, title: str = "Looks like this", **filters) -> dict:
    """A row of products that look like ``product`` (filters: in_stock, category, ...)."""
    request = context.get("request")
    try:
        ranked = similar.similar_or_fallback(getattr(product, "pk", product), int(limit), similar.parse_filters(**filters))
        cards = presentation.product_cards(ranked)
    except Exception:  # noqa: BLE001 - a widget must never break the page
        logger.exception("visrec: visually_similar failed for %r", product)
        cards = []
    _shown(request).update(card["pk"] for card in cards)
    return {"products": cards, "title": title, "widget": "similar", "request": request}


@register.inclusion_tag("visrec/widgets/recommended_for_you.html", takes_context=True)
def recommended_for_you(context, limit: int = 8, title: str = "Picked for you", product=None, explain: bool = False,
                        **filters) -> dict:
    """A row of products for the requesting shopper (trained model + session, or trending).

    ``product``: the page's product, left out, with whatever visrec's widgets already showed
    on this page. ``explain``: each card says why it is there (``item.reason``).
    """
    from ..services.foryou import recommend

    request = context.get("request")
    cards, source = [], ""
    try:
        if request is not None:
            leave_out = set(_shown(request))
            if product is not None:
                leave_out.add(getattr(product, "pk", product))
            found = recommend.recommend_for_request(request, int(limit), similar.parse_filters(**filters),
                                                    leave_out=leave_out)
            source = found.source
            cards = presentation.product_cards(found.ranked)
            if explain:
                from ..services.foryou.explain import reason_fields

                reasons = reason_fields(found)
                cards = [{**card, "reason": reasons.get(card["pk"])} for card in cards]
    except Exception:  # noqa: BLE001 - a widget must never break the page
        logger.exception("visrec: recommended_for_you failed")
        cards = []
    _shown(request).update(card["pk"] for card in cards)
    return {"products": cards, "title": title, "widget": "foryou", "source": source, "request": request}


@register.inclusion_tag("visrec/script.html", takes_context=True)
def visrec_script(context, product=None) -> dict:
    """The tracking script (``visrec/visrec.js``): impressions and clicks of visrec's widgets and,
    with ``product``, a view of it reported from the browser (leave it out where the server
    records views, as the oscar adapter and ``visrec.track`` do)."""
    try:
        endpoint = reverse("visrec:events")
    except Exception:  # noqa: BLE001 - visrec's URLs not mounted: no script rather than a broken page
        logger.warning("visrec: visrec_script needs visrec.api.urls in the URLconf (namespace 'visrec')")
        return {"endpoint": ""}
    return {"endpoint": endpoint, "version": __version__, "csrf_token": context.get("csrf_token", ""),
            "product": getattr(product, "pk", product)}
