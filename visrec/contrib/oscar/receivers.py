"""oscar's signals as visrec events: product pages viewed, basket additions, checkouts.

Every receiver records through :mod:`visrec.services.privacy.tracking` (consent, pseudonyms,
bounds apply) and never breaks oscar's view: an error is logged (logger ``visrec.contrib.oscar``),
visrec's writes are rolled back to a savepoint and the page goes on.
Purchases come only from the server (oscar's ``post_checkout``), never from the browser.
"""
from __future__ import annotations

import logging

from django.db import transaction

from ...pseudonyms import subject_key
from ...services.privacy.tracking import EventIn, record_events, subject_for_request, track

logger = logging.getLogger("visrec.contrib.oscar")


def product_viewed(sender, product, user, request, response=None, **kwargs) -> None:
    """oscar's ``product_viewed``: a view of the product (a variant's counts for its parent)."""
    _safely("view", lambda: track(request, "view", product))


def basket_addition(sender, product, user, request, **kwargs) -> None:
    """oscar's ``basket_addition``: the product went into the basket."""
    _safely("cart", lambda: track(request, "cart", product))


def post_checkout(sender, order, user, request, response=None, **kwargs) -> None:
    """oscar's ``post_checkout``: one purchase per product of the order."""
    _safely("purchase", lambda: record_order(order, request))


def record_order(order, request=None) -> int:
    """Records the order's products as purchases; returns how many were stored.

    For orders placed outside oscar's checkout views. With ``request`` (the shopper's own),
    the purchases are that shopper's, as from ``post_checkout``; without one (a payment
    provider's callback, an import) they are the order's customer's, and a guest order
    without a request records nothing. Lines whose product was deleted are skipped.
    """
    products = list(dict.fromkeys(line.product_id for line in order.lines.all() if line.product_id is not None))
    if not products:
        return 0
    if request is not None:
        subject = subject_for_request(request)
    elif order.user_id is not None:
        subject = subject_key("user", order.user_id)
    else:
        return 0
    events = [EventIn(event_type="purchase", product=product_id) for product_id in products]
    return record_events(subject, events, request)


def _safely(what: str, record) -> None:
    """Runs ``record`` in a savepoint: a database error in it rolls back visrec's writes only,
    not the request's transaction (oscar's ``ATOMIC_REQUESTS``), which the page still uses."""
    try:
        with transaction.atomic():
            record()
    except Exception:  # noqa: BLE001 - visrec must never break oscar's pages
        logger.exception("visrec: could not record a %s event", what)


def connect() -> None:
    """Connects the receivers (from ``VisrecOscarConfig.ready``)."""
    from oscar.apps.basket.signals import basket_addition as basket_signal
    from oscar.apps.catalogue.signals import product_viewed as viewed_signal
    from oscar.apps.checkout.signals import post_checkout as checkout_signal

    viewed_signal.connect(product_viewed, dispatch_uid="visrec_oscar_product_viewed")
    basket_signal.connect(basket_addition, dispatch_uid="visrec_oscar_basket_addition")
    checkout_signal.connect(post_checkout, dispatch_uid="visrec_oscar_post_checkout")
