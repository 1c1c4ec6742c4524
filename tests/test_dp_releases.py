"""Differentially private releases: noise of the stated scale, bounded contributions, the budget."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone
from visrec.services.foryou.recommend import trending_list

from visrec.models import InteractionEvent, PrivacyRelease
from visrec.services.privacy import dp_releases
from visrec.services.serving.similar import SimilarFilters

from .factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_discrete_laplace_noise_has_the_stated_scale():
    """Many independent releases of the same counts: mean error 0, std sqrt(2)·scale, never all exact."""
    scale = 4.0
    true = [100] * 4000
    noisy = np.array(dp_releases.laplace_vector(true, scale)) - 100
    assert abs(noisy.mean()) < 0.3
    # Discrete Laplace with scale b: variance 2·e^(-1/b)/(1-e^(-1/b))^2, about 2·b² for b ≫ 1.
    q = np.exp(-1 / scale)
    assert noisy.std() == pytest.approx(np.sqrt(2 * q) / (1 - q), rel=0.08)
    assert (noisy != 0).mean() > 0.8
    assert np.mean(np.abs(noisy) <= dp_releases.noise_margin(scale)) == pytest.approx(0.95, abs=0.02)


def test_each_shopper_counts_for_a_bounded_number_of_products(settings):
    settings.VISREC = {**settings.VISREC, "RELEASE_MAX_PRODUCTS_PER_SHOPPER": 2}
    products = [ProductFactory() for _ in range(5)]
    now = timezone.now()
    InteractionEvent.objects.bulk_create(
        InteractionEvent(subject_key="a" * 64, product=p, event_type="view", occurred_at=now - dt.timedelta(hours=i))
        for i, p in enumerate(products))  # one shopper, five products: only the 2 most recent count
    InteractionEvent.objects.bulk_create(
        InteractionEvent(subject_key="b" * 64, product=products[4], event_type="view", occurred_at=now - dt.timedelta(minutes=m))
        for m in range(5))  # five views of one product count once
    exact = dp_releases.exact_distinct_counts(now - dt.timedelta(days=7), now + dt.timedelta(seconds=1), None, 2)
    assert exact == {products[0].pk: 1, products[1].pk: 1, products[4].pk: 1}


def test_release_is_recorded_and_over_budget_is_refused(settings):
    settings.VISREC = {**settings.VISREC, "PRIVACY_BUDGET_EPSILON": 1.0}
    product = ProductFactory()
    InteractionEvent.objects.create(subject_key="c" * 64, product=product, event_type="view", occurred_at=timezone.now())
    first = dp_releases.release_counts("admin-counts", epsilon=0.6, product_ids=[product.pk])
    assert first.release.noise_scale == pytest.approx(settings.VISREC.get("RELEASE_MAX_PRODUCTS_PER_SHOPPER", 10) / 0.6)
    assert dp_releases.remaining() == pytest.approx(0.4)
    with pytest.raises(dp_releases.BudgetExceeded, match="needs epsilon 0.6 but only 0.4"):
        dp_releases.release_counts("admin-counts", epsilon=0.6, product_ids=[product.pk])
    assert PrivacyRelease.objects.count() == 1


def test_trending_is_the_days_dp_release_reused_without_new_spending(settings):
    settings.VISREC = {**settings.VISREC, "RELEASE_MAX_PRODUCTS_PER_SHOPPER": 1, "TRENDING_EPSILON": 5.0,
                       "PRIVACY_BUDGET_EPSILON": 6.0}
    hot, cold = ProductFactory(stock=3), ProductFactory(stock=3)
    now = timezone.now()
    InteractionEvent.objects.bulk_create(
        InteractionEvent(subject_key=f"{i:064d}", product=hot, event_type="view", occurred_at=now - dt.timedelta(hours=1))
        for i in range(200))
    first = trending_list(2, SimilarFilters())
    assert first[0][0] == hot.pk and abs(first[0][1] - 200) < 10  # scale 0.2: almost exact
    assert trending_list(2, SimilarFilters()) == first
    assert PrivacyRelease.objects.filter(kind="trending").count() == 1
    assert dp_releases.spent() == pytest.approx(5.0)
    assert cold.pk not in {p for p, _ in first} or dict(first)[cold.pk] < 10


def test_ledger_admin_shows_remaining_budget(admin_client):
    dp_releases.release_counts("export", epsilon=0.5, product_ids=[ProductFactory().pk])
    page = admin_client.get("/admin/visrec/privacyrelease/").content.decode()
    assert "Privacy budget: epsilon 9.50 of 10.00 left" in page
    assert "±" in page


def test_trending_filters_reach_past_the_releases_head(settings):
    settings.VISREC = {**settings.VISREC, "RELEASE_MAX_PRODUCTS_PER_SHOPPER": 12, "TRENDING_EPSILON": 5.0}
    products = [ProductFactory(stock=0 if i < 9 else 3) for i in range(12)]  # the 9 most viewed: sold out
    now = timezone.now()
    InteractionEvent.objects.bulk_create(
        InteractionEvent(subject_key=f"{s:064d}", product=p, event_type="view", occurred_at=now - dt.timedelta(hours=1))
        for i, p in enumerate(products) for s in range(300 - 20 * i))
    listed = trending_list(2, SimilarFilters(), exclude=[products[9].pk])
    # DP noise may swap the two (160 and 140 views at epsilon 5); the filters decide which two
    assert sorted(p for p, _ in listed) == sorted([products[10].pk, products[11].pk])
    assert {p for p, _ in trending_list(3, SimilarFilters(in_stock=False))} == {p.pk for p in products[:3]}
