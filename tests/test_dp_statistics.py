"""Admin statistics: only DP numbers leave the event log, one release per window, the budget refuses."""
from __future__ import annotations

import csv
import datetime as dt
import io

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.utils import timezone

from visrec.models import InteractionEvent, PrivacyRelease
from visrec.services.privacy import dp_statistics

from .factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db
PAGE = "/admin/visrec/privacyrelease/statistics/"
CSV = "/admin/visrec/privacyrelease/statistics/csv/"


@pytest.fixture
def shop(settings):
    """30 products in 3 categories; product i viewed by 10 + i shoppers, carted by i, bought by i // 3.

    One shopper per product and event type, so with one product per shopper the exact
    distinct counts are exactly these numbers.
    """
    settings.VISREC = {**settings.VISREC, "RELEASE_MAX_PRODUCTS_PER_SHOPPER": 1, "STATISTICS_EPSILON": 2.0}
    categories = [CategoryFactory() for _ in range(3)]
    products = [ProductFactory(category=categories[i % 3]) for i in range(30)]
    now = timezone.now() - dt.timedelta(hours=1)
    exact = {"view": {}, "cart": {}, "purchase": {}}
    rows = []
    for i, product in enumerate(products):
        for event_type, n in (("view", 10 + i), ("cart", i), ("purchase", i // 3)):
            exact[event_type][product.pk] = n
            rows += [InteractionEvent(subject_key=f"{event_type}-{i}-{s}".ljust(64, "x"), product=product,
                                      event_type=event_type, occurred_at=now) for s in range(n)]
    InteractionEvent.objects.bulk_create(rows)
    return products, categories, exact


def test_page_shows_noisy_counts_with_their_interval_and_reuses_one_release(admin_client, shop):
    products, categories, exact = shop
    page = admin_client.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    release = PrivacyRelease.objects.get(kind=dp_statistics.KIND)
    # 3 product histograms + categories, one product / category per shopper: sensitivity 4, scale 4 / 2.
    assert release.sensitivity == 4 and release.noise_scale == pytest.approx(2.0) and release.epsilon == 2.0
    margin = dp_statistics.noise_margin(2.0)
    assert "Every number on this page is noisy." in html
    assert f"± {margin:.0f}" in html and "95% probability" in html
    assert products[29].name in html and categories[0].name in html
    assert "Privacy budget: epsilon 8.00 of 10.00 left" in html
    # Viewing again and exporting reuse the release: nothing more is spent.
    assert admin_client.get(PAGE).status_code == 200
    assert admin_client.get(CSV).status_code == 200
    assert PrivacyRelease.objects.count() == 1


def test_csv_has_the_released_noisy_numbers_not_the_exact_counts(admin_client, shop):
    products, categories, exact = shop
    response = admin_client.get(CSV)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    release = PrivacyRelease.objects.get(kind=dp_statistics.KIND)
    vectors = release.payload["vectors"]
    assert {r["release"] for r in rows} == {str(release.pk)}
    errors = []
    for event_type, column in dp_statistics.EVENT_COLUMNS.items():
        released = {int(r["id"]): int(r["noisy_value"]) for r in rows if r["statistic"] == column}
        assert set(released) == {p.pk for p in products}
        assert released == {p.pk: int(vectors[event_type].get(str(p.pk), 0)) for p in products}
        # Exact counts of 10 or more are not clamped at 0: their error is the noise itself.
        errors += [released[p] - n for p, n in exact[event_type].items() if n >= 10]
    errors = np.array(errors)
    margin = dp_statistics.noise_margin(2.0)
    assert len(errors) >= 40
    assert (errors != 0).mean() > 0.5          # P(noise = 0) is 0.24 at scale 2
    assert np.abs(errors).max() <= 4 * margin  # P(|noise| > 4 × margin) is 20^-4 per count
    assert abs(errors.mean()) < 1.5            # unbiased
    shares = {r["id"]: float(r["noisy_value"]) for r in rows if r["statistic"] == "category_share_central_dp"}
    assert set(shares) == {str(c.pk) for c in categories} and sum(shares.values()) == pytest.approx(1, abs=1e-3)
    counts = {r["id"]: int(r["noisy_value"]) for r in rows if r["statistic"] == "category_distinct_shoppers"}
    assert counts == {k: int(v) for k, v in vectors["category"].items()}


def test_non_staff_and_staff_without_permission_are_refused(client, shop):
    shopper = User.objects.create_user("shopper", password="pw")
    client.force_login(shopper)
    for url in (PAGE, CSV):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    clerk = User.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)
    assert client.get(PAGE).status_code == 403 and client.get(CSV).status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_privacyrelease"))
    assert client.get(PAGE).status_code == 200
    assert not InteractionEvent.objects.filter(subject_key__startswith="shopper").exists()


def test_over_budget_is_refused_with_a_clear_message(admin_client, shop, settings):
    settings.VISREC = {**settings.VISREC, "PRIVACY_BUDGET_EPSILON": 1.5}
    html = admin_client.get(PAGE).content.decode()
    assert "No statistics released: releasing admin-statistics needs epsilon 2 but only 1.5 of 1.5 is left" in html
    assert "Every number on this page is noisy." not in html
    response = admin_client.get(CSV, follow=True)
    assert response.redirect_chain[-1][0].endswith(PAGE)
    assert "needs epsilon 2 but only 1.5" in response.content.decode()
    assert not PrivacyRelease.objects.exists()


def test_an_expired_release_is_shown_when_a_new_one_is_refused(admin_client, shop, settings):
    admin_client.get(PAGE)
    with connection.cursor() as cursor:  # eight days pass: only this test's transaction bypasses the ledger's guard
        cursor.execute("ALTER TABLE visrec_privacyrelease DISABLE TRIGGER visrec_privacyrelease_append_only")
        PrivacyRelease.objects.update(created_at=timezone.now() - dt.timedelta(days=8))
        cursor.execute("ALTER TABLE visrec_privacyrelease ENABLE TRIGGER visrec_privacyrelease_append_only")
    settings.VISREC = {**settings.VISREC, "PRIVACY_BUDGET_EPSILON": 3.0}
    html = admin_client.get(PAGE).content.decode()
    assert "a new one was refused" in html and "Every number on this page is noisy." in html
    assert PrivacyRelease.objects.count() == 1
    settings.VISREC = {**settings.VISREC, "PRIVACY_BUDGET_EPSILON": 10.0}
    admin_client.get(PAGE)
    assert PrivacyRelease.objects.count() == 2  # the window expired: a new release


def test_with_local_dp_the_release_leaves_categories_to_the_reports(admin_client, shop, settings):
    settings.VISREC = {**settings.VISREC, "LOCAL_DP": True}
    html = admin_client.get(PAGE).content.decode()
    release = PrivacyRelease.objects.get()
    assert release.sensitivity == 3 and "category" not in release.payload["vectors"]
    assert release.payload["categories"] == "local"
    assert "Debiased from 0 category reports" in html


def test_ledger_links_to_the_statistics_and_release_is_not_made_by_the_ledger(admin_client, shop):
    html = admin_client.get("/admin/visrec/privacyrelease/").content.decode()
    assert f'href="{PAGE}"' in html
    assert not PrivacyRelease.objects.exists()


def test_the_ledger_is_append_only_in_the_database_and_the_admin(admin_client, shop):
    from django.db import DatabaseError, transaction

    admin_client.get(PAGE)
    release = PrivacyRelease.objects.get()
    for attempt in (lambda: PrivacyRelease.objects.filter(pk=release.pk).update(epsilon=0.0),
                    lambda: PrivacyRelease.objects.filter(pk=release.pk).delete(),
                    lambda: connection.cursor().execute("DELETE FROM visrec_privacyrelease")):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
    assert PrivacyRelease.objects.get().epsilon == release.epsilon
    changelist = admin_client.get("/admin/visrec/privacyrelease/").content.decode()
    assert "delete_selected" not in changelist
    assert admin_client.post(f"/admin/visrec/privacyrelease/{release.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"/admin/visrec/privacyrelease/{release.pk}/change/", {"epsilon": "0"}).status_code == 403
    assert PrivacyRelease.objects.count() == 1
