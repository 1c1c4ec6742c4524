"""Product cards for widgets and API responses: at most one query whatever the number of products.

A card is what a widget or an API response shows of a product: name, link, price, first
image and its alt text. Cards are kept in Django's cache (``CARD_CACHE_SECONDS``), so a
list whose cards are all cached costs one cache round trip and no query; saving or
deleting a product or one of its images forgets its card (signal handlers).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import connection
from django.db.models import F, OuterRef, Q, Subquery

from ...conf import get_image_model, get_product_model, visrec_settings
from ..catalogue import products
from ..db.cache_guard import cache
from ..db.cache_writes import read_many
from ..db.compiled_sql import SQLMemo

#: Cache key of a product's card; the version part changes whenever a card's fields do, so
#: cards cached by an older visrec are never read as current ones.
CARD_KEY = "visrec:card:1:{}"


def product_cards(ranked: Sequence[tuple[int, float]]) -> list[dict]:
    """Display data for ranked products, in the given order.

    Cached cards come from one cache round trip (which also sends this process's queued
    "similar" list writes, :mod:`~visrec.services.db.cache_writes`); the others from one query (the products,
    each with its first image's file name and alt text read by a subquery in the image
    model's order), then cached.

    Args:
        ranked: ``[(product_id, score), ...]``.

    Returns:
        one dict per product still shown in the catalogue: ``pk``, ``name``, ``url``,
        ``price``, ``price_display`` (``PRICE_FORMAT``'s text, made per call so that it follows
        the request's language), ``image_url``, ``alt`` and ``score``.
    """
    ids = [pid for pid, _ in ranked]
    if not ids:
        return []
    seconds = visrec_settings.CARD_CACHE_SECONDS
    keys = {pid: CARD_KEY.format(pid) for pid in ids}
    found = read_many(keys.values()) if seconds else {}  # with a "similar" list's queued write
    cards = {pid: found[key] for pid, key in keys.items() if key in found}
    missing = [pid for pid in ids if pid not in cards]
    if missing:
        loaded = _load_cards(missing)
        cards.update(loaded)
        if seconds and loaded:
            cache.set_many({keys[pid]: card for pid, card in loaded.items()}, seconds)
    show = price_formatter()
    return [{**cards[pid], "score": score, "price_display": show(cards[pid]["price"])}
            for pid, score in ranked if pid in cards]


def price_formatter() -> Callable[[object], str]:
    """``PRICE_FORMAT`` as a callable (``str`` of the number without one; "" for no price)."""
    format_price = visrec_settings.hook("PRICE_FORMAT")
    if format_price is None:
        return lambda value: "" if value is None else str(value)
    return lambda value: "" if value is None else str(format_price(value))


def forget_cards(product_ids: Iterable[int]) -> None:
    """Drops cached cards (after changes that bypass the model signals, e.g. ``QuerySet.update``)."""
    keys = [CARD_KEY.format(pid) for pid in product_ids]
    if keys:
        cache.delete_many(keys)


def _load_cards(ids: list[int]) -> dict[int, dict]:
    """Cards of products read from the database in one query: ``{pk: card}``.

    For a plain product manager (see :func:`_card_sql`) the query's SQL is compiled once
    per ``CANDIDATE_SQL_SECONDS`` (:data:`_CARD_SQL`) and the ids go in as one array
    parameter: compiling it cost 1.1 of the 2.2 ms of CPU that ten cards took here (timed
    ad hoc). Otherwise the ORM compiles it on each call (``in_bulk``), with the manager's
    ``select_related`` and annotations as they are.
    """
    Product = get_product_model()
    sql, params = _CARD_SQL.get("cards", _card_sql)
    if sql:
        pk = Product._meta.pk
        rows = Product._default_manager.raw(sql, [*params, [pk.get_db_prep_value(p, connection) for p in ids]])
    else:
        rows = _cards_queryset().in_bulk(ids).values()
    storage = get_image_model()._meta.get_field(visrec_settings.IMAGE_FIELD).storage
    price_attribute = products.price_attribute()
    cards = {}
    for product in rows:
        image_name = product._visrec_image
        cards[product.pk] = {
            "pk": product.pk,
            "name": str(product),
            "url": product.get_absolute_url() if hasattr(product, "get_absolute_url") else "",
            "price": getattr(product, price_attribute, None) if price_attribute else None,
            "image_url": storage.url(image_name) if image_name else "",
            "alt": getattr(product, "_visrec_alt", None) or str(product),
        }
    return cards


#: The card query's compiled SQL, or ``""`` for the ORM's path (see :func:`_load_cards`).
_CARD_SQL = SQLMemo(size=1)


def _cards_queryset():
    """The shown products (:func:`~visrec.services.catalogue.products.shown_products`), each
    with its first image's file name (and alt text, when the image model has
    ``IMAGE_ALT_FIELD``) read by a subquery in the image model's order (with variants, the
    children's images after the product's own) and, where it needs one, its price."""
    Image = get_image_model()
    product_field = Image._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD)
    own = Q(**{product_field.attname: OuterRef("pk")})
    order = [visrec_settings.IMAGE_ORDER_FIELD or "pk", "pk"]
    parent = visrec_settings.PARENT_FIELD
    if parent:
        own |= Q(**{f"{product_field.name}__{parent}": OuterRef("pk")})
        # The product's own images first (their product has no parent), then its children's.
        order.insert(0, F(f"{product_field.name}__{parent}").asc(nulls_first=True))
    first = Image._default_manager.filter(own).order_by(*order)
    annotations = {"_visrec_image": Subquery(first.values(visrec_settings.IMAGE_FIELD)[:1])}
    alt = visrec_settings.IMAGE_ALT_FIELD
    if alt and _has_field(Image, alt):
        annotations["_visrec_alt"] = Subquery(first.values(alt)[:1])
    queryset = products.shown_products().annotate(**annotations).order_by()
    if visrec_settings.PRICE_FIELD:
        queryset = products.price_lookup(queryset)[0]
    return queryset


def _card_sql() -> tuple[str, list]:
    """:func:`_cards_queryset` as SQL narrowed to the ids of one array parameter (appended by
    the caller), or ``("", [])`` where only the ORM reads it right.

    A plain manager's queryset (filters, ``only``/``defer``, ``prefetch_related``) is wrapped
    as it is and PostgreSQL folds the wrapper away. The ORM's path is kept for one that
    follows relations (``select_related``: a raw query cannot fill them, and ``__str__`` or
    ``get_absolute_url`` would then query once per card), adds its own annotations (their
    converters), or whose rows the id filter outside would change (a slice, ``distinct``, a
    window, a ``GROUP BY``, a union), and for one that returns nothing (``.none()``).
    """
    query = products.base_queryset().query
    plain = (query.select_related is False and not query.annotations and not query.extra
             and not query.is_sliced and not query.distinct and query.group_by is None
             and not query.combinator)
    if not plain:
        return "", []
    try:
        sql, params = _cards_queryset().query.sql_with_params()
    except EmptyResultSet:
        return "", []
    pk_column = connection.ops.quote_name(get_product_model()._meta.pk.column)
    return f"SELECT * FROM ({sql}) AS visrec_cards WHERE visrec_cards.{pk_column} = ANY(%s)", list(params)


def _has_field(model, name: str) -> bool:
    try:
        return model._meta.get_field(name).concrete
    except FieldDoesNotExist:
        return False
