"""A/B tests of "for you": a deterministic split, each arm serving its list, events attributed
to the arm that showed them, and a DP report that finds the better arm."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ValidationError
from django.utils import timezone

from visrec.models import (
    Experiment,
    InteractionEvent,
    ModelKind,
    ModelVersion,
    RecommenderItemVector,
    ShopperVector,
)
from visrec.services.experiments import assignment, report
from visrec.services.foryou.recommend import recommend_for_request
from visrec.services.privacy.tracking import (
    EventIn,
    record_events,
    subject_for_request,
)

from .factories import CategoryFactory, ProductFactory
from .test_similar import DIMS, make_version, plant

pytestmark = pytest.mark.django_db
GOOD = 5  # the shop's own list: the products the simulated shoppers like


def recommender(name: str, products, direction: int, subjects=()) -> ModelVersion:
    """A published recommender version whose model ranks products by their ``direction`` coordinate."""
    version = ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name=name, dimensions=DIMS,
                                          metrics={"blend": {"model": 1.0, "itemknn": 0.0, "session": 0.0}})
    rng = np.random.default_rng(direction)
    RecommenderItemVector.objects.bulk_create(
        RecommenderItemVector(product=p, model_version=name,
                              vector=np.eye(DIMS)[direction] * (1 + i) + rng.normal(scale=0.01, size=DIMS))
        for i, p in enumerate(products))
    ShopperVector.objects.bulk_create(ShopperVector(subject_key=s, model_version=name, vector=np.eye(DIMS)[direction])
                                      for s in subjects)
    return version


@pytest.fixture
def shop():
    """30 products: 25 alike (one look), 5 of another look that the shop's own list serves."""
    make_version()
    category = CategoryFactory(slug="things")
    products = [ProductFactory(category=category, stock=5) for _ in range(30)]
    plant(products, [np.r_[1.0, 0.05 * i, np.zeros(DIMS - 2)] if i >= GOOD else
                     np.r_[0.0, 0.05 * i, 1.0, np.zeros(DIMS - 3)] for i in range(30)])
    return products


def shop_list(request, k, leave_out):
    """The test shop's own list (``VISREC["SHOP_LIST"]``): its first products."""
    from shop_demo.catalog.models import Product

    return list(Product.objects.order_by("pk").values_list("pk", flat=True)[:GOOD])


def shopper(rf):
    request = rf.get("/")
    request.user, request.session = AnonymousUser(), SessionStore()
    return request


def test_the_split_is_deterministic_follows_the_share_and_is_new_per_experiment(shop):
    a = recommender("rec-a", shop, 3)
    b = recommender("rec-b", shop, 4)
    first = assignment.start(name="first", version_a=a, version_b=b, share_b=0.3)
    subjects = [f"subject-{i}" for i in range(4000)]
    arms = [assignment.arm_for(first, s) for s in subjects]
    assert arms == [assignment.arm_for(first, s) for s in subjects]
    assert 0.27 < arms.count("b") / len(arms) < 0.33
    assignment.end(first)
    second = assignment.start(name="second", version_a=a, version_b=b, share_b=0.3)
    again = [assignment.arm_for(second, s) for s in subjects]
    # A fresh salt: B of the second is independent of B of the first (about 0.3 x 0.3 in both).
    both = sum(x == y == "b" for x, y in zip(arms, again)) / len(subjects)
    assert 0.06 < both < 0.12


def test_each_arm_serves_its_version_and_events_carry_the_arm(shop, rf):
    requests = [shopper(rf) for _ in range(40)]
    subjects = [subject_for_request(r) for r in requests]
    a = recommender("rec-a", shop, 3, subjects)
    b = recommender("rec-b", shop, 4, subjects)
    # rec-a ranks by coordinate 3 with larger i first, rec-b by coordinate 4: the same order
    # here, so make rec-b's reversed.
    for row in RecommenderItemVector.objects.filter(model_version="rec-b"):
        row.vector = np.eye(DIMS)[4] * (100 - row.product_id % 97)
        row.save()
    served = {"a": None, "b": None}
    experiment = assignment.start(name="versions", version_a=a, version_b=b)
    for request, subject in zip(requests, subjects):
        found = recommend_for_request(request, 4)
        arm = assignment.arm_for(experiment, subject)
        assert found.arm == arm and found.source == "model"
        served[arm] = [p for p, _ in found.ranked]
        record_events(subject, [EventIn("view", shop[0].pk)])
        event = InteractionEvent.objects.filter(subject_key=subject).latest("pk")
        assert (event.experiment_id, event.arm) == (experiment.pk, arm)
    assert served["a"] and served["b"] and served["a"] != served["b"]
    by_a = sorted(RecommenderItemVector.objects.filter(model_version="rec-a"), key=lambda r: -r.vector[3])
    assert served["a"] == [r.product_id for r in by_a[:4]]
    assignment.end(experiment)
    request = requests[0]
    assert recommend_for_request(request, 4).arm == ""  # ended: the served version again
    record_events(subjects[0], [EventIn("view", shop[1].pk)])
    assert InteractionEvent.objects.filter(subject_key=subjects[0]).latest("pk").experiment_id is None


def test_an_experiment_that_cannot_run_is_refused_with_reasons(shop, settings):
    settings.VISREC = {**settings.VISREC, "SHOP_LIST": ""}
    a = recommender("rec-a", shop, 3)
    unpublished = ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name="kept-out")
    with pytest.raises(ValidationError) as error:
        assignment.start(name="x", version_a=unpublished, version_b=a)
    assert "never published" in str(error.value.message_dict["version_a"])
    with pytest.raises(ValidationError) as error:
        assignment.start(name="x", version_a=a, b_is_shop_list=True)
    assert "SHOP_LIST" in str(error.value.message_dict["b_is_shop_list"])
    with pytest.raises(ValidationError) as error:
        assignment.start(name="x", version_a=a, version_b=a)
    assert "same version" in str(error.value.message_dict["version_b"])
    settings.VISREC = {**settings.VISREC, "SHOP_LIST": "tests.test_experiments.shop_list"}
    assignment.start(name="x", version_a=a, b_is_shop_list=True)
    with pytest.raises(ValidationError) as error:
        assignment.start(name="y", version_a=a, b_is_shop_list=True)
    assert "is running" in str(error.value.message_dict["name"])


def simulate(rf, shop, n, click_good, click_other, rng):
    """``n`` new shoppers: each views one product, is shown "for you" (impressions), clicks
    shown products with a probability that depends only on the product, and buys half of what
    they clicked. Returns the exact per-arm outcome the report should find."""
    good = {p.pk for p in shop[:GOOD]}
    truth = {"a": [0, 0, 0], "b": [0, 0, 0]}  # exposed, clicked, bought
    now = timezone.now()
    for _ in range(n):
        request = shopper(rf)
        subject = subject_for_request(request)
        record_events(subject, [EventIn("view", shop[int(rng.integers(GOOD, len(shop)))].pk,
                                        occurred_at=now - dt.timedelta(minutes=5))])
        found = recommend_for_request(request, 4)
        shown = [p for p, _ in found.ranked]
        if not shown:
            continue
        record_events(subject, [EventIn("impression", p, source="foryou", position=i, occurred_at=now - dt.timedelta(minutes=4))
                                for i, p in enumerate(shown)])
        clicked = [p for p in shown if rng.random() < (click_good if p in good else click_other)]
        bought = clicked[: (len(clicked) + 1) // 2]
        if clicked:
            record_events(subject, [EventIn("click", p, source="foryou", occurred_at=now - dt.timedelta(minutes=3))
                                    for p in clicked] +
                          [EventIn("purchase", p, occurred_at=now - dt.timedelta(minutes=2)) for p in bought])
        t = truth[found.arm]
        t[0], t[1], t[2] = t[0] + 1, t[1] + bool(clicked), t[2] + bool(bought)
    return truth


@pytest.mark.slow
def test_the_report_finds_the_arm_known_to_be_better(shop, rf, settings):
    settings.VISREC = {**settings.VISREC, "SHOP_LIST": "tests.test_experiments.shop_list",
                       "EXPERIMENT_EPSILON": 1.0}
    a = recommender("rec-a", shop[GOOD:], 3)  # visrec's arm: new shoppers get their session's look-alikes
    a.metrics["blend"] = {"model": 0.5, "itemknn": 0.0, "session": 0.5}
    a.save()
    experiment = assignment.start(name="visrec vs the shop", version_a=a, b_is_shop_list=True)
    truth = simulate(rf, shop, 500, click_good=0.3, click_other=0.03, rng=np.random.default_rng(7))
    exact = report.exact_counts(experiment)
    assert [exact[name][arm] for arm in "ab" for name in ("exposed", "clicked", "bought")] == \
        [*truth["a"], *truth["b"]]
    assert truth["a"][0] > 150 and truth["b"][0] > 150
    found = report.release_report(experiment)
    assert found.release.epsilon == 1.0 and found.release.kind == f"experiment-{experiment.pk}"
    click = next(c for c in found.comparisons if c.metric == "click-through")
    assert click.verdict.startswith("B is better") and click.low > 0
    for arm in found.arms:  # the noisy rate's interval holds the exact one
        exact_rate = exact["clicked"][arm.arm] / exact["exposed"][arm.arm]
        assert arm.rates["click-through"].low <= exact_rate <= arm.rates["click-through"].high
    # Shown again without spending: the same release within the reuse window.
    assert report.release_report(experiment).release.pk == found.release.pk
    assert report.latest_report(experiment).release.pk == found.release.pk


def test_a_report_with_no_difference_says_so_and_a_small_one_is_not_called(shop):
    a = recommender("rec-a", shop, 3)
    b = recommender("rec-b", shop, 4)
    experiment = assignment.start(name="tiny", version_a=a, version_b=b)
    from visrec.models import PrivacyRelease

    release = PrivacyRelease(kind="experiment-x", noise_scale=8.0, payload={"vectors": {
        "exposed": {"a": 20, "b": 22}, "clicked": {"a": 4, "b": 7}, "carted": {}, "bought": {"a": 1}}})
    built = report.build_report(experiment, release)
    verdicts = {c.metric: c.verdict for c in built.comparisons}
    assert verdicts["click-through"].startswith("no clear difference")
    assert built.arms[1].rates["add to cart"].value == 0.0
    empty = report.build_report(experiment, PrivacyRelease(kind="x", noise_scale=8.0, payload={"vectors": {}}))
    assert empty.comparisons[0].verdict == "no shoppers exposed in one arm yet"


def test_the_admin_starts_reports_and_ends_an_experiment(shop, admin_client):
    from visrec.models import PrivacyRelease

    a = recommender("rec-a", shop, 3)
    b = recommender("rec-b", shop, 4)
    refused = admin_client.post("/admin/visrec/experiment/add/", {
        "name": "same", "version_a": a.pk, "version_b": a.pk, "share_b": 0.5})
    assert refused.status_code == 200 and "nothing to compare" in refused.content.decode()
    response = admin_client.post("/admin/visrec/experiment/add/", {
        "name": "bigger pictures", "hypothesis": "rec-b finds more", "version_a": a.pk, "version_b": b.pk,
        "share_b": 0.5})
    assert response.status_code == 302
    experiment = Experiment.objects.get()
    assert assignment.running_experiment() == experiment
    page = admin_client.get(f"/admin/visrec/experiment/{experiment.pk}/report/")
    assert "No figures released" in page.content.decode() and not PrivacyRelease.objects.exists()
    admin_client.post(f"/admin/visrec/experiment/{experiment.pk}/report/")
    release = PrivacyRelease.objects.get(kind=f"experiment-{experiment.pk}")
    page = admin_client.get(f"/admin/visrec/experiment/{experiment.pk}/report/").content.decode()
    # Noisy counts of nobody (DP cannot say "zero"): a verdict per rate, from that release.
    assert page.count("<li>", page.index('class="visrec-verdicts"')) >= 3 and f"release #{release.pk}" in page
    admin_client.post("/admin/visrec/experiment/", {"action": "end_experiments", "_selected_action": [experiment.pk]})
    experiment.refresh_from_db()
    assert experiment.ended_at is not None and assignment.running_experiment() is None
    # Arms cannot change once started.
    change = admin_client.get(f"/admin/visrec/experiment/{experiment.pk}/change/").content.decode()
    assert 'name="version_a"' not in change
