"""Fixtures of the oscar host: the demo suite's autouse hygiene, and a small real oscar catalogue."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from PIL import Image, ImageDraw

from tests.conftest import (  # noqa: F401 - fixtures shared with the demo's suite
    _clear_cache,
    _media_root,
    _prepared_statements_deallocated_after,
    _query_pool_closed_after,
)


def drawing(colour, shape: str, fmt: str = "PNG") -> ContentFile:
    """A real image file (PNG or JPEG): a coloured shape on white, drawn with PIL."""
    image = Image.new("RGB", (160, 160), "white")
    draw = ImageDraw.Draw(image)
    box = (30, 30, 130, 130)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return ContentFile(buffer.getvalue(), name=f"{shape}.{'jpg' if fmt == 'JPEG' else 'png'}")


class Shop:
    """What the ``shop`` fixture made, by name."""

    def __init__(self):
        self.products = {}
        self.categories = {}

    def __getitem__(self, name):
        return self.products[name]


@pytest.fixture
def shop(db):
    """An oscar catalogue as a shop keeps it, indexed by visrec's real CNN:

    * mugs (red/orange circles) and lamps (blue/teal squares), prices on stock records;
    * "hidden mug": is_public False; "sold-out mug": a stock record with nothing in stock;
    * "two-category mug": filed under Mugs first, then Lamps (primary: Mugs);
    * "lamp family": a parent with two children holding the stock records, its picture on a child.

    Loaded as a bulk import is (the outbox held back, then ``visrec_index``), so no task
    goes to the broker.
    """
    from visrec.services.catalogue.outbox import held_back

    with held_back():
        found = _load_catalogue()
    call_command("visrec_index", verbosity=0)
    return found


def _load_catalogue() -> Shop:
    from oscar.apps.catalogue.models import Category, Product, ProductCategory, ProductImage
    from oscar.test.factories import create_product, create_stockrecord

    found = Shop()
    mugs, lamps = Category.add_root(name="Mugs"), Category.add_root(name="Lamps")
    found.categories = {"mugs": mugs, "lamps": lamps}

    def standalone(title, category, colour, shape, price, stock=5, **kwargs):
        product = create_product(title=title, price=Decimal(price), num_in_stock=stock, **kwargs)
        ProductCategory.objects.create(product=product, category=category)
        fmt = "JPEG" if shape == "square" else "PNG"  # lamps as photos, mugs as drawings
        ProductImage.objects.create(product=product, original=drawing(colour, shape, fmt), caption=f"{title} photo")
        found.products[title] = product
        return product

    standalone("red mug", mugs, (220, 20, 20), "circle", "12.00")
    standalone("dark red mug", mugs, (170, 10, 10), "circle", "14.50")
    standalone("orange mug", mugs, (240, 120, 20), "circle", "9.00")
    standalone("hidden mug", mugs, (210, 30, 30), "circle", "11.00", is_public=False)
    standalone("sold-out mug", mugs, (200, 40, 30), "circle", "10.00", stock=0)
    two = standalone("two-category mug", mugs, (230, 60, 40), "circle", "13.00")
    ProductCategory.objects.create(product=two, category=lamps)
    standalone("blue lamp", lamps, (20, 40, 220), "square", "40.00")
    standalone("teal lamp", lamps, (20, 160, 170), "square", "35.00")
    parent = create_product(title="lamp family", structure="parent")
    ProductCategory.objects.create(product=parent, category=lamps)
    small = Product.objects.create(parent=parent, structure=Product.CHILD, title="small")
    large = Product.objects.create(parent=parent, structure=Product.CHILD, title="large")
    create_stockrecord(small, price=Decimal("30.00"), num_in_stock=0)
    create_stockrecord(large, price=Decimal("45.00"), num_in_stock=2)
    ProductImage.objects.create(product=small, original=drawing((30, 60, 200), "square"), caption="small lamp")
    found.products.update({"lamp family": parent, "small lamp": small, "large lamp": large})
    return found
