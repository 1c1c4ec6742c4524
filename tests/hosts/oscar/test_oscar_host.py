"""visrec installed into a django-oscar 4.2 shop, configured by the oscar preset in a few lines."""
from __future__ import annotations

import logging
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.urls import reverse
from PIL import Image

from visrec.models import EventType, InteractionEvent, PendingWork, ProductEmbedding, WorkKind
from visrec.pseudonyms import subject_key
from visrec.services.catalogue.embedders import active_embedder_version

from .conftest import drawing

pytestmark = pytest.mark.django_db

SIMILAR = "/api/visrec/products/{}/similar/"
FOR_YOU = "/api/visrec/for-you/"
#: What the shop fixture made that shoppers must never be offered.
NEVER_SHOWN = {"hidden mug", "small lamp", "large lamp"}


def titles(shop, rows):
    by_pk = {p.pk: name for name, p in shop.products.items()}
    return [by_pk[row["id"]] for row in rows]


def card_names(html: str, section: str) -> list[str]:
    """The product names on the cards of one visrec row of a rendered page."""
    match = re.search(rf'<section[^>]*class="[^"]*visrec-{section}[^"]*".*?</section>', html, re.S)
    assert match, f"no visrec-{section} row on the page"
    return [re.sub(r"<[^>]+>", "", name).strip()
            for name in re.findall(r'class="[^"]*visrec-name[^"]*"[^>]*>(.*?)</', match.group(0), re.S)]


# --- migrated from zero ------------------------------------------------------------------------

def test_visrec_migrated_from_zero_onto_oscars_catalogue():
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT tc.table_name, ccu.table_name FROM information_schema.table_constraints tc
            JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name
            WHERE tc.table_name LIKE 'visrec\\_%%' AND tc.constraint_type = 'FOREIGN KEY'""")
        references = cursor.fetchall()
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone()
    assert ("visrec_productembedding", "catalogue_product") in references
    assert ("visrec_imageembedding", "catalogue_productimage") in references
    outside = {target for _, target in references if not target.startswith("visrec_")}
    assert outside <= {"catalogue_product", "catalogue_productimage"}, outside
    assert len({t for t in tables if t.startswith("visrec_")}) >= 10
    assert not {t for t in tables if t.startswith("catalog_")}  # nothing of the demo's app
    loader = MigrationLoader(connection)
    on_disk = {key for key in loader.disk_migrations if key[0] == "visrec"}
    assert on_disk and on_disk <= loader.applied_migrations.keys()


def test_the_preset_passes_every_system_check():
    from django.core import checks

    from visrec.contrib.oscar.prices import format_price
    from visrec.contrib.oscar.settings import visrec_settings

    problems = [m for m in checks.run_checks(include_deployment_checks=False) if m.level >= checks.WARNING]
    assert not [str(m) for m in problems if (m.id or "").startswith("visrec")]
    assert settings.VISREC == visrec_settings() and visrec_settings(BACKBONE="resnet50")["BACKBONE"] == "resnet50"
    assert visrec_settings(BACKBONE="resnet50")["PRICE_FIELD"] == "stockrecords__price"
    assert (format_price(None), format_price(Decimal("1234.5"))) == ("", "£1,234.50")


# --- real image files, indexed ------------------------------------------------------------------

def test_every_product_with_a_picture_has_a_vector_and_variants_fold_into_their_parent(shop):
    from oscar.apps.catalogue.models import ProductImage

    formats = set()
    for image in ProductImage.objects.all():
        path = Path(image.original.path)
        assert path.is_relative_to(Path(settings.MEDIA_ROOT)) and path.stat().st_size > 0
        with Image.open(path) as opened:
            formats.add(opened.format)
    assert formats == {"JPEG", "PNG"}
    version = active_embedder_version()
    assert version is not None
    vectors = set(ProductEmbedding.objects.filter(model_version=version.name).values_list("product_id", flat=True))
    parents = {shop[name].pk for name in shop.products if name not in ("small lamp", "large lamp")}
    assert vectors == parents  # every standalone product, and the parent from its child's picture
    assert not PendingWork.objects.exists()


# --- what shoppers are offered -------------------------------------------------------------------

def test_similar_never_shows_hidden_products_children_or_out_of_stock_ones(shop, client):
    names = titles(shop, client.get(SIMILAR.format(shop["red mug"].pk), {"limit": 20}).json()["results"])
    assert names[0] == "dark red mug" and set(names[:4]) <= {"dark red mug", "two-category mug", "orange mug",
                                                             "lamp family", "blue lamp", "teal lamp"}
    assert not ({"red mug", "sold-out mug"} | NEVER_SHOWN) & set(names)
    assert "lamp family" in names  # in stock through its large child
    everything = titles(shop, client.get(SIMILAR.format(shop["red mug"].pk),
                                         {"limit": 20, "in_stock": "false"}).json()["results"])
    assert "sold-out mug" in everything and not NEVER_SHOWN & set(everything)


def test_hidden_products_are_never_offered_for_you_nor_on_pages(shop, client):
    fresh = titles(shop, client.get(FOR_YOU, {"limit": 20}).json()["results"])  # no history: the fallback
    assert not NEVER_SHOWN & set(fresh)
    client.get(shop["red mug"].get_absolute_url())
    seen = client.get(FOR_YOU, {"limit": 20}).json()
    assert seen["results"] and not NEVER_SHOWN & set(titles(shop, seen["results"]))
    html = client.get(shop["red mug"].get_absolute_url()).content.decode()
    on_page = card_names(html, "similar") + card_names(html, "foryou")
    assert on_page and not {"hidden mug", "small", "large"} & set(on_page)
    assert client.get(shop["hidden mug"].get_absolute_url()).status_code == 404  # oscar's own rule


def test_prices_come_from_stock_records_formatted_by_oscar(shop, client):
    rows = client.get(SIMILAR.format(shop["red mug"].pk), {"limit": 20}).json()["results"]
    prices = {name: (row["price"], row["price_display"]) for name, row in zip(titles(shop, rows), rows)}
    assert prices["dark red mug"] == ("14.50", "£14.50")
    assert prices["lamp family"] == ("30.00", "£30.00")  # the lowest of its children's
    band = titles(shop, client.get(SIMILAR.format(shop["red mug"].pk),
                                   {"limit": 20, "min_price": "10", "max_price": "14"}).json()["results"])
    assert band == ["two-category mug"]
    dear = titles(shop, client.get(SIMILAR.format(shop["red mug"].pk),
                                   {"limit": 20, "min_price": "30"}).json()["results"])
    assert set(dear) == {"blue lamp", "teal lamp", "lamp family"}
    assert client.get(SIMILAR.format(shop["red mug"].pk), {"min_price": "abc"}).status_code == 400


def test_same_category_follows_the_primary_category(shop, client):
    from visrec.services.catalogue.products import primary_category

    assert primary_category(shop["two-category mug"].pk) == shop.categories["mugs"].pk
    lamps = titles(shop, client.get(SIMILAR.format(shop["blue lamp"].pk),
                                    {"limit": 20, "category": "same"}).json()["results"])
    # blue lamp's primary category is Lamps, where the two-category mug is filed too
    assert set(lamps) == {"teal lamp", "lamp family", "two-category mug"}
    mugs = titles(shop, client.get(SIMILAR.format(shop["two-category mug"].pk),
                                   {"limit": 20, "category": "same"}).json()["results"])
    # the two-category mug's own primary category is Mugs (filed there first), never Lamps
    assert set(mugs) == {"red mug", "dark red mug", "orange mug"}


def test_a_childs_page_shows_its_parents_rows(shop, client):
    child = titles(shop, client.get(SIMILAR.format(shop["large lamp"].pk), {"limit": 5}).json()["results"])
    parent = titles(shop, client.get(SIMILAR.format(shop["lamp family"].pk), {"limit": 5}).json()["results"])
    assert child == parent and child and "lamp family" not in child
    html = client.get(shop["large lamp"].get_absolute_url()).content.decode()
    assert card_names(html, "similar") == [shop[name].title for name in parent[:4]]


def test_product_page_renders_both_rows(shop, client):
    client.get(shop["orange mug"].get_absolute_url())
    html = client.get(shop["red mug"].get_absolute_url()).content.decode()
    assert "Looks like this" in html and "Picked for you" in html
    assert "visrec/visrec.js" in html and "£14.50" in html
    similar, foryou = card_names(html, "similar"), card_names(html, "foryou")
    assert similar and foryou and "red mug" not in similar + foryou and not set(similar) & set(foryou)


# --- events through the adapter ------------------------------------------------------------------

def test_oscar_signals_record_views_and_carts(shop, client):
    mug = shop["red mug"]
    assert client.get(mug.get_absolute_url()).status_code == 200
    response = client.post(reverse("basket:add", args=[mug.pk]), {"quantity": 1})
    assert response.status_code in (200, 302)
    kinds = list(InteractionEvent.objects.filter(product=mug).values_list("event_type", flat=True))
    assert sorted(kinds) == [EventType.CART, EventType.VIEW]
    # a child's page is a view of the parent
    client.get(shop["large lamp"].get_absolute_url())
    assert InteractionEvent.objects.filter(product=shop["lamp family"], event_type=EventType.VIEW).exists()
    assert not InteractionEvent.objects.filter(product__in=[shop["large lamp"], shop["small lamp"]]).exists()


def test_post_checkout_records_one_purchase_per_product_of_the_order(shop, client):
    from oscar.apps.checkout.signals import post_checkout
    from oscar.test.factories import UserFactory, create_basket, create_order

    customer = UserFactory()
    client.force_login(customer)
    request = client.get("/").wsgi_request
    basket = create_basket(empty=True)
    for name in ("red mug", "blue lamp", "large lamp"):
        basket.add_product(shop[name])
    order = create_order(basket=basket, user=customer)
    post_checkout.send(sender=None, order=order, user=customer, request=request, response=None)
    purchases = InteractionEvent.objects.filter(event_type=EventType.PURCHASE)
    assert sorted(purchases.values_list("product_id", flat=True)) == sorted(
        [shop["red mug"].pk, shop["blue lamp"].pk, shop["lamp family"].pk])  # a variant's is its parent's
    assert set(purchases.values_list("subject_key", flat=True)) == {subject_key("user", customer.pk)}


def test_record_order_for_orders_placed_elsewhere(shop, client):
    from oscar.test.factories import UserFactory, create_basket, create_order

    from visrec.contrib.oscar.receivers import record_order

    customer = UserFactory()
    basket = create_basket(empty=True)
    basket.add_product(shop["red mug"])
    basket.add_product(shop["teal lamp"])
    order = create_order(basket=basket, user=customer)
    shop["teal lamp"].delete()  # the order's line keeps no product: skipped
    assert record_order(order) == 1  # no request (a payment callback): the order's customer's purchase
    event = InteractionEvent.objects.get(event_type=EventType.PURCHASE)
    assert (event.product_id, event.subject_key) == (shop["red mug"].pk, subject_key("user", customer.pk))
    guest = create_order()
    assert record_order(guest) == 0  # a guest's order without their request: nobody to record it for
    assert record_order(guest, client.get("/").wsgi_request) == 1  # a shopper's own request


def failing_consent_check(request) -> bool:
    """A host's consent check whose query fails: the request's transaction is then aborted."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    return True


def test_a_failing_receiver_never_breaks_oscars_view(shop, client, settings, caplog):
    from oscar.apps.catalogue.models import Product

    from visrec.contrib.oscar import receivers

    request = client.get("/").wsgi_request
    with caplog.at_level(logging.ERROR, logger="visrec.contrib.oscar"):
        receivers.product_viewed(sender=None, product=Product(title="never saved"), user=request.user,
                                 request=request)  # visrec refuses a product it does not know
        assert [r.name for r in caplog.records] == ["visrec.contrib.oscar"]
        # A database error inside visrec, under oscar's ATOMIC_REQUESTS: the page still renders.
        settings.VISREC = {**settings.VISREC, "CONSENT_CHECK": f"{__name__}.failing_consent_check"}
        assert client.get(shop["red mug"].get_absolute_url()).status_code == 200
        assert client.post(reverse("basket:add", args=[shop["red mug"].pk]), {"quantity": 1}).status_code in (200, 302)
    assert [r.name for r in caplog.records] == ["visrec.contrib.oscar"] * 3
    assert not InteractionEvent.objects.exists()


# --- the REST API, with no REST settings in the host --------------------------------------------

def test_for_you_and_the_rest_of_the_api(shop, client):
    assert "REST_FRAMEWORK" not in dir(settings) or "DEFAULT_SCHEMA_CLASS" not in settings.REST_FRAMEWORK
    client.get(shop["red mug"].get_absolute_url())
    body = client.get(FOR_YOU, {"limit": 10, "product": shop["red mug"].pk}).json()
    names = titles(shop, body["results"])
    assert body["source"] == "session" and names[0] == "dark red mug"
    assert not ({"red mug"} | NEVER_SHOWN) & set(names)
    events = client.post("/api/visrec/events/", {"events": [{"type": "click", "product": shop["blue lamp"].pk,
                                                             "source": "similar", "position": 1}]},
                         content_type="application/json")
    assert events.status_code == 202
    assert InteractionEvent.objects.filter(event_type=EventType.CLICK, product=shop["blue lamp"]).exists()
    schema = client.get("/api/visrec/schema/")
    assert schema.status_code == 200
    assert b"/api/visrec/products/{" in schema.content and b"/catalogue/" not in schema.content


def test_the_docs_page_is_served_by_the_shop_itself(client):
    docs = client.get("/api/visrec/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn" not in html.lower()
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', html)
    assert assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset


# --- Celery: the shop's own app, and no broker at all ---------------------------------------------

def test_saved_image_work_reaches_the_shops_broker_after_commit(settings, django_capture_on_commit_callbacks):
    from oscar.apps.catalogue.models import ProductImage
    from oscar.test.factories import create_product

    from tests.hosts.oscar.celery import app

    settings.VISREC = {**settings.VISREC, "EXTRACTION_QUEUE": "visrec_oscar_probe"}
    assert app.conf.broker_url.endswith("/12")
    with app.connection_for_write() as broker:
        client = broker.default_channel.client
        client.delete("visrec_oscar_probe")
        try:
            product = create_product(title="new mug", price=5, num_in_stock=1)
            with django_capture_on_commit_callbacks(execute=True):
                ProductImage.objects.create(product=product, original=drawing((1, 2, 3), "circle"))
            assert client.llen("visrec_oscar_probe") == 1
        finally:
            client.delete("visrec_oscar_probe")


def test_an_image_saved_while_the_broker_is_down_does_not_break_oscar(settings, django_capture_on_commit_callbacks):
    from oscar.apps.catalogue.models import ProductImage
    from oscar.test.factories import create_product

    from tests.hosts.oscar.celery import app

    down = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = down
    saved, app.conf.broker_url = app.conf.broker_url, down  # Celery read the settings once, at start
    app._pool = None
    try:
        product = create_product(title="new mug", price=5, num_in_stock=1)
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            image = ProductImage.objects.create(product=product, original=drawing((1, 2, 3), "circle"))
        assert time.monotonic() - started < 5  # one attempt, no retries for seconds
    finally:
        app.conf.broker_url = saved
        app._pool = None
    assert PendingWork.objects.filter(kind=WorkKind.EMBED, image_id=image.pk).exists()
