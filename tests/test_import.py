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
