"""The host's product categories as privacy statistics see them: string keys and display names.

A category key is the stored value of ``VISREC["CATEGORY_FIELD"]`` as a string (the
related primary key for a ForeignKey, the value itself for a CharField). The set of keys
comes from the catalogue, never from shoppers' events, so it can index a DP release.
"""
from __future__ import annotations

from collections.abc import Iterable

from . import products
from .products import category_field


def catalogue_categories() -> list[str]:
    """Every primary category key used by a product, sorted."""
    return sorted({str(v) for v in products.category_values()})


def product_category_keys(product_ids: Iterable[int]) -> dict[int, str]:
    """The primary category key of each product that has one."""
    return {pk: str(value) for pk, value in products.primary_categories(product_ids).items()}


def category_labels(keys: Iterable[str]) -> dict[str, str]:
    """Display names of category keys (the related object's ``str`` for a ForeignKey)."""
    keys = list(keys)
    field = category_field()
    if field is None or not field.is_relation:
        return {k: k for k in keys}
    target = field.target_field
    objects = field.related_model._default_manager.filter(**{f"{target.attname}__in": keys})
    names = {str(getattr(obj, target.attname)): str(obj) for obj in objects}
    return {k: names.get(k, k) for k in keys}
