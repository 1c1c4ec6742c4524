"""Catalogue intelligence on oscar's many-to-many categories: accepting makes the suggestion the
primary (first assigned) category, on planted vectors."""
from __future__ import annotations

import numpy as np
import pytest

from visrec.models import ModelKind, ModelVersion, ProductEmbedding
from visrec.services.catalogue import intelligence, products
from visrec.services.catalogue.embedders import activate_embedder

pytestmark = pytest.mark.django_db
DIMS = 16


@pytest.fixture
def misfiled():
    """Mugs, lamps and vases, eight products each, clustered; and three lamps filed wrong."""
    from oscar.apps.catalogue.models import Category, ProductCategory
    from oscar.test.factories import create_product

    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="planted@1", dimensions=DIMS,
                                          metrics={"backbone": "planted", "base_version": "planted@1"})
    activate_embedder(version)
    rng = np.random.default_rng(5)
    categories = {name: Category.add_root(name=name.title()) for name in ("mugs", "lamps", "vases")}
    found, rows = {}, []

    def product(title, filed, axis):
        item = create_product(title=title)
        for name in filed:
            ProductCategory.objects.create(product=item, category=categories[name])
        vector = np.eye(DIMS)[axis] + 0.15 * rng.normal(size=DIMS)
        rows.append(ProductEmbedding(product=item, model_version=version.name, vector=vector / np.linalg.norm(vector)))
        found[title] = item

    for axis, name in enumerate(categories):
        for i in range(8):
            product(f"{name} {i}", [name], axis)
    product("mug-filed lamp", ["mugs", "vases"], 1)  # primary mugs (wrong), vases as well
    product("vase-filed lamp", ["vases", "mugs", "lamps"], 1)  # lamps assigned last
    product("unfiled lamp", [], 1)
    ProductEmbedding.objects.bulk_create(rows)
    return found, categories


def filed(product) -> list[str]:
    """The product's category names in assignment order (the first is the primary one)."""
    from oscar.apps.catalogue.models import ProductCategory

    return [row.category.name.lower() for row in ProductCategory.objects.filter(product=product).order_by("pk")]


def test_accepting_makes_the_suggestion_the_primary_category(misfiled):
    found, categories = misfiled
    lamps = str(categories["lamps"].pk)
    suggestions = {s.product_id: s for s in intelligence.suggest_categories()}
    assert {found[t].pk for t in ("mug-filed lamp", "vase-filed lamp", "unfiled lamp")} == set(suggestions)
    assert all(s.suggested == lamps for s in suggestions.values())  # the two misfiled ones with confidence >= 0.8
    assert suggestions[found["mug-filed lamp"].pk].reason == "looks like Lamps"
    assert suggestions[found["unfiled lamp"].pk].kind == intelligence.UNCATEGORISED
    changed = intelligence.accept_suggestions((s.product_id, s.current, s.suggested) for s in suggestions.values())
    assert changed == 3
    # the wrong primary category goes, lamps is first assigned, the others stay in their order
    assert filed(found["mug-filed lamp"]) == ["lamps", "vases"]
    assert filed(found["vase-filed lamp"]) == ["lamps", "mugs"]
    assert filed(found["unfiled lamp"]) == ["lamps"]
    primary = products.primary_categories([found[t].pk for t in ("mug-filed lamp", "vase-filed lamp", "unfiled lamp")])
    assert set(primary.values()) == {categories["lamps"].pk}
    assert intelligence.suggest_categories() == []


def test_a_product_refiled_since_the_suggestion_is_skipped(misfiled):
    from oscar.apps.catalogue.models import ProductCategory

    found, categories = misfiled
    stale = {s.product_id: s for s in intelligence.suggest_categories()}[found["mug-filed lamp"].pk]
    ProductCategory.objects.filter(product=found["mug-filed lamp"]).delete()
    ProductCategory.objects.create(product=found["mug-filed lamp"], category=categories["vases"])
    assert intelligence.accept_suggestions([(stale.product_id, stale.current, stale.suggested)]) == 0
    assert filed(found["mug-filed lamp"]) == ["vases"]

