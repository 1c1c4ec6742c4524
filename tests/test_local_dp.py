"""Local DP: category reports are randomised before storing, and debiasing recovers the shares.

OpenDP draws from the operating system's CSPRNG and cannot be seeded, so the statistical
assertions use bounds of about 5 standard deviations (false alarm rate about 1e-6).
"""
from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from visrec.models import CategoryReport, InteractionEvent
from visrec.pseudonyms import subject_key
from visrec.services.privacy import local_dp
from visrec.services.privacy import shopper_data as privacy
from visrec.services.privacy.tracking import EventIn, record_events

from .factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def four_categories(settings):
    settings.VISREC = {**settings.VISREC, "LOCAL_DP": True, "LOCAL_DP_EPSILON": 1.0}
    categories = [CategoryFactory() for _ in range(4)]
    return [ProductFactory(category=c) for c in categories]


def test_keep_probability_gives_the_epsilon_opendp_proves():
    for epsilon, k in ((0.5, 2), (1.0, 4), (2.0, 20), (4.0, 7)):
        p = local_dp.keep_probability(epsilon, k)
        categories = [str(i) for i in range(k)]
        assert local_dp.randomized_response_epsilon(categories, p) == pytest.approx(epsilon, rel=1e-9)


def test_debiasing_recovers_planted_shares_within_the_stated_error():
    categories = ["a", "b", "c", "d"]
    planted = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}
    p = local_dp.keep_probability(1.0, 4)
    n = 6000
    truth = [c for c, share in planted.items() for _ in range(round(share * n))]
    reports = Counter(local_dp.randomize_category(c, categories, p) for c in truth)
    # The raw reports are far from the truth: most are flipped towards uniform...
    assert reports["a"] / n < 0.4 and reports["d"] / n > 0.12
    estimate = local_dp.debias(reports, categories, p)
    assert estimate.reports == n
    for c, share in planted.items():
        # ... the debiased share is within its 95% margin × 2.5 (≈ 4.9 σ), and that margin is useful.
        assert estimate.margins[c] < 0.05
        assert abs(estimate.shares[c] - share) <= 2.5 * estimate.margins[c], (c, estimate.shares[c])
    assert sum(estimate.shares.values()) == pytest.approx(1.0)


def test_combining_domains_weights_by_reports_and_zeroes_missing_categories():
    old = local_dp.DebiasedShares({"a": 1.0, "b": 0.0}, {"a": 0.1, "b": 0.1}, 100)
    new = local_dp.DebiasedShares({"a": 0.2, "b": 0.2, "c": 0.6}, {"a": 0.1, "b": 0.1, "c": 0.1}, 300)
    both = local_dp.combine([old, new])
    assert both.reports == 400
    assert both.shares == pytest.approx({"a": 0.4, "b": 0.15, "c": 0.45})
    assert both.margins["c"] == pytest.approx(0.075)
    assert both.margins["a"] == pytest.approx(math.sqrt(0.025 ** 2 + 0.075 ** 2))


def test_with_local_dp_on_stored_reports_are_randomised_and_debias_to_the_truth(four_categories):
    products = four_categories
    n = 300
    for i in range(n):  # every shopper views a product of the first category
        record_events(f"{i:064d}", [EventIn("view", products[0].pk)])
    reports = list(CategoryReport.objects.values_list("category", flat=True))
    assert len(reports) == n
    true_key = str(products[0].category_id)
    p = local_dp.keep_probability(1.0, 4)
    kept = reports.count(true_key) / n
    assert kept < 0.9  # randomised: not always the true category
    assert abs(kept - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert set(reports) <= {str(x.category_id) for x in products}
    shares = local_dp.category_shares()
    assert abs(shares.shares[true_key] - 1.0) <= 2.5 * shares.margins[true_key]


def test_reports_are_capped_per_shopper_and_day(four_categories, settings):
    products = four_categories
    record_events("a" * 64, [EventIn("view", p.pk) for p in products])
    assert CategoryReport.objects.filter(subject_key="a" * 64).count() == 1
    record_events("a" * 64, [EventIn("cart", products[1].pk)])
    assert CategoryReport.objects.filter(subject_key="a" * 64).count() == 1
    yesterday = timezone.now() - dt.timedelta(days=1)
    record_events("a" * 64, [EventIn("view", products[2].pk, occurred_at=yesterday),
                             EventIn("view", products[3].pk, occurred_at=yesterday)])
    assert CategoryReport.objects.filter(subject_key="a" * 64).count() == 2  # one more, for yesterday
    settings.VISREC = {**settings.VISREC, "LOCAL_DP_REPORTS_PER_DAY": 3}
    record_events("b" * 64, [EventIn("view", p.pk) for p in products])
    assert CategoryReport.objects.filter(subject_key="b" * 64).count() == 3
    assert InteractionEvent.objects.count() == 11  # the events themselves are stored as usual


def test_local_dp_off_stores_no_reports(four_categories, settings):
    settings.VISREC = {**settings.VISREC, "LOCAL_DP": False}
    record_events("c" * 64, [EventIn("view", four_categories[0].pk)])
    assert InteractionEvent.objects.count() == 1 and not CategoryReport.objects.exists()


def test_reports_are_exported_erased_and_purged_with_the_events(four_categories, settings):
    ann = User.objects.create_user("ann")
    key = subject_key("user", ann.pk)
    record_events(key, [EventIn("view", four_categories[2].pk)])
    exported = privacy.export_user(ann)
    assert len(exported["category_reports"]) == 1 and exported["category_reports"][0]["randomised"]
    assert privacy.erase_user(ann) == {"events": 1, "shopper_vectors": 0, "category_reports": 1, "sessions": 0}
    record_events("d" * 64, [EventIn("view", four_categories[2].pk)])
    CategoryReport.objects.update(occurred_at=timezone.now() - dt.timedelta(days=40))
    settings.VISREC = {**settings.VISREC, "RETENTION_DAYS": 30}
    privacy.purge_expired_events()
    assert not CategoryReport.objects.exists()


def test_login_moves_the_sessions_reports_with_its_events(client, four_categories):
    client.post("/api/visrec/events/", {"events": [{"type": "view", "product": four_categories[0].pk}]},
                content_type="application/json")
    assert CategoryReport.objects.get().subject_key == InteractionEvent.objects.get().subject_key
    user = User.objects.create_user("bob", password="pw")
    client.login(username="bob", password="pw")
    assert set(CategoryReport.objects.values_list("subject_key", flat=True)) == {subject_key("user", user.pk)}
