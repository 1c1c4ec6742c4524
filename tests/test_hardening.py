"""Probes of issue #19 rerun as tests: fake shoppers, forged purchases, reads that wrote sessions,
hostile bodies, throttles, and outages of the cache and the database."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.utils import timezone

from visrec.models import InteractionEvent
from visrec.services.privacy import dp_releases
from visrec.services.privacy.tracking import SINCE_KEY

from .factories import ProductFactory

pytestmark = pytest.mark.django_db

EVENTS = "/api/visrec/events/"


def post_events(client, events, **extra):
    return client.post(EVENTS, {"events": events}, content_type="application/json", **extra)


@pytest.fixture
def unthrottled(settings):
    """No throttles and no network budget: what is left are the trust tiers."""
    settings.VISREC = {**settings.VISREC, "THROTTLE_RATES": {}, "EVENTS_PER_NETWORK_PER_MINUTE": 0}


def established_client(products) -> Client:
    """An anonymous shopper whose session is an hour old and who viewed three products."""
    client = Client()
    post_events(client, [{"type": "view", "product": p.pk} for p in products[:3]])
    session = client.session
    session[SINCE_KEY] = int(time.time()) - 3600
    session.save()
    return client


def test_sybil_shoppers_cannot_move_the_public_trending_list(unthrottled, settings):
    """600 cookieless requests, each a new shopper, all viewing one product: that product gets
    no count in the public release (trending); real, established shoppers still do."""
    settings.VISREC = {**settings.VISREC, "TRENDING_EPSILON": 5.0, "PRIVACY_BUDGET_EPSILON": 200.0}
    products = [ProductFactory() for _ in range(6)]
    target, liked = products[5], products[:5]
    for n in range(40):  # real shoppers: product i liked by 40 - 7 i of them
        shopper = established_client(products)
        chosen = [p for i, p in enumerate(liked) if n < 40 - 7 * i]
        assert post_events(shopper, [{"type": "cart", "product": p.pk} for p in chosen]).status_code == 202
    for _ in range(600):
        assert post_events(Client(), [{"type": "view", "product": target.pk}]).status_code == 202
    assert InteractionEvent.objects.filter(product=target).count() == 600  # stored: they serve each shopper
    now = timezone.now()
    exact = dp_releases.exact_distinct_counts(now - dt.timedelta(days=7), now + dt.timedelta(minutes=1), None, 10)
    assert exact.get(target.pk, 0) == 0 and [exact[p.pk] for p in liked] == [40, 33, 26, 19, 12]
    ranked = [pid for pid, _ in dp_releases.dp_trending()]
    assert ranked[0] == liked[0].pk and set(ranked[:5]) == {p.pk for p in liked}  # noise scale 2
    assert target.pk not in ranked[:5]


def test_an_established_anonymous_shopper_counts_publicly_a_fresh_one_does_not(unthrottled):
    products = [ProductFactory() for _ in range(4)]
    fresh = Client()
    post_events(fresh, [{"type": "view", "product": p.pk} for p in products[:3]])
    assert not InteractionEvent.objects.filter(public=True).exists()  # a new session: not yet
    old = established_client(products)
    post_events(old, [{"type": "cart", "product": products[3].pk}])
    assert InteractionEvent.objects.get(public=True).product_id == products[3].pk


def test_anonymous_clients_cannot_post_purchases(client, django_user_model):
    product = ProductFactory()
    response = post_events(client, [{"type": "view", "product": product.pk},
                                    {"type": "purchase", "product": product.pk}])
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "no event was recorded" and "server" in body["errors"]["events"]["1"][0]
    assert not InteractionEvent.objects.exists()
    user = django_user_model.objects.create_user("payer", password="pw")
    client.force_login(user)
    assert post_events(client, [{"type": "purchase", "product": product.pk}]).status_code == 202


def test_reads_create_no_session(client):
    ProductFactory()
    assert client.get("/api/visrec/for-you/").status_code == 200
    assert client.get("/api/visrec/for-you/", {"limit": 3}).json()["source"] == "trending"
    assert Session.objects.count() == 0 and "sessionid" not in client.cookies


def test_hostile_bodies_are_400_not_500(client):
    nested = "[" * 100_000 + "]" * 100_000  # 200 KB of nesting: json's RecursionError
    response = client.post(EVENTS, nested, content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    deep = '{"events": ' + "[" * 5000 + "]" * 5000 + "}"
    assert client.post(EVENTS, deep, content_type="application/json").status_code == 400
    assert client.post(EVENTS, "{not json", content_type="application/json").status_code == 400
    empty = post_events(client, [])
    assert empty.status_code == 400 and "events" in empty.json()["errors"]


def test_events_and_photo_search_are_throttled_per_network_without_storing_an_address(client, settings):
    from django.core.cache import cache

    settings.VISREC = {**settings.VISREC, "THROTTLE_RATES": {"events": "3/min", "photo_search": "1/min"}}
    product = ProductFactory()
    codes = [post_events(Client(REMOTE_ADDR="198.51.100.7"), [{"type": "view", "product": product.pk}]).status_code
             for _ in range(4)]
    assert codes == [202, 202, 202, 429]
    limited = post_events(Client(REMOTE_ADDR="198.51.100.99"), [{"type": "view", "product": product.pk}])
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0  # same /24: same budget
    assert "detail" in limited.json()
    other = post_events(Client(REMOTE_ADDR="203.0.113.5"), [{"type": "view", "product": product.pk}])
    assert other.status_code == 202  # another network
    client_redis = cache._cache.get_client()
    assert not [k for k in client_redis.keys("*") if b"198.51.100" in k]  # keyed hashes only
    first = Client(REMOTE_ADDR="192.0.2.1").post("/api/visrec/search/", {})
    second = Client(REMOTE_ADDR="192.0.2.1").post("/api/visrec/search/", {})
    assert (first.status_code, second.status_code) == (400, 429)


def test_the_network_budget_drops_events_beyond_it(client, settings):
    settings.VISREC = {**settings.VISREC, "THROTTLE_RATES": {}, "EVENTS_PER_NETWORK_PER_MINUTE": 5}
    product = ProductFactory()
    accepted = [post_events(Client(), [{"type": "view", "product": product.pk}] * 2).json()["accepted"]
                for _ in range(4)]
    assert accepted == [2, 2, 0, 0]
    assert InteractionEvent.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_is_503_with_retry_after(client, monkeypatch):
    from django.db.backends.postgresql.base import DatabaseWrapper
    from psycopg import OperationalError

    product = ProductFactory()

    def refuse(self, params):
        raise OperationalError("connection refused (the test took PostgreSQL away)")

    connection.close()
    monkeypatch.setattr(DatabaseWrapper, "get_new_connection", refuse)
    try:
        for response in (client.get(f"/api/visrec/products/{product.pk}/similar/"),
                         client.get("/api/visrec/for-you/")):
            assert response.status_code == 503, response.content
            assert response["Retry-After"] == "10" and "database" in response.json()["detail"]
    finally:
        monkeypatch.undo()
        connection.close()


def test_a_cache_outage_degrades_to_the_database(client, settings, django_capture_on_commit_callbacks):
    """The cache (and the cached_db session cache) unreachable: every endpoint still answers
    from PostgreSQL, catalogue saves do not raise."""
    from .conftest import make_image_bytes
    from .factories import ProductImageFactory
    from .test_similar import make_version, plant

    make_version()
    products = [ProductFactory(name=f"Jar {i}") for i in range(4)]
    plant(products, [[1, 0.1 * i] + [0] * 14 for i in range(4)])
    settings.CACHES = {"default": {"BACKEND": "visrec.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    similar = client.get(f"/api/visrec/products/{products[0].pk}/similar/", {"in_stock": "false"})
    assert similar.status_code == 200 and [r["id"] for r in similar.json()["results"]][0] == products[1].pk
    assert client.get("/api/visrec/for-you/").status_code == 200
    assert post_events(client, [{"type": "view", "product": products[2].pk}]).status_code == 202
    assert client.get("/api/visrec/for-you/").json()["source"] == "session"
    with django_capture_on_commit_callbacks(execute=True):
        ProductImageFactory.with_bytes(make_image_bytes(), product=products[3])
        products[3].name = "Jar renamed"
        products[3].save()
        products[2].delete()


def test_error_bodies_have_one_shape(client):
    for response in (client.get("/api/visrec/products/abc/similar/"),
                     client.get("/api/visrec/products/1/similar/", {"limit": ""}),
                     client.post("/api/visrec/search/", {}),
                     post_events(client, [{"type": "nope", "product": 1}])):
        body = response.json()
        assert 400 <= response.status_code < 500
        assert isinstance(body["detail"], str) and set(body) <= {"detail", "errors"}, body
    assert json.loads(client.get("/api/visrec/schema/", {"format": "json"}).content)  # the schema itself answers


def test_a_photo_search_upload_over_the_pixel_limit_is_refused_before_decoding(client, settings):
    """A tiny PNG declaring 39.7 million pixels (the probe's 131 KB file) is refused from its
    header: 400, no decode, whatever MAX_IMAGE_PIXELS allows the catalogue."""
    import io

    from PIL import Image

    from .test_similar import make_version

    make_version()
    buffer = io.BytesIO()
    Image.new("1", (6300, 6300)).save(buffer, format="PNG", optimize=True)  # 39.7 MP, a few KB
    buffer.seek(0)
    buffer.name = "huge.png"
    assert settings.VISREC.get("MAX_IMAGE_PIXELS", 40_000_000) >= 39_690_000  # the catalogue would take it
    response = client.post("/api/visrec/search/", {"image": buffer})
    assert response.status_code == 400
    assert "pixels" in response.json()["detail"]
