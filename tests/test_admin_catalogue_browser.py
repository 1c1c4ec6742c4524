"""The catalogue intelligence admin pages in real Chromium: accept a suggestion, click and Tab the map."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth.models import User

from shop_demo.catalog.models import Product

from .browser import chromium_page
from .test_catalogue_intelligence import shop  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page, live_server) -> None:
    User.objects.create_superuser("boss", "boss@example.invalid", "pw-boss-1")
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-1")
    with page.expect_navigation():
        page.click("input[type=submit]")


def test_tick_a_suggestion_accept_it_and_see_it_written(live_server, shop):  # noqa: F811
    with chromium_page() as page:
        log_in(page, live_server)
        page.goto(f"{live_server.url}/admin/visrec/catalogueintelligence/suggestions/")
        row = page.locator(f"#visrec-suggestions tr[data-product='{shop['stray'].pk}']")
        assert "looks like Bags" in row.inner_text()
        row.get_by_role("checkbox").check()
        with page.expect_navigation():
            page.get_by_role("button", name="Accept selected").click()
        assert "1 product's category changed." in page.locator("ul.messagelist").inner_text()
        assert Product.objects.get(pk=shop["stray"].pk).category == shop.categories["bags"]
        assert page.locator(f"#visrec-suggestions tr[data-product='{shop['stray'].pk}']").count() == 0


def test_map_points_link_to_the_product_and_are_reached_by_keyboard(live_server, shop):  # noqa: F811
    with chromium_page() as page:
        log_in(page, live_server)
        page.goto(f"{live_server.url}/admin/visrec/catalogueintelligence/map/")
        points = page.locator("svg.visrec-map a")
        assert points.count() == len(shop.products)
        loose = page.locator(f"svg.visrec-map a[data-product='{shop['loose'].pk}']")
        assert loose.locator("title").text_content() == "Loose — uncategorised"
        # keyboard: Tab from the last control before the map lands on its first point
        page.locator("svg.visrec-map").evaluate("svg => svg.previousElementSibling.setAttribute('tabindex', '-1')")
        page.locator("ul.visrec-legend").focus()
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getAttribute('data-product')")
        assert focused == points.first.get_attribute("data-product")
        box = loose.locator("circle").bounding_box()
        assert box and np.isfinite(box["x"])
        with page.expect_navigation():
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert page.url.endswith(f"/admin/catalog/product/{shop['loose'].pk}/change/")
        assert page.locator("#id_name").input_value() == "Loose"
