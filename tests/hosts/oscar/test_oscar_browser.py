"""oscar's product page in real Chromium, with visrec's rows included by the oscar recipe."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connections

from tests.browser import chromium_page, wait_for
from visrec.models import EventType, InteractionEvent

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def oscar_page():
    """A Chromium page; the database connections opened inside Playwright's context (another
    async context to Django: close_all() at teardown would not see them) are closed in it."""
    with chromium_page() as page:
        try:
            yield page
        finally:
            connections.close_all()


def test_oscar_product_page_shows_both_rows_and_records_a_click(live_server, transactional_db, shop):
    with oscar_page() as page:
        page.set_viewport_size({"width": 1280, "height": 3000})
        page.goto(f"{live_server.url}{shop['orange mug'].get_absolute_url()}")  # a view: the session model's seed
        page.goto(f"{live_server.url}{shop['red mug'].get_absolute_url()}")
        assert page.locator("h1").first.inner_text() == "red mug"  # oscar's own page, visrec's rows below
        similar, foryou = page.locator("section.visrec-similar"), page.locator("section.visrec-foryou")
        assert similar.get_by_role("heading").inner_text() == "Looks like this"
        assert foryou.get_by_role("heading").inner_text() == "Picked for you"
        similar_names = similar.locator(".visrec-name").all_inner_texts()
        foryou_names = foryou.locator(".visrec-name").all_inner_texts()
        assert similar_names and foryou_names
        assert not {"hidden mug", "red mug", "small", "large"} & set(similar_names + foryou_names)
        assert not set(similar_names) & set(foryou_names)
        assert similar.locator(".visrec-price").first.inner_text().startswith("£")
        viewer = InteractionEvent.objects.get(event_type=EventType.VIEW, product=shop["red mug"]).subject_key
        target = similar.locator("a[data-visrec-product]").first
        product_id = int(target.get_attribute("data-visrec-product"))
        with page.expect_navigation():
            target.click()
        assert page.locator("h1").first.inner_text() == similar_names[0]  # oscar's page of the clicked product
        click = wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.CLICK).first())
        assert click is not None
        assert (click.product_id, click.source, click.position, click.subject_key) == (product_id, "similar", 0, viewer)
        assert wait_for(lambda: InteractionEvent.objects.filter(event_type=EventType.IMPRESSION).exists())
