from __future__ import annotations

import pytest

from .factories import CategoryFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db


def test_home_category_and_product_pages(client):
    mugs = CategoryFactory(name="Mugs", slug="mugs")
    mug = ProductFactory(name="Red Dotted Mug", slug="red-dotted-mug", category=mugs, stock=0)
    ProductImageFactory(product=mug)
    home = client.get("/")
    assert home.status_code == 200
    assert b'href="/c/mugs/"' in home.content
    page = client.get("/c/mugs/")
    assert b"Red Dotted Mug" in page.content
    detail = client.get("/p/red-dotted-mug/")
    assert detail.status_code == 200
    assert b"Out of stock" in detail.content
    assert f'src="{mug.images.first().image.url}"'.encode() in detail.content
    assert client.get("/p/nope/").status_code == 404
