from __future__ import annotations

from .models import Category


def categories(request) -> dict:
    """The category list for the storefront's navigation bar."""
    return {"nav_categories": Category.objects.all()}
