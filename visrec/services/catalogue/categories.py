"""The host's product categories as privacy statistics see them: string keys and display names.

A category key is the stored value of ``VISREC["CATEGORY_FIELD"]`` as a string (the
related primary key for a ForeignKey, the value itself for a CharField). The set of keys
comes from the catalogue, never from shoppers' events, so it can index a DP release.
"""
from __future__ import annotations

from collections.abc import Iterable

from ...conf import get_product_model, visrec_settings


def category_field():
    """The product model's category field, or ``None`` when ``CATEGORY_FIELD`` is ""."""
    name = visrec_settings.CATEGORY_FIELD
    return get_product_model()._meta.get_field(name) if name else None


def catalogue_categories() -> list[str]:
    """Every category key used by a product, sorted."""
    field = category_field()
    if field is None:
        return []
    values = (get_product_model()._default_manager.exclude(**{f"{field.attname}__isnull": True})
              .order_by().values_list(field.attname, flat=True).distinct())
    return sorted({str(v) for v in values if v != ""})


def product_category_keys(product_ids: Iterable[int]) -> dict[int, str]:
    """The category key of each product that has one."""
    field = category_field()
    if field is None:
        return {}
    rows = get_product_model()._default_manager.filter(pk__in=set(product_ids)).values_list("pk", field.attname)
    return {int(pk): str(value) for pk, value in rows if value is not None and value != ""}


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
