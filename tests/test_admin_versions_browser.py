"""The model version and health pages in real Chromium: a merchant logs in, reads the verdict and
the charts, rolls back in one click and opens the health page.

``VISREC_SCREENSHOTS=1`` also saves the pages to ``docs/admin-*.png``.
"""
from __future__ import annotations

import os
import re

import pytest

from visrec.models import ModelKind
from visrec.services.foryou import training as recommender_training
from visrec.services.serving.versions import active_version

from .browser import chromium_page, wait_for
from .conftest import ROOT
from .test_foryou import shop  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
SCREENSHOTS = os.environ.get("VISREC_SCREENSHOTS") == "1"


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(ROOT / "docs" / f"admin-{name}.png"), full_page=True)


def test_read_the_verdict_roll_back_in_one_click_and_open_the_health_page(live_server, shop,  # noqa: F811
                                                                          django_user_model):
    django_user_model.objects.create_superuser("merchant", "m@example.com", "a-long-password")
    first = recommender_training.train_recommender("vbpr")
    second = recommender_training.train_recommender("bpr")
    assert second.is_active, second.notes
    with chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{live_server.url}/admin/login/?next=/admin/visrec/modelversion/")
        page.fill("#id_username", "merchant")
        page.fill("#id_password", "a-long-password")
        with page.expect_navigation():
            page.click("input[type=submit]")
        assert page.get_by_text("Promoted", exact=True).count() >= 1 or "Promoted" in page.content()
        screenshot(page, "versions-list")

        page.goto(f"{live_server.url}/admin/visrec/modelversion/{second.pk}/change/")
        assert page.locator("#visrec-verdict-title").inner_text() == "Promoted"
        sentence = page.locator(".visrec-verdict-sentence").inner_text()
        assert "vs the served" in sentence and "95% CI" in sentence and "last baskets" in sentence
        chart = page.get_by_role("img", name=re.compile(r"^Recall@20 of each list"))
        assert chart.count() == 1 and chart.locator("rect").count() == 3
        assert page.get_by_role("img", name=re.compile(r"^This version minus the served one")).count() == 1
        raw = page.locator("details.visrec-raw")
        assert raw.get_attribute("open") is None and not raw.locator("pre").is_visible()  # collapsed
        raw.locator("summary").click()
        assert raw.locator("pre").is_visible() and '"guard"' in raw.locator("pre").inner_text()
        raw.locator("summary").click()
        screenshot(page, "version")

        page.goto(f"{live_server.url}/admin/visrec/modelversion/{first.pk}/change/")
        button = page.get_by_role("button", name="Roll back to this version")
        with page.expect_navigation():
            button.click()
        assert wait_for(lambda: active_version(ModelKind.RECOMMENDER) == first)
        message = page.locator(".messagelist .success").inner_text()
        assert message.lower() == f"{first.name} is now served.".lower()
        assert page.get_by_text("Served now.").count() == 1
        assert page.get_by_role("button", name="Roll back to this version").count() == 0

        page.goto(f"{live_server.url}/admin/")
        with page.expect_navigation():
            page.get_by_role("link", name="Scheduled runs").click()
        with page.expect_navigation():
            page.get_by_role("link", name="Health").click()
        assert page.locator("h1").inner_text() == "visrec health"
        served = page.locator("#visrec-served + table")
        assert first.name in served.inner_text() and "Pretrained backbone" in served.inner_text()
        assert page.locator("tr[data-task=train_recommender]").inner_text().startswith("Train")
        assert "never ran" in page.locator("tr[data-task=train_recommender]").inner_text()
        assert page.locator("[data-count=outbox-pending]").inner_text() == "0"
        screenshot(page, "health")
