"""The host's products as visrec reads them: shown, in stock, priced, categorised, variants folded.

Every product queryset visrec builds starts here, so one rule holds in every list, card,
fallback and trending row, whatever the shop's schema:

* **shown** (:func:`shown_products`): the product manager's products, narrowed by the host's
  ``PRODUCT_QUERYSET`` hook, then by ``VISIBILITY_FILTER`` (say oscar's ``is_public``), and
  without variants' children. Visibility is separate from stock: a hidden product is never
  shown, an out-of-stock one only when a list asks for it.
* **in stock** (:func:`in_stock_condition`): ``IN_STOCK_FILTER``, lookups on the product's
  own fields or through relations (oscar's ``stockrecords__num_in_stock__gt``).
* **price** (:func:`price_lookup`): ``PRICE_FIELD``, a field of the product, an annotation the
  hook adds, or a lookup through relations (oscar's ``stockrecords__price``): then the lowest
  of the product's rows.
* **variants** (``PARENT_FIELD``, say ``"parent"``): a child is never recommended; its images
  count for its parent (:func:`canonical_ids`), its stock makes the parent in stock, its
  price is among the parent's, its events are the parent's, and its page shows the
  parent's lists.
* **category** (:func:`primary_categories`): ``CATEGORY_FIELD``, a foreign key or plain field,
  or many-to-many (oscar's ``categories``). A product in several categories has one primary
  category, the first assigned (the lowest primary key of the many-to-many table), and
  every code path uses that one; "same category" lists are the products filed under the
  query product's primary category.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import FieldDoesNotExist
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from ...conf import get_product_model, visrec_settings

#: Name of the annotation carrying a product's price when it is not a field of its own.
PRICE_ANNOTATION = "_visrec_price"


def base_queryset() -> QuerySet:
    """The product manager's products through the host's ``PRODUCT_QUERYSET`` hook (if any)."""
    queryset = get_product_model()._default_manager.all()
    hook = visrec_settings.hook("PRODUCT_QUERYSET")
    return hook(queryset) if hook is not None else queryset


def shown_products() -> QuerySet:
    """Products a shopper may be shown: :func:`base_queryset`, ``VISIBILITY_FILTER``, no variants' children."""
    queryset = base_queryset()
    visible = visrec_settings.VISIBILITY_FILTER
    if visible:
        queryset = queryset.filter(as_condition(visible))
    parent = parent_attname()
    if parent:
        queryset = queryset.filter(**{f"{parent}__isnull": True})
    return queryset


def in_stock_condition() -> Q | Exists | None:
    """The condition ``IN_STOCK_FILTER`` puts on products (``None`` when every product is in stock).

    With variants a parent is in stock when it or one of its children matches.
    """
    lookups = visrec_settings.IN_STOCK_FILTER
    return as_condition(lookups) if lookups else None


def parent_attname() -> str:
    """The column of the variants' parent (``PARENT_FIELD``), or ``""`` without variants."""
    name = visrec_settings.PARENT_FIELD
    return get_product_model()._meta.get_field(name).attname if name else ""


def pk_array_type() -> str:
    """The SQL array type of product ids (``bigint[]``, ``integer[]``, ``uuid[]``...)."""
    return get_product_model()._meta.pk.rel_db_type(connection) + "[]"


def canonical_ids(product_ids: Iterable) -> dict:
    """Each product's recommendable product: its parent for a variant, else itself (one query
    with variants, none without). Ids not in the catalogue map to themselves."""
    ids = list(dict.fromkeys(product_ids))
    parent = parent_attname()
    if not parent or not ids:
        return {pid: pid for pid in ids}
    rows = get_product_model()._base_manager.filter(pk__in=ids).values_list("pk", parent)
    found = {pk: (parent_id if parent_id is not None else pk) for pk, parent_id in rows}
    return {pid: found.get(pid, pid) for pid in ids}


def canonical_id(product_id):
    """:func:`canonical_ids` of one product."""
    return canonical_ids([product_id])[product_id]


def price_lookup(queryset: QuerySet) -> tuple[QuerySet, str]:
    """``queryset`` with what its price filters and cards read, and the name to read it by.

    A field of the product (or an annotation of the host's hook) is read as it is; a lookup
    through relations, or any price with variants, becomes the lowest non-null price among
    the product's rows (and its children's), one subquery annotated as ``_visrec_price``.
    """
    name = visrec_settings.PRICE_FIELD
    if not _needs_price_subquery(name, queryset):
        return queryset, name
    return queryset.annotate(**{PRICE_ANNOTATION: price_subquery(name)}), PRICE_ANNOTATION


def price_subquery(name: str | None = None) -> Subquery:
    """The lowest non-null ``PRICE_FIELD`` among a product's rows and its variants' (per outer product)."""
    name = name or visrec_settings.PRICE_FIELD
    rows = _own_and_children().exclude(**{f"{name}__isnull": True}).order_by(name).values(name)[:1]
    return Subquery(rows)


def price_attribute() -> str:
    """The attribute of a product instance read by cards: ``PRICE_FIELD`` or ``_visrec_price``."""
    return price_lookup(base_queryset().none())[1] if visrec_settings.PRICE_FIELD else ""


def primary_categories(product_ids: Iterable) -> dict:
    """The primary category key (raw value: a related pk or the field's value) of each product
    that has one, in one query. See the module's note on the rule."""
    field = category_field()
    ids = list(set(product_ids))
    if field is None or not ids:
        return {}
    if field.many_to_many:
        through, source, target = _m2m_parts(field)
        rows = (through._default_manager.filter(**{f"{source}__in": ids}).order_by(source, "pk")
                .distinct(source).values_list(source, target))
    else:
        rows = get_product_model()._base_manager.filter(pk__in=ids).values_list("pk", field.attname)
    return {pk: value for pk, value in rows if value is not None and value != ""}


def primary_category(product_id):
    """:func:`primary_categories` of one product (``None`` when it has none)."""
    return primary_categories([product_id]).get(product_id)


def category_values() -> list:
    """Every primary category key used by a product (raw values, unsorted, no repeats)."""
    field = category_field()
    if field is None:
        return []
    if field.many_to_many:
        through, source, target = _m2m_parts(field)
        values = (through._default_manager.order_by(source, "pk").distinct(source)
                  .values_list(target, flat=True))
    else:
        values = (get_product_model()._base_manager.exclude(**{f"{field.attname}__isnull": True})
                  .order_by().values_list(field.attname, flat=True).distinct())
    return [v for v in dict.fromkeys(values) if v is not None and v != ""]


def in_category(queryset: QuerySet, key, *, same: bool = True) -> QuerySet:
    """``queryset`` narrowed to products filed under category ``key`` (``same=False``: not filed there).

    For a many-to-many field, filed under means any of the product's categories, so "same
    category" of the primary one finds every product listed there.
    """
    field = category_field()
    if field is None:
        return queryset
    if field.many_to_many:
        through, source, target = _m2m_parts(field)
        condition = Q(pk__in=through._default_manager.filter(**{target: key}).values(source))
    else:
        condition = Q(**{field.attname: key})
    return queryset.filter(condition) if same else queryset.exclude(condition)


def primary_category_sql(alias: str) -> str:
    """A SQL expression for the primary category of the product row ``alias`` (raw SQL of the
    privacy statistics), by the same rule as :func:`primary_categories`."""
    field = category_field()
    quote = connection.ops.quote_name
    if not field.many_to_many:
        return f"{alias}.{quote(field.column)}"
    through, source, target = _m2m_parts(field)
    meta = through._meta
    source_column = meta.get_field(field.m2m_field_name()).column
    target_column = meta.get_field(field.m2m_reverse_field_name()).column
    pk_column = get_product_model()._meta.pk.column
    return (f"(SELECT c.{quote(target_column)} FROM {quote(meta.db_table)} c "
            f"WHERE c.{quote(source_column)} = {alias}.{quote(pk_column)} ORDER BY c.{quote(meta.pk.column)} LIMIT 1)")


def category_field():
    """The product model's category field, or ``None`` when ``CATEGORY_FIELD`` is ""."""
    name = visrec_settings.CATEGORY_FIELD
    return get_product_model()._meta.get_field(name) if name else None


def _m2m_parts(field) -> tuple:
    """A many-to-many category field's table model and its two columns (product, category)."""
    through = field.remote_field.through
    source = through._meta.get_field(field.m2m_field_name()).attname
    target = through._meta.get_field(field.m2m_reverse_field_name()).attname
    return through, source, target


def _own_and_children() -> QuerySet:
    """The rows of the outer product itself and, with variants, of its children."""
    manager = get_product_model()._base_manager
    parent = parent_attname()
    if not parent:
        return manager.filter(pk=OuterRef("pk"))
    return manager.filter(Q(pk=OuterRef("pk")) | Q(**{parent: OuterRef("pk")}))


def as_condition(lookups) -> Q | Exists:
    """``lookups`` (a dict of lookups or a ``Q``) as a condition on products.

    Lookups on the product's own columns stay a plain ``WHERE`` (the index-friendly SQL the
    demo had); lookups through relations, or any condition with variants, become one
    ``EXISTS`` over the product's rows (and its children's), so a product with two matching
    related rows is still one product.
    """
    q = lookups if isinstance(lookups, Q) else Q(**lookups)
    if not parent_attname() and _is_local(q):
        return q
    return Exists(_own_and_children().filter(q))


def _is_local(q: Q) -> bool:
    """Whether no lookup of ``q`` fans out over several rows per product (a reverse foreign
    key or a many-to-many hop); forward foreign keys are fine."""
    return all(_is_local(child) if isinstance(child, Q) else not _fans_out(child[0]) for child in q.children)


def _fans_out(lookup: str) -> bool:
    model = get_product_model()
    for part in lookup.split("__"):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:  # a transform or a lookup such as "gt": the path ended
            return False
        if not field.is_relation:
            return False
        if field.one_to_many or field.many_to_many:
            return True
        model = field.related_model
    return False


def _needs_price_subquery(name: str, queryset: QuerySet) -> bool:
    """A price through relations or with variants needs the subquery; a field or the hook's annotation does not."""
    if not name or name in queryset.query.annotations:
        return False
    return "__" in name or bool(parent_attname())
