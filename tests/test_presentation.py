"""Product cards: one query for what is not cached, none for what is, forgotten when a product or image changes."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext

from shop_demo.catalog.models import Product
from visrec.services.serving.presentation import forget_cards, product_cards

from .factories import ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_auto_index(settings):
    settings.VISREC = {**settings.VISREC, "AUTO_INDEX": False}  # no extraction task on image saves


@pytest.fixture
def products(django_capture_on_commit_callbacks):
    made = []
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            product = ProductFactory(name=f"Mug {i}", price=f"{10 + i}.50")
            ProductImageFactory(product=product, position=1, alt_text=f"second picture {i}")
            ProductImageFactory(product=product, position=0, alt_text=f"mug {i} from the front")
            made.append(product)
    return made


def ranked(products, scores=(0.9, 0.8, 0.7)):
    return [(p.pk, s) for p, s in zip(products, scores)]


def test_cards_in_the_ranked_order_with_the_first_image_and_its_alt_text(products):
    with CaptureQueriesContext(connection) as queries:
        cards = product_cards(list(reversed(ranked(products))))
    assert len(queries.captured_queries) == 1
    assert [c["pk"] for c in cards] == [p.pk for p in reversed(products)]
    last = cards[0]
    assert last["name"] == "Mug 2" and last["price"] == Decimal("12.50") and last["score"] == 0.7
    assert last["alt"] == "mug 2 from the front" and last["image_url"] == products[2].images.get(position=0).image.url
    assert last["url"] == products[2].get_absolute_url()


def test_cached_cards_cost_no_query_and_scores_are_not_cached(products):
    product_cards(ranked(products))
    with CaptureQueriesContext(connection) as queries:
        cards = product_cards(ranked(products, scores=(0.5, 0.4, 0.3)))
    assert len(queries.captured_queries) == 0
    assert [c["score"] for c in cards] == [0.5, 0.4, 0.3]
    new = ProductFactory()
    with CaptureQueriesContext(connection) as queries:
        cards = product_cards(ranked(products) + [(new.pk, 0.1)])
    assert len(queries.captured_queries) == 1  # only the uncached product is read
    assert f"ANY('{{{new.pk}}}'" in queries.captured_queries[0]["sql"] and cards[-1]["pk"] == new.pk


def test_saving_a_product_or_an_image_forgets_its_card(products, django_capture_on_commit_callbacks):
    product_cards(ranked(products))
    with django_capture_on_commit_callbacks(execute=True):
        products[0].price = Decimal("99.00")
        products[0].save()
        image = products[1].images.get(position=0)
        image.alt_text = "mug 1, new photo"
        image.save()
    cards = product_cards(ranked(products))
    assert cards[0]["price"] == Decimal("99.00") and cards[1]["alt"] == "mug 1, new photo"


def test_one_forget_per_transaction_however_many_products_change(products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for product in products:
            product.save()
    assert len(callbacks) == 1 and callbacks[0].product_ids == [p.pk for p in products]


def test_a_change_after_a_rolled_back_savepoint_is_still_forgotten(products, django_capture_on_commit_callbacks):
    product_cards(ranked(products))
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                products[0].save()  # its callback goes with the savepoint
                raise RuntimeError
        except RuntimeError:
            pass
        products[1].name = "Renamed mug"
        products[1].save()
    assert [c.product_ids for c in callbacks] == [[products[1].pk]]
    assert product_cards(ranked(products))[1]["name"] == "Renamed mug"


@pytest.mark.django_db(transaction=True)
def test_a_change_after_a_rolled_back_transaction_is_still_forgotten(products):
    product_cards(ranked(products))
    try:
        with transaction.atomic():
            products[0].save()  # its callback is dropped with the transaction
            raise RuntimeError
    except RuntimeError:
        pass
    with transaction.atomic():  # same (no) savepoints as the one rolled back
        products[1].name = "Renamed mug"
        products[1].save()
    assert product_cards(ranked(products))[1]["name"] == "Renamed mug"


def test_a_deleted_product_disappears_from_cached_cards(products, django_capture_on_commit_callbacks):
    product_cards(ranked(products))
    with django_capture_on_commit_callbacks(execute=True):
        products[1].delete()
    assert [c["name"] for c in product_cards(ranked(products))] == ["Mug 0", "Mug 2"]


def test_updates_without_signals_show_after_forget_cards(products):
    product_cards(ranked(products))
    Product.objects.filter(pk=products[0].pk).update(name="Renamed mug")
    assert product_cards(ranked(products))[0]["name"] == "Mug 0"  # cached: QuerySet.update sends no signal
    forget_cards([products[0].pk])
    assert product_cards(ranked(products))[0]["name"] == "Renamed mug"


def test_no_card_cache_when_switched_off(products, settings):
    settings.VISREC = {**settings.VISREC, "AUTO_INDEX": False, "CARD_CACHE_SECONDS": 0}
    product_cards(ranked(products))
    with CaptureQueriesContext(connection) as queries:
        product_cards(ranked(products))
    assert len(queries.captured_queries) == 1


def test_the_card_query_is_compiled_once_for_its_time(products, settings, monkeypatch):
    from visrec.services.db import compiled_sql
    from visrec.services.serving import presentation

    compiled = []
    real = presentation._card_sql
    monkeypatch.setattr(presentation, "_card_sql", lambda: compiled.append(1) or real())
    settings.VISREC = {**settings.VISREC, "CARD_CACHE_SECONDS": 0}  # every call reads the database
    for product in products:
        assert [c["pk"] for c in product_cards([(product.pk, 1.0)])] == [product.pk]
    assert len(compiled) == 1
    monkeypatch.setattr(compiled_sql.time, "monotonic", lambda real=compiled_sql.time.monotonic: real() + 61)
    product_cards(ranked(products))
    assert len(compiled) == 2  # its time is up
    settings.VISREC = {**settings.VISREC, "CANDIDATE_SQL_SECONDS": 0}  # a request-dependent manager
    product_cards(ranked(products))
    product_cards(ranked(products))
    assert len(compiled) == 4


def use_manager(monkeypatch, settings, get_queryset):
    """The product model's default manager replaced by one whose queryset is ``get_queryset(qs)``."""

    class Manager(models.Manager):
        def get_queryset(self):
            return get_queryset(super().get_queryset())

    manager = Manager()
    manager.model = Product
    monkeypatch.setattr(Product._meta, "default_manager", manager)
    settings.VISREC = {**settings.VISREC, "CARD_CACHE_SECONDS": 0}  # also empties the compiled SQL


def test_cards_follow_a_plain_managers_filter_in_the_compiled_query(products, settings, monkeypatch):
    use_manager(monkeypatch, settings, lambda qs: qs.filter(stock__gt=0).only("id", "name", "slug", "price"))
    Product.objects.filter(pk=products[1].pk).update(stock=0)
    with CaptureQueriesContext(connection) as queries:
        cards = product_cards(ranked(products))
    assert len(queries.captured_queries) == 1 and "= ANY(" in queries.captured_queries[0]["sql"]
    assert [c["pk"] for c in cards] == [products[0].pk, products[2].pk]
    assert cards[1] == {"pk": products[2].pk, "name": "Mug 2", "url": products[2].get_absolute_url(),
                        "price": Decimal("12.50"), "price_display": "£12.50", "image_url": cards[1]["image_url"],
                        "alt": "mug 2 from the front",
                        "score": 0.7}
    assert cards[1]["image_url"].endswith(products[2].images.get(position=0).image.name)


@pytest.mark.parametrize("narrow", [
    lambda qs: qs.select_related("category"),  # a raw query would not fill the relation
    lambda qs: qs.annotate(shown=models.Value(True)),  # the manager's own annotations
    lambda qs: qs.distinct(),
])
def test_a_manager_that_is_not_plain_keeps_the_orms_one_query(products, settings, monkeypatch, narrow):
    use_manager(monkeypatch, settings, lambda qs: narrow(qs.filter(stock__gt=0)))
    Product.objects.filter(pk=products[1].pk).update(stock=0)
    with CaptureQueriesContext(connection) as queries:
        cards = product_cards(ranked(products))
        assert [c["pk"] for c in cards] == [products[0].pk, products[2].pk]
    assert len(queries.captured_queries) == 1 and "= ANY(" not in queries.captured_queries[0]["sql"]
    assert cards[0]["alt"] == "mug 0 from the front"


def test_no_cards_when_the_product_manager_returns_none(products, settings, monkeypatch):
    use_manager(monkeypatch, settings, lambda qs: qs.none())
    with CaptureQueriesContext(connection) as queries:
        assert product_cards(ranked(products)) == []
    assert queries.captured_queries == []
