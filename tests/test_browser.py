"""The demo's product page in real Chromium: visrec's widgets render and visrec.js reports what
the shopper saw and clicked."""
from __future__ import annotations

import numpy as np
import pytest

from visrec.models import EventType, InteractionEvent

from .browser import chromium_page, wait_for
from .factories import CategoryFactory, ProductFactory, ProductImageFactory
from .test_similar import DIMS, make_version, plant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lamps():
    make_version()
    category = CategoryFactory(slug="lamps", name="Lamps")
    items = [ProductFactory(category=category, slug=f"lamp-{i}", name=f"Lamp {i}", stock=3) for i in range(6)]
    for item in items:
        ProductImageFactory(product=item)
    plant(items, [np.r_[1.0, 0.1 * i, np.zeros(DIMS - 2)] for i in range(6)])
    return items


def test_widgets_render_and_report_impressions_and_clicks(live_server, lamps):
    with chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 2400})  # both rows in view: impressions
        page.goto(f"{live_server.url}/p/lamp-0/")
        similar = page.locator("section.visrec-similar")
        assert similar.get_by_role("heading").inner_text() == "Looks like this"
        names = similar.locator(".visrec-name").all_inner_texts()
        assert names[:2] == ["Lamp 1", "Lamp 2"] and "Lamp 0" not in names
        assert similar.locator(".visrec-price").first.inner_text() == "£19.99"  # the shop's PRICE_FORMAT
        foryou = page.locator("section.visrec-foryou")
        foryou_names = foryou.locator(".visrec-name").all_inner_texts() if foryou.count() else []
        assert not set(foryou_names) & (set(names) | {"Lamp 0"})  # the page's product and its look-alikes
        shown = wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.IMPRESSION).count()
                         >= len(names))
        assert shown, "the script reports the cards it showed"
        impressions = InteractionEvent.objects.filter(event_type=EventType.IMPRESSION, source="similar")
        assert set(impressions.values_list("product_id", flat=True)) == {p.pk for p in lamps if p.name in names}
        subject = impressions.first().subject_key
        with page.expect_navigation():
            similar.locator("a[data-visrec-product]").nth(1).click()
        assert page.url.endswith("/p/lamp-2/")
        click = wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.CLICK).first())
        assert click is not None, "the click is delivered although the page was left"
        assert (click.product_id, click.source, click.position, click.subject_key) == (lamps[2].pk, "similar", 1, subject)
        # the demo records views server side, under the same shopper
        assert InteractionEvent.objects.filter(event_type=EventType.VIEW, product=lamps[2], subject_key=subject).exists()


def test_keyboard_users_reach_every_card(live_server, lamps):
    with chromium_page() as page:
        page.goto(f"{live_server.url}/p/lamp-0/")
        links = page.locator("section.visrec-similar a[data-visrec-product]")
        assert links.count() >= 3
        assert all(page.locator("section.visrec-similar img").evaluate_all("els => els.map(e => e.alt)"))
        links.first.focus()
        assert page.evaluate("document.activeElement.dataset.visrecProduct") == str(lamps[1].pk)


def test_web_components_render_from_the_api_track_clicks_and_vanish_on_errors(live_server, lamps):
    with chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 2400})
        page.goto(f"{live_server.url}/p/lamp-0/headless/")
        similar = page.locator("visrec-similar section.visrec-similar")
        similar.wait_for()
        assert similar.get_by_role("heading").inner_text() == "Looks like this"
        names = similar.locator(".visrec-name").all_inner_texts()
        assert names[:2] == ["Lamp 1", "Lamp 2"] and "Lamp 0" not in names
        assert similar.locator(".visrec-price").first.inner_text() == "£19.99"
        assert all(similar.locator("img").evaluate_all("els => els.map(e => e.alt && e.loading === 'lazy')"))
        # keyboard: Tab reaches the first card's link
        links = similar.locator("a[data-visrec-product]")
        links.first.focus()
        assert page.evaluate("document.activeElement.dataset.visrecWidget") == "similar"
        assert wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.IMPRESSION).exists())
        with page.expect_navigation():
            links.nth(0).click()
        click = wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.CLICK).first())
        assert click is not None and (click.product_id, click.source) == (lamps[1].pk, "similar")
        # errors render nothing: an unknown product (the API's 404) and an unreachable API
        page.goto(f"{live_server.url}/p/lamp-0/headless/")
        page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
            '<visrec-similar id="gone" product="999999"></visrec-similar>' +
            '<visrec-similar id="down" api="http://127.0.0.1:1/api/visrec/" product="1"></visrec-similar>')""")
        for element in ("#gone", "#down"):
            page.wait_for_function(f"document.querySelector('{element}').hidden === true")
            assert page.locator(element).inner_html() == ""
