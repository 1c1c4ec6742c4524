"""How the demo shop shows a price: pounds sterling, as on its own pages (``VISREC["PRICE_FORMAT"]``)."""
from __future__ import annotations

from decimal import Decimal


def format_price(value) -> str:
    """``£30.99`` for 30.99."""
    return f"£{Decimal(value):,.2f}"
