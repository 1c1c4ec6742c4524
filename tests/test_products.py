"""The host's products as visrec reads them (services/catalogue/products.py), on the demo's models.

Relations the demo does not have (prices on stock records, many-to-many categories,
variants) are tested on the oscar host (tests/hosts/oscar); the UUID host tests other keys.
"""
from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core import checks
from django.db.models import F, Q
from django.template import Context, Template
from django.test import RequestFactory

import visrec
from visrec.services.catalogue import products
from visrec.services.foryou import recommend
from visrec.services.privacy.tracking import subject_for_request
from visrec.services.serving import presentation
from visrec.services.serving.similar import SimilarFilters, fallback_products, similar_products

from .factories import CategoryFactory, ProductFactory, ProductImageFactory
from .test_similar import DIMS, make_version, plant

pytestmark = pytest.mark.django_db


def sale_prices(queryset):
    """A host hook (``PRODUCT_QUERYSET``): 20% off everything, as an annotation."""
    return queryset.annotate(sale_price=F("price") * Decimal("0.8"))


@pytest.fixture
def row():
    """Ten products of one category on a line in image space, product 0 the query."""
    make_version()
    mugs = CategoryFactory(slug="mugs")
    items = [ProductFactory(category=mugs, name=f"Mug {i}", price=Decimal(10 + i), stock=5) for i in range(10)]
    for item in items:
        ProductImageFactory(product=item)
    plant(items, [np.r_[1.0, 0.05 * i, np.zeros(DIMS - 2)] for i in range(10)])
    return items


def ids(ranked):
    return [pid for pid, _ in ranked]


def test_hidden_products_are_never_shown_whatever_their_stock(row, settings):
    settings.VISREC = {**settings.VISREC, "VISIBILITY_FILTER": ~Q(name__in=["Mug 1", "Mug 3"])}
    hidden = {row[1].pk, row[3].pk}
    assert not hidden & set(ids(similar_products(row[0].pk, k=9)))
    assert not hidden & set(ids(similar_products(row[0].pk, k=9, filters=SimilarFilters(in_stock=False))))
    assert not hidden & set(ids(fallback_products(row[0].pk, 9, SimilarFilters())))
    # a cached list made before a product was hidden loses its card, so it is not shown either
    assert [card["pk"] for card in presentation.product_cards([(row[1].pk, 0.9), (row[2].pk, 0.8)])] == [row[2].pk]


def test_stock_filter_may_be_a_q_object(row, settings):
    row[4].stock = 0
    row[4].save()
    row[5].stock = 0
    row[5].name = "Made to order"
    row[5].save()
    settings.VISREC = {**settings.VISREC, "IN_STOCK_FILTER": Q(stock__gt=0) | Q(name="Made to order")}
    found = ids(similar_products(row[0].pk, k=9))
    assert row[4].pk not in found and row[5].pk in found


def test_a_price_from_the_hosts_queryset_hook_is_on_cards_and_in_filters(row, settings):
    settings.VISREC = {**settings.VISREC, "PRODUCT_QUERYSET": "tests.test_products.sale_prices",
                       "PRICE_FIELD": "sale_price", "PRICE_FORMAT": "shop_demo.catalog.prices.format_price"}
    assert not [m for m in checks.run_checks() if m.id.startswith("visrec.E")]
    cheap = similar_products(row[0].pk, k=9, filters=SimilarFilters(max_price=Decimal("10.40")))
    assert ids(cheap) == [row[1].pk, row[2].pk, row[3].pk]  # 11, 12, 13 less 20%: 8.80 to 10.40
    card = presentation.product_cards([(row[2].pk, 0.5)])[0]
    assert card["price"] == Decimal("9.600") and card["price_display"] == "£9.60"


def test_a_price_through_a_relation_is_the_lowest_of_the_products_rows(row, settings):
    """Any lookup through relations works as a price (here the images' positions, one row each)."""
    settings.VISREC = {**settings.VISREC, "PRICE_FIELD": "images__position"}
    ProductImageFactory(product=row[2], position=7)  # row 2 now has positions 0 and 7: its price is 0
    ProductImageFactory(product=row[3], position=5)
    row[3].images.filter(position=0).delete()
    queryset, name = products.price_lookup(products.shown_products())
    prices = dict(queryset.filter(pk__in=[row[2].pk, row[3].pk]).values_list("pk", name))
    assert prices == {row[2].pk: 0, row[3].pk: 5}
    assert ids(similar_products(row[0].pk, k=9, filters=SimilarFilters(min_price=Decimal(3)))) == [row[3].pk]


def test_the_page_product_and_what_similar_shows_are_left_out_of_for_you(row):
    request = RequestFactory().get("/")
    request.user, request.session = AnonymousUser(), SessionStore()

    for item in row[5:8]:
        visrec.track(request, "view", item)  # the session model then likes the whole row
    html = Template("{% load visrec_tags %}{% visually_similar product limit=3 %}"
                    "{% recommended_for_you limit=5 product=product %}").render(
        Context({"product": row[0], "request": request}))
    similar_part, foryou_part = html.split('data-visrec-widget="foryou"', 1)
    shown = {int(p) for p in re.findall(r'data-visrec-product="(\d+)"', similar_part)}
    in_foryou = {int(p) for p in re.findall(r'data-visrec-product="(\d+)"', foryou_part)}
    assert len(shown) == 3 and in_foryou
    assert not (shown | {row[0].pk}) & in_foryou
    ranked, _ = recommend.recommend_for_subject(subject_for_request(request), 9)
    assert shown & set(ids(ranked))  # without the page's exclusions they would have been there


def test_for_you_api_leaves_out_what_the_page_shows(row, client):
    for item in row[5:8]:
        client.post("/api/visrec/events/", {"events": [{"type": "view", "product": item.pk}]},
                    content_type="application/json")
    everything = [r["id"] for r in client.get("/api/visrec/for-you/", {"limit": 9}).json()["results"]]
    leave = everything[:2]
    response = client.get("/api/visrec/for-you/", {"limit": 9, "product": leave[0], "exclude": f"{leave[1]}"})
    assert response.status_code == 200
    assert not set(leave) & {r["id"] for r in response.json()["results"]}
    bad = client.get("/api/visrec/for-you/", {"exclude": "1,x"})
    assert bad.status_code == 400 and "exclude" in bad.json()["errors"]


def test_cards_can_be_restyled_by_overriding_one_block(row, settings, tmp_path):
    folder = tmp_path / "templates" / "visrec" / "widgets"
    folder.mkdir(parents=True)
    (folder / "card.html").write_text('{% extends "visrec/widgets/card_base.html" %}'
                                      '{% block price %}<em class="my-price">{{ item.price_display }}</em>{% endblock %}')
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path / "templates", *settings.TEMPLATES[0]["DIRS"]]}]
    html = Template("{% load visrec_tags %}{% visually_similar product limit=2 %}").render(Context({"product": row[0]}))
    assert html.count('<em class="my-price">£') == 2  # the demo's PRICE_FORMAT, in the shop's own markup
    assert html.count('data-visrec-product="') == 2 and 'class="visrec-name"' in html  # other blocks as they were


def test_tracking_script_tag_names_the_endpoint_and_the_csrf_token():
    html = Template("{% load visrec_tags %}{% visrec_script product=12 %}").render(Context({"csrf_token": "tok"}))
    assert 'data-endpoint="/api/visrec/events/"' in html and 'data-csrf="tok"' in html
    assert 'data-product="12"' in html and "visrec/visrec.js?v=" in html


@pytest.mark.parametrize("key, value, check_id", [
    ("VISIBILITY_FILTER", {"no_such_field": True}, "visrec.E019"),
    ("VISIBILITY_FILTER", "is_public", "visrec.E019"),
    ("PARENT_FIELD", "category", "visrec.E020"),
    ("PRODUCT_QUERYSET", "shop.nowhere.hook", "visrec.E021"),
    ("PRICE_FORMAT", "shop.nowhere.format", "visrec.E021"),
    ("SHOP_LIST", "shop.nowhere.bestsellers", "visrec.E021"),
    ("PRICE_FIELD", "images__no_such_field", "visrec.E007"),
    ("IN_STOCK_FILTER", {"images__no_such_field__gt": 0}, "visrec.E006"),
])
def test_misconfigured_catalogue_settings_fail_with_their_check(settings, key, value, check_id):
    settings.VISREC = {**settings.VISREC, key: value}
    assert check_id in {m.id for m in checks.run_checks()}
