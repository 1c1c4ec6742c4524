"""The demo shop's own product list, which an A/B test can serve against visrec (``VISREC["SHOP_LIST"]``)."""
from __future__ import annotations

from .models import Product


def new_arrivals(request, k: int, leave_out: set) -> list[int]:
    """The newest products in stock, newest first: what the shop showed before visrec."""
    return list(Product.objects.filter(stock__gt=0).exclude(pk__in=leave_out)
                .order_by("-created_at", "-pk").values_list("pk", flat=True)[:k])
