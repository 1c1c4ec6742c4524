"""The demo catalogue generator: deterministic data and pictures, and the ``visrec_seed_demo`` command."""
from __future__ import annotations

import io
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from shop_demo.catalog.demo_data import catalogue, drawing, shoppers
from shop_demo.catalog.demo_data.drawing import CATEGORY_STYLES, Look
from shop_demo.catalog.models import Category, Product, ProductImage
from visrec.models import InteractionEvent
from visrec.pseudonyms import subject_key


def _pictures(specs: list[catalogue.ProductSpec]) -> list[bytes]:
    return [drawing.render_jpeg(spec.look, spec.seed, view) for spec in specs for view in range(spec.image_count)]


def test_same_seed_gives_the_same_catalogue_pictures_and_events():
    first, second = catalogue.generate_catalogue(24, 7), catalogue.generate_catalogue(24, 7)
    assert first == second
    assert _pictures(first) == _pictures(second)
    people = shoppers.generate_shoppers(5, 7)
    assert people == shoppers.generate_shoppers(5, 7)
    events = shoppers.simulate_events(first, people, 7, weeks=2)
    assert events and events == shoppers.simulate_events(second, shoppers.generate_shoppers(5, 7), 7, weeks=2)


def test_a_product_does_not_depend_on_the_catalogue_size():
    small, large = catalogue.generate_catalogue(5, 3), catalogue.generate_catalogue(40, 3)
    assert small == large[:5]


def test_another_seed_gives_another_catalogue():
    one, other = catalogue.generate_catalogue(24, 1), catalogue.generate_catalogue(24, 2)
    assert [s.name for s in one] != [s.name for s in other]
    look = Look("mugs", "classic", "red", "striped")
    assert drawing.render_jpeg(look, (1, 0)) != drawing.render_jpeg(look, (2, 0))


def test_names_and_descriptions_describe_the_picture():
    for spec in catalogue.generate_catalogue(60, 11):
        assert spec.name.startswith(spec.colour.title())
        assert spec.colour in spec.description
        if spec.pattern != "solid":
            assert catalogue.PATTERN_NAMES[spec.pattern] in spec.name
        assert catalogue.STYLE_NAMES[spec.category][spec.style] in spec.name
        low, high = catalogue.PRICE_BANDS[spec.category]
        assert low <= spec.price <= high + 1


def test_pictures_are_256_square_jpegs_on_a_light_background():
    data = drawing.render_jpeg(Look("sneakers", "high-top", "navy", "dotted"), (0, 1))
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (256, 256) and image.mode == "RGB"
    corners = np.asarray(image)[[2, 2, -3, -3], [2, -3, 2, -3]]
    assert corners.min() > 200


def test_each_category_has_its_own_shape():
    masks = {
        category: drawing.product_mask(Look(category, styles[0], "red", "solid"), (0, 0), size=128)
        for category, styles in CATEGORY_STYLES.items()
    }
    assert len(masks) >= 10
    for (a, mask_a), (b, mask_b) in combinations(masks.items(), 2):
        iou = (mask_a & mask_b).sum() / (mask_a | mask_b).sum()
        assert iou < 0.8, f"{a} and {b} have nearly the same silhouette (IoU {iou:.2f})"


def test_styles_change_the_shape_and_colours_change_the_pixels():
    crew = drawing.product_mask(Look("t-shirts", "crew", "red", "solid"), (0, 0), size=128)
    long_sleeve = drawing.product_mask(Look("t-shirts", "long-sleeve", "red", "solid"), (0, 0), size=128)
    assert (crew != long_sleeve).sum() > 200
    red = np.asarray(drawing.render_product_image(Look("mugs", "classic", "red", "solid"), (0, 0)), float)
    blue = np.asarray(drawing.render_product_image(Look("mugs", "classic", "blue", "solid"), (0, 0)), float)
    centre = (slice(100, 156), slice(90, 130))
    assert red[centre][..., 0].mean() > red[centre][..., 2].mean() + 60
    assert blue[centre][..., 2].mean() > blue[centre][..., 0].mean() + 60


def test_purchases_follow_taste_and_new_products_have_few_events():
    specs = catalogue.generate_catalogue(600, 5)
    people = shoppers.generate_shoppers(120, 5)
    events = shoppers.simulate_events(specs, people, 5)
    by_type = {kind: [e for e in events if e.event_type == kind] for kind in ("view", "cart", "purchase")}
    assert all(by_type.values())

    def liked(event: shoppers.SimulatedEvent) -> float:
        taste, spec = people[event.shopper_index].taste, specs[event.product_index]
        return taste.category[spec.category] * taste.colour[spec.colour]

    assert np.mean([liked(e) for e in by_type["purchase"]]) > 1.5 * np.mean([liked(e) for e in by_type["view"]])
    for event in events:
        added = shoppers.DEFAULT_END.timestamp() - specs[event.product_index].added_days_ago * 86400
        assert event.occurred_at.timestamp() >= added
        assert event.occurred_at < shoppers.DEFAULT_END
    views = np.bincount([e.product_index for e in by_type["view"]], minlength=len(specs))
    new = np.array([s.added_days_ago < 7 for s in specs])
    assert views[new].mean() < 0.5 * views[~new].mean()
    assert np.percentile(views[~new], 95) > 3 * np.median(views[~new])


@pytest.mark.django_db
def test_command_creates_the_demo_shop(tmp_path, settings):
    truth_path = tmp_path / "ground_truth.json"
    call_command("visrec_seed_demo", products=30, shoppers=10, seed=3, processes=1, ground_truth=truth_path,
                 stdout=io.StringIO(), verbosity=0)
    assert Product.objects.count() == 30
    assert Category.objects.count() >= 10
    assert Product.objects.values("category").distinct().count() >= 10
    images = list(ProductImage.objects.all())
    assert len(images) >= 30
    for image in images:
        path = Path(settings.MEDIA_ROOT) / image.image.name
        assert path.is_file() and image.image.name.startswith("products/")
    assert InteractionEvent.objects.exists()
    truth = json.loads(truth_path.read_text())
    assert truth["seed"] == 3 and truth["args"]["products"] == 30
    by_pk = {p["pk"]: p for p in truth["products"]}
    assert set(by_pk) == set(Product.objects.values_list("pk", flat=True))
    some = Product.objects.get(pk=truth["products"][0]["pk"])
    assert some.slug == truth["products"][0]["slug"]
    assert truth["products"][0]["colour"] in some.description
    assert len(truth["shoppers"]) == 10
    assert truth["shoppers"][0]["subject_key"] == subject_key("demo", truth["shoppers"][0]["shopper_id"])
    keys = {s["subject_key"] for s in truth["shoppers"]}
    assert set(InteractionEvent.objects.values_list("subject_key", flat=True)) <= keys


@pytest.mark.django_db
def test_command_is_reproducible_and_refuses_to_overwrite_without_clear(tmp_path, settings):
    def snapshot() -> tuple[list, list, list]:
        products = list(Product.objects.order_by("slug").values_list("slug", "name", "price", "stock", "description"))
        pictures = sorted(
            (image.image.name, (Path(settings.MEDIA_ROOT) / image.image.name).read_bytes())
            for image in ProductImage.objects.all()
        )
        events = sorted(
            InteractionEvent.objects.values_list("subject_key", "product__slug", "event_type", "occurred_at")
        )
        return products, pictures, events

    options = {"products": 12, "shoppers": 4, "seed": 9, "weeks": 2, "processes": 1,
               "ground_truth": tmp_path / "truth.json", "stdout": io.StringIO(), "verbosity": 0}
    call_command("visrec_seed_demo", **options)
    first = snapshot()
    with pytest.raises(CommandError, match="--clear"):
        call_command("visrec_seed_demo", **options)
    call_command("visrec_seed_demo", clear=True, **options)
    assert snapshot() == first
    assert ProductImage.objects.count() == len(first[1])


@pytest.mark.django_db
def test_command_draws_with_a_process_pool(tmp_path, settings):
    call_command("visrec_seed_demo", products=8, shoppers=2, processes=2, ground_truth=tmp_path / "t.json",
                 stdout=io.StringIO(), verbosity=0)
    names = ProductImage.objects.values_list("image", flat=True)
    sizes = {Image.open(Path(settings.MEDIA_ROOT) / name).size for name in names}
    assert sizes == {(256, 256)}
