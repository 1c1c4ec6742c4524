"""Catalogue intelligence on planted vectors in pgvector: category suggestions, accepting them,
near-duplicates, the map, failures, the evaluation with labels withheld, and the admin pages."""
from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from shop_demo.catalog.models import Product
from visrec.admin.catalogue import palette
from visrec.models import ImageEmbedding, ProductEmbedding
from visrec.services.catalogue import intelligence
from visrec.services.catalogue.intelligence import (
    CategoryNotFound,
    NothingEmbedded,
    accept_suggestions,
    baseline_rows,
    catalogue_map,
    catalogue_neighbours,
    category_vote,
    embedding_failures,
    evaluate_suggestions,
    near_duplicates,
    precision_rows,
    suggest_categories,
)
from visrec.services.serving.photo_search import predict_category

from .factories import CategoryFactory, ProductFactory, ProductImageFactory
from .test_similar import DIMS, make_version, plant

pytestmark = pytest.mark.django_db

SUGGESTIONS = "/admin/visrec/catalogueintelligence/suggestions/"
DUPLICATES = "/admin/visrec/catalogueintelligence/duplicates/"
MAP = "/admin/visrec/catalogueintelligence/map/"
OVERVIEW = "/admin/visrec/catalogueintelligence/"


class Shop:
    """What the ``shop`` fixture made, by name."""

    def __init__(self):
        self.categories = {}
        self.products = {}

    def __getitem__(self, name):
        return self.products[name]


def cluster(rng, axis: int, n: int) -> list[np.ndarray]:
    """``n`` vectors around a base axis; two of them have cosine about 0.5, far below 0.97."""
    return [np.eye(DIMS)[axis] + 0.25 * rng.normal(size=DIMS) for _ in range(n)]


@pytest.fixture
def shop():
    """Shoes, bags and hats, ten products each, each category a cluster of vectors; plus

    * "stray": filed under shoes, its vector among the bags;
    * "loose": no category, its vector among the hats;
    * "twin a" and "twin b": hats with the very same vector.
    """
    make_version()
    rng = np.random.default_rng(7)
    found = Shop()
    vectors = []
    for axis, name in enumerate(["Shoes", "Bags", "Hats"]):
        category = CategoryFactory(slug=name.lower(), name=name)
        found.categories[name.lower()] = category
        for i, vector in enumerate(cluster(rng, axis, 10)):
            found.products[f"{name.lower()} {i}"] = ProductFactory(category=category, name=f"{name} {i}")
            vectors.append(vector)
    found.products["stray"] = ProductFactory(category=found.categories["shoes"], name="Stray")
    vectors.append(cluster(rng, 1, 1)[0])
    found.products["loose"] = ProductFactory(category=None, name="Loose")
    vectors.append(cluster(rng, 2, 1)[0])
    twin = cluster(rng, 2, 1)[0]
    for name in ("twin a", "twin b"):
        found.products[name] = ProductFactory(category=found.categories["hats"], name=name.title())
        vectors.append(twin)
    plant(found.products.values(), vectors)
    return found


def by_product(suggestions):
    return {s.product_id: s for s in suggestions}


# --- the vote ----------------------------------------------------------------------------------


def test_vote_is_weighted_by_similarity_and_leaves_out_the_unlabelled():
    vote = category_vote([(1, 0.9), (2, 0.5), (3, 0.45), (4, 0.8), (5, -0.3)], {1: "a", 2: "b", 3: "b", 5: "b"})
    assert vote.category == "b" and vote.voters == 3  # 0.95 against 0.9; 4 has no label, 5 is unlike
    assert vote.confidence == pytest.approx(0.95 / 1.85)
    assert vote.share_of("a") == pytest.approx(0.9 / 1.85) and vote.share_of("c") == 0
    assert category_vote([(1, 0.9)], {}).category is None
    assert category_vote([(1, 0.0)], {1: "a"}).confidence is None  # no weight: no vote (no division by 0)
    tie = category_vote([(1, 0.5), (2, 0.5)], {1: "a", 2: "b"})
    assert tie.category == "a"  # the nearer neighbour's category


def test_photo_search_vote_is_the_same_vote(shop):
    ranked = [(shop["bags 0"].pk, 0.9), (shop["bags 1"].pk, 0.8), (shop["shoes 0"].pk, 0.3)]
    category, confidence = predict_category(ranked)
    assert category == shop.categories["bags"].pk and confidence == round(1.7 / 2.0, 4)


# --- suggestions -------------------------------------------------------------------------------


def test_a_product_among_another_categorys_lookalikes_is_suggested_that_category(shop):
    found = by_product(suggest_categories())
    stray = found[shop["stray"].pk]
    assert stray.kind == intelligence.MISCATEGORISED
    assert stray.current == str(shop.categories["shoes"].pk) and stray.suggested == str(shop.categories["bags"].pk)
    assert stray.confidence >= 0.8 and stray.current_support <= 0.1
    assert stray.reason == "looks like Bags"
    # the well-filed products are left alone (no false alarms on clean clusters)
    assert set(found) == {shop["stray"].pk, shop["loose"].pk}


def test_an_uncategorised_product_gets_a_suggestion(shop):
    loose = by_product(suggest_categories())[shop["loose"].pk]
    assert (loose.kind, loose.current, loose.reason) == (intelligence.UNCATEGORISED, None, "uncategorised")
    assert loose.suggested == str(shop.categories["hats"].pk) and loose.confidence > 0.9
    only = suggest_categories(kinds=[intelligence.UNCATEGORISED])
    assert [s.product_id for s in only] == [shop["loose"].pk]
    assert suggest_categories(min_confidence=1.01) == []


def test_a_product_never_votes_for_itself(shop):
    neighbourhood = catalogue_neighbours()
    for row in range(neighbourhood.queried):
        assert neighbourhood.ids[row] not in [pid for pid, _ in neighbourhood.ranked(row)]
    assert neighbourhood.queried == neighbourhood.total == len(shop.products)


def test_neighbour_lists_are_cached_by_version_and_recomputed_on_demand(shop, django_assert_num_queries):
    first = catalogue_neighbours()
    with django_assert_num_queries(1):  # the served version; the lists come from the cache
        again = catalogue_neighbours()
    assert again.computed_at == first.computed_at
    assert catalogue_neighbours(refresh=True).computed_at > first.computed_at
    assert intelligence.cached_neighbours() is not None


def test_the_mis_categorised_rule_follows_its_settings(shop, settings):
    settings.VISREC = {**settings.VISREC, "CATALOGUE_MIN_VOTERS": 11}  # more than the 10 neighbours
    assert shop["stray"].pk not in by_product(suggest_categories())
    settings.VISREC = {**settings.VISREC, "CATALOGUE_MIN_VOTERS": 3, "CATALOGUE_MISCATEGORISED_CONFIDENCE": 1.01}
    assert shop["stray"].pk not in by_product(suggest_categories())


def test_nothing_embedded_yet_is_said_not_crashed():
    with pytest.raises(NothingEmbedded, match="visrec_index"):
        suggest_categories()
    make_version()
    with pytest.raises(NothingEmbedded, match="visrec_index"):
        catalogue_map()
    with pytest.raises(CommandError, match="visrec_index"):
        call_command("visrec_suggest_categories", "--evaluate", stdout=StringIO())


# --- accepting ---------------------------------------------------------------------------------


def test_accept_writes_the_foreign_key_and_skips_products_changed_since(shop):
    found = by_product(suggest_categories())
    stray, loose = found[shop["stray"].pk], found[shop["loose"].pk]
    shop["loose"].category = shop.categories["shoes"]  # a merchant filed it meanwhile
    shop["loose"].save()
    chosen = [(s.product_id, s.current, s.suggested) for s in (stray, loose)]
    assert accept_suggestions(chosen) == 1
    assert Product.objects.get(pk=shop["stray"].pk).category == shop.categories["bags"]
    assert Product.objects.get(pk=shop["loose"].pk).category == shop.categories["shoes"]  # untouched
    assert accept_suggestions(chosen) == 0  # done already: nothing more to change
    assert shop["stray"].pk not in by_product(suggest_categories())


def test_accept_refuses_an_unknown_category_and_writes_nothing(shop):
    loose = by_product(suggest_categories())[shop["loose"].pk]
    with pytest.raises(CategoryNotFound):
        accept_suggestions([(loose.product_id, None, loose.suggested), (shop["stray"].pk, None, "999999")])
    assert Product.objects.get(pk=shop["loose"].pk).category is None


def test_accept_writes_a_plain_category_field(shop, settings):
    """A CharField-like category (here the demo's description): the value itself is written."""
    for name, product in shop.products.items():
        product.description = "" if name == "loose" else product.category.slug
        product.save()
    settings.VISREC = {**settings.VISREC, "CATEGORY_FIELD": "description"}
    found = by_product(suggest_categories())
    loose, stray = found[shop["loose"].pk], found[shop["stray"].pk]
    assert (loose.suggested, stray.current, stray.suggested) == ("hats", "shoes", "bags")
    assert stray.reason == "looks like bags"
    assert accept_suggestions([(s.product_id, s.current, s.suggested) for s in (loose, stray)]) == 2
    assert Product.objects.get(pk=shop["loose"].pk).description == "hats"
    assert Product.objects.get(pk=shop["stray"].pk).description == "bags"
    with pytest.raises(CategoryNotFound):
        accept_suggestions([(shop["hats 0"].pk, "hats", "scarves")])


def test_accept_without_a_category_field_is_a_clear_error(shop, settings):
    settings.VISREC = {**settings.VISREC, "CATEGORY_FIELD": ""}
    assert suggest_categories() == []
    with pytest.raises(ValueError, match="CATEGORY_FIELD"):
        accept_suggestions([(shop["loose"].pk, None, "1")])


# --- near-duplicates, map, failures ----------------------------------------------------------


def test_near_duplicates_are_the_identical_pair_once(shop):
    pairs = near_duplicates()
    a, b = sorted([shop["twin a"].pk, shop["twin b"].pk])
    assert [(p.first, p.second) for p in pairs] == [(a, b)]
    assert pairs[0].similarity == pytest.approx(1.0, abs=1e-5)
    loose = near_duplicates(0.0)
    assert len(loose) > 1 and len({(p.first, p.second) for p in loose}) == len(loose)  # each pair once
    assert all(p.first < p.second for p in loose)
    assert [p.similarity for p in loose] == sorted((p.similarity for p in loose), reverse=True)


def test_the_map_places_every_product_with_its_category(shop):
    found = catalogue_map()
    assert {p.product_id for p in found.points} == {p.pk for p in shop.products.values()}
    assert all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in found.points)
    categories = {p.product_id: p.category for p in found.points}
    assert categories[shop["loose"].pk] is None and categories[shop["bags 0"].pk] == str(shop.categories["bags"].pk)
    twins = [p for p in found.points if p.product_id in (shop["twin a"].pk, shop["twin b"].pk)]
    assert (twins[0].x, twins[0].y) == (twins[1].x, twins[1].y)
    assert len(catalogue_map(max_points=5).points) == 5
    # an accepted suggestion recolours its point at once (coordinates cached, categories not)
    loose = by_product(suggest_categories())[shop["loose"].pk]
    accept_suggestions([(loose.product_id, None, loose.suggested)])
    assert {p.product_id: p.category for p in catalogue_map().points}[shop["loose"].pk] == loose.suggested


def test_embedding_failures_are_counted_by_reason(shop):
    images = [ProductImageFactory(product=shop[f"hats {i}"]) for i in range(4)]
    errors = ["truncated or corrupt image: broken data stream", "truncated or corrupt image: image file is truncated",
              "file is 9000001 bytes, over the limit of 8000000", ""]
    for image, error in zip(images, errors):
        ImageEmbedding.objects.update_or_create(image=image, model_version="planted@1",
                                                defaults={"product": image.product, "status": "failed", "error": error})
    summary = embedding_failures()
    assert summary.version == "planted@1" and summary.failed == 4
    assert [(reason, n) for reason, n, _ in summary.reasons] == [
        ("truncated or corrupt image", 2), ("file is N bytes, over the limit of N", 1), ("no reason recorded", 1)]
    assert summary.reasons[0][2] == "truncated or corrupt image: broken data stream"  # an example of each


# --- evaluation --------------------------------------------------------------------------------


def test_precision_of_accepted_suggestions_on_a_constructed_case():
    truth = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c"}
    predictions = {1: ("a", 0.95), 2: ("b", 0.6), 3: ("b", 0.75), 4: ("b", 0.4), 5: None}
    rows = precision_rows(predictions, truth, [0.0, 0.5, 0.7, 0.9])
    assert [(r["suggested"], r["coverage"], r["precision"]) for r in rows] == [
        (4, 0.8, 0.75), (3, 0.6, 2 / 3), (2, 0.4, 1.0), (1, 0.2, 1.0)]
    assert precision_rows({}, truth, [0.5])[0]["precision"] is None
    majority, chance = baseline_rows({10: "a", 11: "a", 12: "a", 13: "b"}, truth)
    assert majority["precision"] == pytest.approx(2 / 5) and majority["coverage"] == 1.0
    assert chance["precision"] == pytest.approx((0.75 * 2 + 0.25 * 2 + 0) / 5)


def test_evaluation_withholds_labels_and_nobody_votes_with_them(shop):
    report = evaluate_suggestions(fraction=0.5, seed=3, thresholds=[0.0, 0.9])
    assert report.labelled == len(shop.products) - 1 and report.withheld == round(0.5 * report.labelled)
    knn = [r for r in report.rows if r["method"] == "image kNN vote"]
    assert knn[0]["precision"] >= 0.8 and knn[0]["coverage"] >= 0.9  # clean clusters (and the stray's wrong label)
    baselines = {r["method"]: r for r in report.rows if r["method"].startswith("baseline")}
    assert set(baselines) == {"baseline: majority category", "baseline: random in proportion (expected)"}
    assert report.miscategorised[0]["planted wrong"] >= 1
    again = evaluate_suggestions(fraction=0.5, seed=3, thresholds=[0.0, 0.9])
    assert again.rows == report.rows  # seeded
    with pytest.raises(ValueError):
        evaluate_suggestions(fraction=1.5)


def test_withheld_labels_do_not_vote(shop, monkeypatch):
    """Withhold every label but one category's: the withheld products can only be suggested it."""
    seen = []
    real = intelligence.vote_for

    def spy(neighbourhood, categories):
        seen.append(dict(categories))
        return real(neighbourhood, categories)

    monkeypatch.setattr(intelligence, "vote_for", spy)
    report = evaluate_suggestions(fraction=0.3, seed=1, plant=0)
    withheld_votes = seen[0]
    assert len(withheld_votes) == report.labelled - report.withheld


def test_command_prints_the_evaluation_table_and_suggestions(shop, tmp_path):
    out = StringIO()
    call_command("visrec_suggest_categories", "--evaluate", "--fraction", "0.3", "--markdown",
                 str(tmp_path / "t.md"), stdout=out, verbosity=0)
    text = out.getvalue()
    assert "labels withheld (seed 0)" in text and "image kNN vote" in text and "baseline: majority category" in text
    assert "| method |" in (tmp_path / "t.md").read_text()
    out = StringIO()
    call_command("visrec_suggest_categories", "--accept", "--min-confidence", "0.5", stdout=out, verbosity=0)
    assert "accepted: 2 products changed" in out.getvalue()
    assert Product.objects.get(pk=shop["stray"].pk).category == shop.categories["bags"]
    with pytest.raises(CommandError, match="thresholds"):
        call_command("visrec_suggest_categories", "--evaluate", "--thresholds", "x", stdout=StringIO(), verbosity=0)


# --- admin pages -------------------------------------------------------------------------------


def test_pages_for_staff(admin_client, shop):
    for url in (OVERVIEW, SUGGESTIONS, DUPLICATES, MAP):
        assert admin_client.get(url).status_code == 200, url
    html = admin_client.get(SUGGESTIONS).content.decode()
    assert "Stray" in html and "looks like Bags" in html and 'name="selected"' in html
    assert admin_client.get(SUGGESTIONS, {"kind": "uncategorised"}).content.decode().count('name="selected"') == 1
    pairs = admin_client.get(DUPLICATES).content.decode()
    assert "Twin A" in pairs and "Twin B" in pairs and f"/admin/catalog/product/{shop['twin a'].pk}/change/" in pairs
    drawn = admin_client.get(MAP).content.decode()
    assert drawn.count("<circle") == len(shop.products)
    assert f'<a href="/admin/catalog/product/{shop["loose"].pk}/change/"' in drawn and "<title>Loose — uncategorised</title>" in drawn
    overview = admin_client.get(OVERVIEW).content.decode()
    assert "1 for uncategorised products, 1 for likely mis-categorised ones" in overview


def test_bulk_accept_by_post(admin_client, shop):
    html = admin_client.get(SUGGESTIONS).content.decode()
    value = next(v for v in _checkbox_values(html) if v.startswith(f"{shop['stray'].pk}|"))
    response = admin_client.post(SUGGESTIONS, {"selected": [value], "accept": "1"}, follow=True)
    assert "1 product&#x27;s category changed." in response.content.decode()
    assert Product.objects.get(pk=shop["stray"].pk).category == shop.categories["bags"]
    response = admin_client.post(SUGGESTIONS, {"selected": [value], "accept": "1"}, follow=True)
    assert "0 products&#x27; categories changed. 1 skipped" in response.content.decode()


def test_recompute_button(admin_client, shop):
    before = catalogue_neighbours().computed_at
    response = admin_client.post(SUGGESTIONS, {"recompute": "1"}, follow=True)
    assert "Neighbour lists recomputed." in response.content.decode()
    assert intelligence.cached_neighbours().computed_at > before


def test_pages_say_nothing_is_embedded_yet(admin_client):
    for url in (OVERVIEW, SUGGESTIONS, DUPLICATES, MAP):
        response = admin_client.get(url)
        assert response.status_code == 200 and "visrec_index" in response.content.decode(), url


def test_non_staff_are_sent_to_log_in_and_staff_need_permissions(client, shop):
    user = User.objects.create_user("clerk", password="pw", is_staff=False)
    client.force_login(user)
    assert client.get(SUGGESTIONS).status_code == 302
    user.is_staff = True
    user.save()
    for url in (OVERVIEW, SUGGESTIONS, DUPLICATES, MAP):
        assert client.get(url).status_code == 403, url
    user.user_permissions.add(Permission.objects.get(codename="view_catalogueintelligence"))
    user = User.objects.get(pk=user.pk)
    client.force_login(user)
    html = client.get(SUGGESTIONS).content.decode()
    assert "Stray" in html and 'name="selected"' not in html  # may look, may not change products
    value = f"{shop['stray'].pk}|{shop.categories['shoes'].pk}|{shop.categories['bags'].pk}"
    assert client.post(SUGGESTIONS, {"selected": [value], "accept": "1"}).status_code == 403
    assert Product.objects.get(pk=shop["stray"].pk).category == shop.categories["shoes"]
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    client.force_login(User.objects.get(pk=user.pk))
    assert client.post(SUGGESTIONS, {"selected": [value], "accept": "1"}).status_code == 302
    assert Product.objects.get(pk=shop["stray"].pk).category == shop.categories["bags"]


def test_no_change_page_for_product_embeddings(admin_client, shop):
    row = ProductEmbedding.objects.first()
    assert admin_client.get(f"{OVERVIEW}{row.pk}/change/").status_code == 404
    assert admin_client.get(f"{OVERVIEW}add/").status_code == 404


def test_palette_colours_are_distinct():
    colours = palette(24)
    assert len(set(colours)) == 24 and all(len(c) == 7 and c.startswith("#") for c in colours)


def _checkbox_values(html: str) -> list[str]:
    import re

    return re.findall(r'name="selected" value="([^"]+)"', html)
