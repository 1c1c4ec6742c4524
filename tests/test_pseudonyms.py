"""Pseudonyms: keyed, stable, rotatable with fallback secrets and re-keying."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from visrec.models import InteractionEvent, ShopperVector
from visrec.pseudonyms import subject_key, subject_keys
from visrec.services.privacy import shopper_data as privacy
from visrec.services.privacy.tracking import SESSION_KEY

from .factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_pseudonym_is_stable_and_hides_the_identifier(settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s1"}
    key = subject_key("user", 42)
    assert key == subject_key("user", "42")
    assert len(key) == 64 and "42" not in key
    assert key != subject_key("session", 42)


def test_pseudonym_depends_on_the_secret(settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s1"}
    first = subject_key("user", 42)
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s2"}
    assert subject_key("user", 42) != first


def test_fallback_secrets_come_after_the_current_one(settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "new", "PSEUDONYM_SECRET_FALLBACKS": ["old", "new"]}
    keys = subject_keys("user", 42)
    assert keys[0] == subject_key("user", 42) and len(keys) == 2  # the current secret is not repeated
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "old", "PSEUDONYM_SECRET_FALLBACKS": []}
    assert subject_keys("user", 42) == [keys[1]]


def test_django_secret_key_fallbacks_apply_to_the_derived_secret(settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "", "PSEUDONYM_SECRET_FALLBACKS": []}
    before = subject_key("user", 7)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-django-secret-key-" + "x" * 40
    assert subject_key("user", 7) != before
    assert subject_keys("user", 7) == [subject_key("user", 7), before]


@pytest.fixture
def rotated(settings):
    """Ann and Bob have history under secret "s1"; then the shop rotates to "s2" (s1 kept as fallback)."""
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s1", "PSEUDONYM_SECRET_FALLBACKS": []}
    ann, bob = User.objects.create_user("ann"), User.objects.create_user("bob")
    product = ProductFactory()
    now = timezone.now()
    old = {u: subject_key("user", u.pk) for u in (ann, bob)}
    for user, n in ((ann, 3), (bob, 2)):
        InteractionEvent.objects.bulk_create(
            InteractionEvent(subject_key=old[user], product=product, event_type="view",
                             occurred_at=now - dt.timedelta(minutes=i)) for i in range(n))
        ShopperVector.objects.create(subject_key=old[user], model_version="m@1", vector=[1.0, 0.0])
    anonymous = subject_key("session", "some-session-key")
    InteractionEvent.objects.create(subject_key=anonymous, product=product, event_type="view", occurred_at=now)
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s2", "PSEUDONYM_SECRET_FALLBACKS": ["s1"]}
    InteractionEvent.objects.create(subject_key=subject_key("user", ann.pk), product=product, event_type="cart",
                                    occurred_at=now)
    return ann, bob, old, anonymous


def test_export_and_erase_find_events_from_before_rotation_while_the_old_secret_is_listed(rotated, settings):
    ann, bob, old, _ = rotated
    assert subject_key("user", ann.pk) != old[ann]
    exported = privacy.export_user(ann)
    assert sorted(e["type"] for e in exported["events"]) == ["cart", "view", "view", "view"]
    assert exported["pseudonyms"] == [subject_key("user", ann.pk), old[ann]]
    assert privacy.erase_user(ann) == {"events": 4, "shopper_vectors": 1, "category_reports": 0, "sessions": 0}
    # Once the old secret is removed, Bob's older events can no longer be linked to him.
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET_FALLBACKS": []}
    assert privacy.export_user(bob)["events"] == []
    assert privacy.erase_user(bob)["events"] == 0
    assert InteractionEvent.objects.filter(subject_key=old[bob]).count() == 2


def test_rotate_command_rekeys_users_but_not_anonymous_sessions(rotated, settings, django_capture_on_commit_callbacks):
    from django.core.cache import cache

    ann, bob, old, anonymous = rotated
    new_ann = subject_key("user", ann.pk)
    for key in (old[ann], new_ann):  # "for you" lists cached under either name are dropped
        cache.set(f"visrec:foryou:{key}", ("variant", [], []), 600)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("visrec_rotate_pseudonyms", "--chunk-size", "1", stdout=out, verbosity=0)
    assert cache.get(f"visrec:foryou:{old[ann]}") is None and cache.get(f"visrec:foryou:{new_ann}") is None
    assert "re-keyed 5 events, 2 shopper vectors and 0 category reports of 2 users" in out.getvalue()
    for user, n in ((ann, 4), (bob, 2)):
        assert InteractionEvent.objects.filter(subject_key=subject_key("user", user.pk)).count() == n
        assert ShopperVector.objects.filter(subject_key=subject_key("user", user.pk)).count() == 1
        assert not InteractionEvent.objects.filter(subject_key=old[user]).exists()
    assert InteractionEvent.objects.filter(subject_key=anonymous).count() == 1
    # After the old secret is dropped, the re-keyed history still belongs to its user.
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET_FALLBACKS": []}
    assert len(privacy.export_user(bob)["events"]) == 2
    with pytest.raises(CommandError, match="no fallback secret"):
        call_command("visrec_rotate_pseudonyms")


def test_anonymous_session_switches_to_the_new_secret(client, settings):
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s1", "PSEUDONYM_SECRET_FALLBACKS": []}
    product = ProductFactory()
    client.post("/api/visrec/events/", {"events": [{"type": "view", "product": product.pk}]},
                content_type="application/json")
    token = client.session[SESSION_KEY]
    first = InteractionEvent.objects.get().subject_key
    assert first == subject_key("anon", token)
    settings.VISREC = {**settings.VISREC, "PSEUDONYM_SECRET": "s2", "PSEUDONYM_SECRET_FALLBACKS": ["s1"]}
    client.post("/api/visrec/events/", {"events": [{"type": "cart", "product": product.pk}]},
                content_type="application/json")
    second = InteractionEvent.objects.get(event_type="cart").subject_key
    assert second == subject_key("anon", token) != first
