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


def test_product_page_shows_visually_similar_widget(client):
    from .test_similar import make_version, plant

    make_version()
    category = CategoryFactory(slug="lamps")
    products = [ProductFactory(category=category, slug=f"lamp-{i}", name=f"Lamp {i}") for i in range(4)]
    for product in products:
        ProductImageFactory(product=product)
    plant(products, [[1, 0.1 * i] + [0] * 14 for i in range(4)])
    html = client.get("/p/lamp-0/").content.decode()
    assert 'class="visrec-widget visrec-similar"' in html
    assert "Lamp 1" in html and 'href="/p/lamp-1/"' in html


def test_photo_search_page_rejects_broken_upload(client):
    import io

    page = client.get("/search/photo/")
    assert page.status_code == 200 and b'type="file"' in page.content
    broken = io.BytesIO(b"not an image")
    broken.name = "x.jpg"
    response = client.post("/search/photo/", {"image": broken})
    assert response.status_code == 400
