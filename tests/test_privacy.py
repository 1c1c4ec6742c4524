"""Privacy: consent, contribution bounds, retention purge, export and erasure of one shopper."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from visrec.models import InteractionEvent, ShopperVector
from visrec.pseudonyms import subject_key
from visrec.services.privacy import shopper_data as privacy

from .factories import ProductFactory

pytestmark = pytest.mark.django_db
URL = "/api/visrec/events/"


def refuse(request) -> bool:
    return False


def test_no_consent_records_nothing(client, settings):
    settings.VISREC = {**settings.VISREC, "CONSENT_CHECK": "tests.test_privacy.refuse"}
    product = ProductFactory()
    response = client.post(URL, {"events": [{"type": "view", "product": product.pk}]}, content_type="application/json")
    assert response.status_code == 202 and response.json() == {"accepted": 0}
    assert not InteractionEvent.objects.exists()


def test_contribution_bounds_per_day_and_product(client, settings):
    settings.VISREC = {**settings.VISREC, "MAX_EVENTS_PER_DAY": 5, "MAX_EVENTS_PER_PRODUCT_PER_DAY": 2}
    a, b = ProductFactory(), ProductFactory()
    before = privacy.dropped_events()
    body = client.post(URL, {"events": [{"type": "view", "product": a.pk}] * 3}, content_type="application/json").json()
    assert body == {"accepted": 2}  # third view of the same product today is dropped
    body = client.post(URL, {"events": [{"type": "view", "product": b.pk}] * 2 + [{"type": "cart", "product": b.pk}]},
                       content_type="application/json").json()
    assert body == {"accepted": 2}
    body = client.post(URL, {"events": [{"type": "view", "product": ProductFactory().pk}] * 2},
                       content_type="application/json").json()
    assert body == {"accepted": 1}  # 5 per day in all
    assert InteractionEvent.objects.count() == 5
    assert privacy.dropped_events() - before == 3


def test_retention_purge_deletes_exactly_the_expired(settings):
    settings.VISREC = {**settings.VISREC, "RETENTION_DAYS": 30}
    product = ProductFactory()
    now = timezone.now()
    ages = [1, 29, 31, 45, 400]
    InteractionEvent.objects.bulk_create(
        InteractionEvent(subject_key="s" * 64, product=product, event_type="view", occurred_at=now - dt.timedelta(days=d))
        for d in ages)
    assert privacy.purge_expired_events(batch_size=2, now=now) == 3
    left = sorted(now - t for t in InteractionEvent.objects.values_list("occurred_at", flat=True))
    assert left == [dt.timedelta(days=1), dt.timedelta(days=29)]
    call_command("visrec_purge_events", "--days", "0")
    assert not InteractionEvent.objects.exists()


def test_export_and_erase_one_shopper(tmp_path):
    ann, bob = User.objects.create_user("ann"), User.objects.create_user("bob")
    product = ProductFactory()
    now = timezone.now()
    for user, n in ((ann, 3), (bob, 2)):
        InteractionEvent.objects.bulk_create(
            InteractionEvent(subject_key=subject_key("user", user.pk), product=product, event_type="view",
                             occurred_at=now - dt.timedelta(minutes=i)) for i in range(n))
        ShopperVector.objects.create(subject_key=subject_key("user", user.pk), model_version="m@1", vector=[1.0, 0.0])
    out = tmp_path / "ann.json"
    call_command("visrec_shopper_data", "--user", str(ann.pk), "--export", str(out))
    exported = json.loads(out.read_text())
    assert exported["subject"] == subject_key("user", ann.pk) and len(exported["events"]) == 3
    assert {e["product"] for e in exported["events"]} == {product.pk}
    assert privacy.erase_user(ann) == {"events": 3, "shopper_vectors": 1, "category_reports": 0, "sessions": 0}
    assert not InteractionEvent.objects.filter(subject_key=subject_key("user", ann.pk)).exists()
    assert not ShopperVector.objects.filter(subject_key=subject_key("user", ann.pk)).exists()
    assert InteractionEvent.objects.filter(subject_key=subject_key("user", bob.pk)).count() == 2
    call_command("visrec_shopper_data", "--subject", subject_key("user", bob.pk), "--erase")
    assert not InteractionEvent.objects.exists()


def test_privacy_settings_checks(settings):
    from visrec import checks

    assert checks.check_privacy_settings() == []  # the defaults fit the budget exactly
    settings.VISREC = {**settings.VISREC, "STATISTICS_EPSILON": 0, "PSEUDONYM_SECRET_FALLBACKS": "old",
                       "LOCAL_DP": True, "CATEGORY_FIELD": ""}
    assert sorted(m.id for m in checks.check_privacy_settings()) == ["visrec.E013", "visrec.E014", "visrec.E015"]
    settings.VISREC = {**settings.VISREC, "STATISTICS_EPSILON": 0.5, "PSEUDONYM_SECRET_FALLBACKS": [],
                       "LOCAL_DP": False, "TRENDING_EPSILON": 0.3}
    [warning] = checks.check_privacy_settings()
    assert warning.id == "visrec.W001" and "spend up to epsilon 11.5 per 30-day period" in warning.msg


def test_no_session_or_cache_holds_a_pseudonym_and_erasure_clears_visrecs_session_keys(client, settings):
    """What a reader of the session table or the session cache sees: no pseudonym of the user
    (only a token that the secret turns into one), and after erasure not even that."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from django.core.cache import cache

    from visrec.pseudonyms import subject_key

    from .factories import ProductFactory

    product = ProductFactory()
    ann = User.objects.create_user("ann-erased", password="pw")
    client.login(username="ann-erased", password="pw")
    client.post("/api/visrec/events/", {"events": [{"type": "view", "product": product.pk}]},
                content_type="application/json")
    pseudonym = subject_key("user", ann.pk)
    assert InteractionEvent.objects.filter(subject_key=pseudonym).exists()
    session = Session.objects.get(session_key=client.session.session_key)
    assert pseudonym not in str(session.get_decoded()) and pseudonym not in session.session_data
    cached = cache.get("django.contrib.sessions.cached_db" + session.session_key)  # the demo's cached_db sessions
    assert cached is not None and pseudonym not in str(cached)
    # a session written by an older visrec (the pseudonym in clear) is cleaned by erasure
    store = client.session
    store["visrec_subject"] = pseudonym
    store.save()
    assert privacy.erase_user(ann) == {"events": 1, "shopper_vectors": 0, "category_reports": 0, "sessions": 1}
    assert "visrec_subject" not in Session.objects.get(session_key=store.session_key).get_decoded()
