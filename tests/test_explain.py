"""Why a "for you" product is there, from the part of the blend that placed it."""
from __future__ import annotations

import numpy as np
import pytest
from django.template import Context, Template

from visrec.services.foryou.explain import explain
from visrec.services.foryou.recommend import ForYouList, ShopperHistory

from .factories import CategoryFactory, ProductFactory, ProductImageFactory
from .test_similar import DIMS, make_version, plant

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_looks():
    """Lamps along one direction in image space, mugs along another."""
    make_version()
    lamps, mugs = CategoryFactory(name="Lamps", slug="lamps"), CategoryFactory(name="Mugs", slug="mugs")
    items = [ProductFactory(category=lamps if i < 4 else mugs, name=f"{'Lamp' if i < 4 else 'Mug'} {i}")
             for i in range(8)]
    for item in items:
        ProductImageFactory(product=item)
    plant(items, [np.r_[1.0, 0.1 * i, np.zeros(DIMS - 2)] if i < 4 else np.r_[0.0, 0.1 * i, 1.0, np.zeros(DIMS - 3)]
                  for i in range(8)])
    return items


def test_session_products_say_which_of_the_shoppers_products_they_look_like(client, two_looks):
    lamp, mug = two_looks[0], two_looks[4]
    for product in (lamp, mug):
        client.post("/api/visrec/events/", {"events": [{"type": "view", "product": product.pk}]},
                    content_type="application/json")
    body = client.get("/api/visrec/for-you/", {"limit": 6, "explain": "true", "in_stock": "false"}).json()
    assert body["source"] == "session"
    by_id = {row["id"]: row["reason"] for row in body["results"]}
    for pid, reason in by_id.items():
        assert reason["kind"] == "session" and reason["text"] == "Because you looked at"
        lamps = {p.pk for p in two_looks[:4]}
        assert reason["because"]["id"] == (lamp.pk if pid in lamps else mug.pk)  # the look-alike of its picture
        assert reason["because"]["image_url"]
    assert "reason" not in client.get("/api/visrec/for-you/", {"limit": 6}).json()["results"][0]
    assert client.get("/api/visrec/for-you/", {"explain": "maybe"}).status_code == 400


def test_the_part_that_placed_a_product_names_the_reason(two_looks):
    a, b, c = (p.pk for p in two_looks[:3])
    mug = two_looks[5].pk
    found = ForYouList(ranked=[(a, 0), (b, 0), (mug, 0), (c, 0)], source="blended",
                       parts={"model": [(a, 0.9), (b, 0.8)], "itemknn": [(b, 0.5)], "popularity": [(mug, 9.0)],
                              "session": []},
                       weights={"model": 0.5, "itemknn": 0.4, "session": 0.0, "popularity": 0.1},
                       history=ShopperHistory(), new={c})
    reasons = explain(found)
    assert reasons[a].kind == "model" and reasons[a].text == "Matches your taste"
    assert reasons[b].kind == "model"  # 0.5 / 62 beats item-kNN's 0.4 / 61
    assert reasons[mug].kind == "popularity" and reasons[mug].text == "Popular in Mugs now"
    assert reasons[c].kind == "new" and reasons[c].because is None  # no history to look like
    trending = explain(ForYouList(ranked=[(mug, 0)], source="trending"))
    assert trending[mug].kind == "trending" and trending[mug].text == "Popular in Mugs now"


def test_the_tag_shows_the_reason_with_the_picture_that_caused_it(rf, two_looks):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    import visrec

    request = rf.get("/")
    request.user, request.session = AnonymousUser(), SessionStore()
    visrec.track(request, "view", two_looks[0])
    html = Template("{% load visrec_tags %}{% recommended_for_you limit=3 explain=True in_stock=False %}").render(
        Context({"request": request}))
    assert html.count('class="visrec-reason">Because you looked at <img src="') == 3 and "Lamp 0" in html
