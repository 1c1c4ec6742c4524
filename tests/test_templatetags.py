"""{% visually_similar %}: accessible widget, fallback, never breaks a page, constant queries."""
from __future__ import annotations

import logging

import pytest
from django.template import Context, Template

from .factories import CategoryFactory, ProductFactory, ProductImageFactory
from .test_similar import catalogue, make_version  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def render(product, args: str = "limit=3") -> str:
    template = Template("{% load visrec_tags %}{% visually_similar product " + args + " %}")
    return template.render(Context({"product": product}))


def test_widget_lists_similar_products_with_image_alt_name_price_and_link(catalogue):
    p = catalogue
    for product in p[:6]:
        ProductImageFactory(product=product, alt_text=f"Photo of {product.name}")
    html = render(p[2])
    assert 'class="visrec-widget visrec-similar"' in html
    assert f'href="{p[1].get_absolute_url()}"' in html
    assert f'alt="Photo of {p[1].name}"' in html
    assert str(p[1].price) in html
    assert p[2].get_absolute_url() not in html  # never the product itself
    assert html.count('class="visrec-card"') == 3


def test_query_count_does_not_grow_with_limit(catalogue, django_assert_num_queries):
    p = catalogue
    for product in p:
        ProductImageFactory(product=product)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        render(p[5], "limit=2")
    from django.core.cache import cache

    cache.clear()
    with django_assert_num_queries(len(small.captured_queries)):
        html = render(p[5], "limit=12")
    assert html.count('class="visrec-card"') == 12


def test_product_without_vector_gets_same_category_fallback(catalogue):
    p = catalogue
    newcomer = ProductFactory(category=p[0].category, stock=3)
    html = render(newcomer, "limit=4")
    assert html.count('class="visrec-card"') == 4
    assert newcomer.get_absolute_url() not in html


def test_nothing_served_yet_and_errors_render_nothing(caplog):
    lonely = ProductFactory(category=CategoryFactory(slug="lonely"))
    assert render(lonely).strip() == ""  # no vector, no same-category products: nothing
    with caplog.at_level(logging.ERROR, logger="visrec"):
        assert render(lonely, "limit=3 colour='red'").strip() == ""  # unknown filter: logged, not raised
    assert "visually_similar failed" in caplog.text
