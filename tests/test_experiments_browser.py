"""A/B tests in real Chromium: shoppers see their arm's "for you" row and their clicks are
attributed to it; the merchant starts the experiment and reads its report in the admin."""
from __future__ import annotations

import numpy as np
import pytest

from visrec.models import EventType, Experiment, InteractionEvent, PrivacyRelease
from visrec.services.experiments import assignment

from .browser import chromium_page, wait_for
from .factories import CategoryFactory, ProductFactory, ProductImageFactory
from .test_experiments import recommender
from .test_similar import DIMS, make_version, plant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop():
    """10 lamps (one look) and 3 newer mugs (another look): the demo's own list, new arrivals, is the mugs."""
    make_version()
    lamps, mugs = CategoryFactory(slug="lamps", name="Lamps"), CategoryFactory(slug="mugs", name="Mugs")
    items = [ProductFactory(category=lamps, slug=f"lamp-{i}", name=f"Lamp {i}", stock=3) for i in range(10)]
    items += [ProductFactory(category=mugs, slug=f"mug-{i}", name=f"Mug {i}", stock=3) for i in range(3)]
    for item in items:
        ProductImageFactory(product=item)
    plant(items, [np.r_[1.0, 0.1 * i, np.zeros(DIMS - 2)] if i < 10 else np.r_[0.0, 0.1 * i, 1.0, np.zeros(DIMS - 3)]
                  for i in range(13)])
    return items


def test_each_shopper_sees_their_arm_and_their_click_counts_for_it(live_server, shop):
    version = recommender("rec-a", shop, 3)
    version.metrics["blend"] = {"model": 0.5, "itemknn": 0.0, "session": 0.5}
    version.save()
    experiment = assignment.start(name="visrec vs new arrivals", version_a=version, b_is_shop_list=True)
    newest = [p.name for p in reversed(shop)]  # new arrivals: the newest first
    seen = {}
    with chromium_page() as page:
        for attempt in range(10):  # new shoppers until both arms were seen
            page.context.clear_cookies()
            page.set_viewport_size({"width": 1280, "height": 2400})
            page.goto(f"{live_server.url}/p/lamp-0/")
            row = page.locator("section.visrec-foryou")
            names = row.locator(".visrec-name").all_inner_texts() if row.count() else []
            view = wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.VIEW).order_by("-pk").first())
            arm = assignment.arm_for(experiment, view.subject_key)
            assert (view.experiment_id, view.arm) == (experiment.pk, arm)
            similar = set(page.locator("section.visrec-similar .visrec-name").all_inner_texts())
            arrivals = [n for n in newest if n not in similar | {"Lamp 0"}][:8]
            if arm == "b":
                assert names == arrivals  # the shop's own list, in its order, less what the page shows
            else:
                assert names and names != arrivals  # visrec's: the session's look-alikes
            if arm not in seen and names:
                with page.expect_navigation():
                    row.locator("a[data-visrec-product]").first.click()
                click = wait_for(lambda subject=view.subject_key: InteractionEvent.objects.filter(
                    event_type=EventType.CLICK, subject_key=subject).first())
                assert click is not None and (click.source, click.arm, click.experiment_id) == ("foryou", arm,
                                                                                                 experiment.pk)
                seen[arm] = names
            if len(seen) == 2:
                break
    assert set(seen) == {"a", "b"}, seen


def test_the_merchant_starts_an_experiment_and_releases_its_report(live_server, shop, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    a = recommender("rec-a", shop, 3)
    b = recommender("rec-b", shop, 4)
    with chromium_page() as page:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "boss")
        page.fill("#id_password", "pw-boss-123")
        with page.expect_navigation():
            page.click("input[type=submit]")
        page.goto(f"{live_server.url}/admin/visrec/experiment/add/")
        page.fill("#id_name", "newer model")
        page.select_option("#id_version_a", str(a.pk))
        page.select_option("#id_version_b", str(b.pk))
        with page.expect_navigation():
            page.click("input[name=_save]")
        assert "was added successfully" in page.content()
        experiment = Experiment.objects.get(name="newer model")
        page.get_by_role("link", name="report").click()
        page.wait_for_url(f"**/experiment/{experiment.pk}/report/")
        assert "No figures released" in page.content()
        with page.expect_navigation():
            page.get_by_role("button", name="Release current figures").click()
        assert page.locator(".visrec-verdicts li").count() == 3
        assert PrivacyRelease.objects.filter(kind=f"experiment-{experiment.pk}").count() == 1
