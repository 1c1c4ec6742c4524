"""visrec_import: a shop's own CSV catalogue and history into the demo catalogue."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from shop_demo.catalog.models import Product
from visrec.models import InteractionEvent
from visrec.pseudonyms import subject_key

from .conftest import make_image_bytes

pytestmark = pytest.mark.django_db


def test_import_products_images_and_events(tmp_path, capsys):
    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(make_image_bytes((200, 0, 0)))
    (images / "b.png").write_bytes(make_image_bytes((0, 0, 200), fmt="PNG"))
    (tmp_path / "products.csv").write_text(
        "id,name,category,price,image\n"
        "A1,Red Mug,Mugs,9.50,a.jpg\n"
        "B2,Blue Lamp,Lamps,30,b.png\n"
        "C3,Ghost,Mugs,5,missing.jpg\n"
        "D4,Bad price,Mugs,abc,a.jpg\n"
    )
    (tmp_path / "events.csv").write_text(
        "user,item,timestamp,event_type\n"
        "u1,A1,2026-10-01T10:00:00Z,view\n"
        "u1,A1,1759313000,add_to_cart\n"
        "u2,B2,2026-10-02 12:00:00,transaction\n"
        "u2,ZZ,2026-10-02 12:00:00,view\n"
        "u3,A1,2026-10-02,teleport\n"
    )
    call_command("visrec_import", "--products", str(tmp_path / "products.csv"), "--images", str(images),
                 "--events", str(tmp_path / "events.csv"))
    out = capsys.readouterr()
    assert "products: 2 imported, 2 skipped" in out.out
    assert "events: 3 imported, 2 skipped" in out.out
    mug = Product.objects.get(slug="import-a1")
    assert (mug.name, str(mug.price), mug.category.name) == ("Red Mug", "9.50", "Mugs")
    assert mug.images.get().image.name == "products/import-a1.jpg"
    assert set(InteractionEvent.objects.values_list("event_type", flat=True)) == {"view", "cart", "purchase"}
    assert InteractionEvent.objects.filter(subject_key=subject_key("import", "u2"), event_type="purchase").count() == 1


def test_import_reports_missing_files_and_columns(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("visrec_import", "--products", str(tmp_path / "nope.csv"), "--images", str(tmp_path))
    (tmp_path / "p.csv").write_text("id,name\n1,x\n")
    with pytest.raises(CommandError, match="missing columns"):
        call_command("visrec_import", "--products", str(tmp_path / "p.csv"), "--images", str(tmp_path))


def test_an_old_history_imported_by_account_trains_reaches_its_user_and_survives_retention(
        tmp_path, capsys, settings, django_capture_on_commit_callbacks, django_user_model, client):
    """A two-year-old history: imported without one task per image (no broker asked), prices
    optional, shoppers by the shop's user ids; training counts back from the newest event, the
    nightly purge keeps it, and the logged-in user gets their own history back."""
    from celery import current_app

    from visrec.models import PendingWork
    from visrec.services.foryou import training
    from visrec.services.privacy.shopper_data import purge_expired_events

    images = tmp_path / "img"
    images.mkdir()
    rows, events = ["id,name,category,price,image"], ["user,item,timestamp,event_type"]
    for i in range(12):
        (images / f"p{i}.png").write_bytes(make_image_bytes((20 * i, 200 - 15 * i, 60 + 10 * (i % 3)), fmt="PNG"))
        category = "" if i == 11 else ("Mugs" if i < 6 else "Lamps")
        rows.append(f"P{i},Item {i},{category},{'' if i % 4 == 0 else '12.50'},p{i}.png")
    ann = django_user_model.objects.create_user("ann-imported", password="pw")
    users = [str(ann.pk)] + [f"9{u}" for u in range(1, 12)]
    for u, user in enumerate(users):
        for day, item in enumerate([(u + d) % 12 for d in range(5)]):
            kind = "purchase" if day in (2, 4) else "view"
            events.append(f"{user},P{item},2024-0{1 + day}-{10 + u:02d}T12:00:00Z,{kind}")
    (tmp_path / "products.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "events.csv").write_text("\n".join(events) + "\n")
    sent = []
    saved = current_app.send_task
    current_app.send_task = lambda *a, **k: sent.append(a)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            call_command("visrec_import", "--products", str(tmp_path / "products.csv"), "--images", str(images),
                         "--events", str(tmp_path / "events.csv"), "--users-are-accounts", "--index", verbosity=0)
    finally:
        current_app.send_task = saved
    assert sent == [] and not PendingWork.objects.exists()  # indexed in bulk, here
    assert Product.objects.filter(price__isnull=True).count() == 3
    # no pseudo-category for the uncategorised product: it is not a category to be judged on
    assert Product.objects.filter(category__isnull=True).count() == 1
    assert set(Product.objects.exclude(category=None).values_list("category__name", flat=True)) == {"Mugs", "Lamps"}
    assert purge_expired_events() == 0  # a year of retention does not delete imported history
    version = training.train_recommender("bpr")  # the window ends at the newest event, in 2024
    assert version.metrics["window_end"].startswith("2024-05") and version.metrics["train_events"] > 0
    from visrec.models import ShopperVector

    assert version.is_active and ShopperVector.objects.filter(subject_key=subject_key("user", ann.pk)).exists()
    client.force_login(ann)  # her imported history is hers on the live site
    assert client.get("/api/visrec/for-you/").json()["source"] != "trending"


def test_retention_can_be_off_and_includes_imports_when_asked(settings):
    import datetime as dt

    from django.utils import timezone

    from visrec.services.privacy.shopper_data import purge_expired_events

    from .factories import ProductFactory

    product = ProductFactory()
    old = timezone.now() - dt.timedelta(days=800)
    InteractionEvent.objects.create(subject_key="a" * 64, product=product, event_type="view", occurred_at=old,
                                    source="import")
    InteractionEvent.objects.create(subject_key="b" * 64, product=product, event_type="view", occurred_at=old)
    settings.VISREC = {**settings.VISREC, "RETENTION_DAYS": None}
    assert purge_expired_events() == 0
    settings.VISREC = {**settings.VISREC, "RETENTION_DAYS": 365}
    assert purge_expired_events() == 1 and InteractionEvent.objects.get().source == "import"
    settings.VISREC = {**settings.VISREC, "RETENTION_INCLUDES_IMPORTS": True}
    assert purge_expired_events() == 1 and not InteractionEvent.objects.exists()
