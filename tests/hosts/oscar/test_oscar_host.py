"""visrec installed into a django-oscar 4.2 shop, configured by the oscar preset in a few lines."""
from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from visrec.models import EventType, InteractionEvent, PendingWork, ProductEmbedding
from visrec.services.catalogue.embedders import active_embedder_version

pytestmark = pytest.mark.django_db

SIMILAR = "/api/visrec/products/{}/similar/"


def titles(shop, rows):
    by_pk = {p.pk: name for name, p in shop.products.items()}
    return [by_pk[row["id"]] for row in rows]


def test_visrec_migrated_from_zero_onto_oscars_catalogue():
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT ccu.table_name FROM information_schema.table_constraints tc
            JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name
            WHERE tc.table_name = 'visrec_productembedding' AND tc.constraint_type = 'FOREIGN KEY'""")
        assert [row[0] for row in cursor.fetchall()] == ["catalogue_product"]
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'visrec_%%'")
        assert cursor.fetchone()[0] >= 10


def test_real_image_files_are_indexed_and_variants_fold_into_their_parent(shop):
    version = active_embedder_version()
    assert version is not None
    vectors = set(ProductEmbedding.objects.filter(model_version=version.name).values_list("product_id", flat=True))
    assert shop["lamp family"].pk in vectors  # from its child's picture
    assert not {shop["small lamp"].pk, shop["large lamp"].pk} & vectors
    assert not PendingWork.objects.exists()


def test_similar_never_shows_hidden_products_children_or_out_of_stock_ones(shop, client):
    rows = client.get(SIMILAR.format(shop["red mug"].pk), {"limit": 20}).json()["results"]
    names = titles(shop, rows)
    assert names[:2] == ["dark red mug", "two-category mug"] or set(names[:3]) >= {"dark red mug"}
    assert not {"red mug", "hidden mug", "sold-out mug", "small lamp", "large lamp"} & set(names)
    everything = titles(shop, client.get(SIMILAR.format(shop["red mug"].pk),
                                         {"limit": 20, "in_stock": "false"}).json()["results"])
    assert "sold-out mug" in everything and "hidden mug" not in everything
    assert "lamp family" in names  # in stock through its large child


def test_prices_come_from_stock_records_formatted_by_oscar(shop, client):
    rows = client.get(SIMILAR.format(shop["red mug"].pk), {"limit": 20}).json()["results"]
    prices = {name: (row["price"], row["price_display"]) for name, row in zip(titles(shop, rows), rows)}
    assert prices["dark red mug"] == ("14.50", "£14.50")
    assert prices["lamp family"] == ("30.00", "£30.00")  # the lowest of its children's
    band = titles(shop, client.get(SIMILAR.format(shop["red mug"].pk),
                                   {"limit": 20, "min_price": "10", "max_price": "14"}).json()["results"])
    assert band == ["two-category mug"]


def test_same_category_follows_the_primary_category(shop, client):
    mugs = titles(shop, client.get(SIMILAR.format(shop["blue lamp"].pk),
                                   {"limit": 20, "category": "same"}).json()["results"])
    # blue lamp's primary category is Lamps: the two-category mug is filed there too
    assert set(mugs) == {"teal lamp", "lamp family", "two-category mug"}
    from visrec.services.catalogue.products import primary_category

    assert primary_category(shop["two-category mug"].pk) == shop.categories["mugs"].pk


def test_a_childs_page_shows_its_parents_look_alikes(shop, client):
    child = titles(shop, client.get(SIMILAR.format(shop["large lamp"].pk), {"limit": 5}).json()["results"])
    parent = titles(shop, client.get(SIMILAR.format(shop["lamp family"].pk), {"limit": 5}).json()["results"])
    assert child == parent and "lamp family" not in child


def test_oscar_signals_record_views_carts_and_purchases(shop, client):
    from oscar.test.factories import create_order

    mug = shop["red mug"]
    assert client.get(mug.get_absolute_url()).status_code == 200
    response = client.post(reverse("basket:add", args=[mug.pk]), {"quantity": 1})
    assert response.status_code in (200, 302)
    kinds = list(InteractionEvent.objects.filter(product=mug).values_list("event_type", flat=True))
    assert sorted(kinds) == [EventType.CART, EventType.VIEW]
    # a child's page is a view of the parent
    client.get(shop["large lamp"].get_absolute_url())
    assert InteractionEvent.objects.filter(product=shop["lamp family"], event_type=EventType.VIEW).exists()
    order = create_order()
    request = client.get("/").wsgi_request
    from visrec.contrib.oscar.receivers import record_order

    assert record_order(order, request) == 1
    assert InteractionEvent.objects.filter(event_type=EventType.PURCHASE).count() == 1


def test_for_you_and_the_rest_of_the_api(shop, client):
    client.get(shop["red mug"].get_absolute_url())
    body = client.get("/api/visrec/for-you/", {"limit": 10, "product": shop["red mug"].pk}).json()
    names = titles(shop, body["results"])
    assert body["source"] == "session" and names[0] == "dark red mug"
    assert not {"hidden mug", "small lamp", "large lamp", "red mug"} & set(names)
    events = client.post("/api/visrec/events/", {"events": [{"type": "click", "product": shop["blue lamp"].pk}]},
                         content_type="application/json")
    assert events.status_code == 202
    assert client.get("/api/visrec/schema/").status_code == 200  # the sandbox has no REST_FRAMEWORK setting
    assert client.get("/api/visrec/docs/").status_code == 200


def test_product_page_renders_both_rows(shop, client):
    client.get(shop["orange mug"].get_absolute_url())
    html = client.get(shop["red mug"].get_absolute_url()).content.decode()
    assert "Looks like this" in html and "Picked for you" in html
    assert "visrec/visrec.js" in html and "£14.50" in html


def test_an_image_saved_while_the_broker_is_down_does_not_break_oscar(db, django_capture_on_commit_callbacks):
    from celery import current_app
    from oscar.apps.catalogue.models import ProductImage
    from oscar.test.factories import create_product

    from .conftest import drawing

    saved, current_app.conf.broker_url = current_app.conf.broker_url, "redis://127.0.0.1:1/0"
    current_app._pool = None
    try:
        product = create_product(title="new mug", price=5, num_in_stock=1)
        with django_capture_on_commit_callbacks(execute=True):
            image = ProductImage.objects.create(product=product, original=drawing((1, 2, 3), "circle"))
    finally:
        current_app.conf.broker_url = saved
        current_app._pool = None
    assert PendingWork.objects.filter(image_id=image.pk).exists()
