"""Event tracking: server-side track(), the batched endpoint, pseudonyms, login keeps history."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import RequestFactory
from django.utils import timezone

import visrec
from visrec.models import InteractionEvent
from visrec.pseudonyms import subject_key
from visrec.services.privacy.tracking import MAX_BATCH, SESSION_KEY, TrackingError

from .factories import ProductFactory

pytestmark = pytest.mark.django_db
URL = "/api/visrec/events/"


def anonymous_request():
    request = RequestFactory().get("/")
    SessionMiddleware(lambda r: None).process_request(request)
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    return request


def test_server_side_track_stores_a_pseudonymous_event():
    product = ProductFactory()
    request = anonymous_request()
    assert visrec.track(request, "view", product) == 1
    event = InteractionEvent.objects.get()
    assert event.subject_key == subject_key("anon", request.session[SESSION_KEY])
    assert event.product_id == product.pk and event.event_type == "view"
    assert event.subject_key not in request.session.values()  # only the secret turns the token into it
    field_names = {f.name for f in InteractionEvent._meta.get_fields()}
    assert not field_names & {"user", "ip", "ip_address", "user_agent"}


def test_logged_in_user_is_pseudonymised_not_stored():
    user = User.objects.create_user("ann", password="x")
    request = anonymous_request()
    request.user = user
    visrec.track(request, "purchase", ProductFactory())
    key = InteractionEvent.objects.get().subject_key
    assert key == subject_key("user", user.pk)
    assert key != subject_key("user", user.pk + 1) and len(key) == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event_type": "like"}, "unknown event type"),
        ({"product": 10**9}, "unknown product"),
        ({"occurred_at": timezone.now() + dt.timedelta(hours=1)}, "future"),
        ({"occurred_at": timezone.now() - dt.timedelta(days=30)}, "older"),
    ],
)
def test_server_side_validation(kwargs, message):
    product = ProductFactory()
    args = {"event_type": "view", "product": product, **kwargs}
    with pytest.raises(TrackingError, match=message):
        visrec.track(anonymous_request(), args.pop("event_type"), args.pop("product"), **args)
    assert not InteractionEvent.objects.exists()


def test_batch_endpoint_records_events(client):
    a, b = ProductFactory(), ProductFactory()
    events = [{"type": "view", "product": a.pk}, {"type": "click", "product": b.pk, "source": "similar", "position": 2},
              {"type": "cart", "product": b.pk}, {"type": "search"}]
    response = client.post(URL, {"events": events}, content_type="application/json")
    assert response.status_code == 202 and response.json() == {"accepted": 4}
    click = InteractionEvent.objects.get(event_type="click")
    assert (click.source, click.position) == ("similar", 2)
    assert InteractionEvent.objects.values("subject_key").distinct().count() == 1


@pytest.mark.parametrize(
    ("events", "needle"),
    [
        ([{"type": "view", "product": 10**9}], "unknown product"),
        ([{"type": "teleport", "product": None}], "not a valid choice"),
        ([{"type": "view", "timestamp": "2999-01-01T00:00:00Z"}], "future"),
        ([], "events"),
        ([{"type": "view", "position": -1}], "position"),
        ([{"type": "view", "timestamp": "yesterday"}], "timestamp"),
    ],
)
def test_batch_endpoint_rejects_invalid_events_and_stores_nothing(client, events, needle):
    product = ProductFactory()
    for event in events:
        if event.get("product", 0) is None or "product" not in event:
            event.setdefault("product", product.pk)
    payload = {"events": [{"type": "view", "product": product.pk}] + events} if events else {"events": []}
    response = client.post(URL, payload, content_type="application/json")
    assert response.status_code == 400
    assert needle in str(response.json())
    assert not InteractionEvent.objects.exists()


def test_oversize_batch_is_rejected(client):
    product = ProductFactory()
    payload = {"events": [{"type": "view", "product": product.pk}] * (MAX_BATCH + 1)}
    response = client.post(URL, payload, content_type="application/json")
    assert response.status_code == 400 and "limit" in str(response.json())
    assert not InteractionEvent.objects.exists()


def test_login_mid_session_keeps_the_session_history(client):
    product = ProductFactory()
    client.post(URL, {"events": [{"type": "view", "product": product.pk}]}, content_type="application/json")
    anonymous_key = InteractionEvent.objects.get().subject_key
    assert anonymous_key == subject_key("anon", client.session[SESSION_KEY])
    assert anonymous_key not in client.session.values()
    user = User.objects.create_user("bob", password="pw")
    client.login(username="bob", password="pw")
    client.post(URL, {"events": [{"type": "cart", "product": product.pk}]}, content_type="application/json")
    keys = set(InteractionEvent.objects.values_list("subject_key", flat=True))
    assert keys == {subject_key("user", user.pk)}
    assert not any(key.startswith("visrec_") for key in client.session.keys())  # nothing of visrec's is left


def test_detail_view_mixin_records_a_view_of_its_object(rf):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpResponse
    from django.views.generic import DetailView

    from shop_demo.catalog.models import Product
    from visrec.mixins import TrackProductViewMixin
    from visrec.models import InteractionEvent

    from .factories import ProductFactory

    class ProductPage(TrackProductViewMixin, DetailView):
        model = Product

        def render_to_response(self, context, **kwargs):
            return HttpResponse("ok")

    product = ProductFactory()
    request = rf.get("/")
    request.user, request.session = AnonymousUser(), SessionStore()
    assert ProductPage.as_view()(request, pk=product.pk).status_code == 200
    assert list(InteractionEvent.objects.values_list("product_id", "event_type")) == [(product.pk, "view")]


def test_track_without_a_shopper_is_a_clear_error_not_a_database_error():
    product = ProductFactory()
    with pytest.raises(TrackingError, match="no shopper"):
        visrec.track(None, "view", product)
    assert not InteractionEvent.objects.exists()
