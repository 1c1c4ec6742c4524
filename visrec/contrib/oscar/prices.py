"""Prices as oscar shows them (``VISREC["PRICE_FORMAT"]`` of the preset)."""
from __future__ import annotations


def format_price(value) -> str:
    """``value`` in ``OSCAR_DEFAULT_CURRENCY``, formatted by oscar for the active language ("" for None)."""
    if value is None:
        return ""
    from oscar.templatetags.currency_filters import currency

    return currency(value)
