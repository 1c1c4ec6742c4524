"""``python manage.py visrec_import --products products.csv --images DIR --events events.csv``.

Loads a shop's own catalogue and history into the demo catalogue, to evaluate visrec on
real data (then ``visrec_index`` and ``visrec_evaluate``).

``products.csv`` (header required): ``id,name,category,price,image`` — ``image`` is a file
name under ``--images``, ``price`` may be empty (no price); optional column ``stock``
(default 1).
``events.csv``: ``user,item,timestamp,event_type`` — ``item`` is a product ``id``,
``timestamp`` ISO 8601 (UTC if no zone) or unix seconds, ``event_type`` one of view, click,
cart, purchase (aliases: add_to_cart/addtocart -> cart, transaction/buy -> purchase).
Users are stored as keyed pseudonyms only: with ``--users-are-accounts`` the ``user``
column holds the shop's user ids, and the history gets the pseudonym a logged-in visit of
that user gets (it personalises the live site); otherwise an import namespace of its own.
Imported events are kept by retention (``RETENTION_INCLUDES_IMPORTS``).

Images are not sent to Celery one by one: the work is recorded and, with ``--index``, done
here in bulk (else run ``visrec_index``). Bad rows are reported and skipped; nothing
half-imported is left for a row.
"""
from __future__ import annotations

import csv
import datetime as dt
import shutil
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify
from tqdm import tqdm

from shop_demo.catalog.models import Category, Product, ProductImage
from visrec.models import EventType, InteractionEvent
from visrec.pseudonyms import subject_key
from visrec.services.catalogue import outbox
from visrec.services.privacy.shopper_data import IMPORT_SOURCE

ALIASES = {"add_to_cart": "cart", "addtocart": "cart", "transaction": "purchase", "buy": "purchase",
           "click": "click", "view": "view", "cart": "cart", "purchase": "purchase"}


def parse_time(value: str) -> dt.datetime:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)


class Command(BaseCommand):
    help = "Imports products (with image files) and interaction events from CSV files into the demo catalogue."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--products", required=True)
        parser.add_argument("--images", required=True, help="folder holding the image files")
        parser.add_argument("--events", default=None)
        parser.add_argument("--users-are-accounts", action="store_true",
                            help="the events' user column holds the shop's user ids")
        parser.add_argument("--index", action="store_true", help="embed the imported images now (visrec_index)")

    def handle(self, *args, products, images, events, users_are_accounts, index, **options) -> None:
        for path in filter(None, [products, events]):
            if not Path(path).is_file():
                raise CommandError(f"no such file: {path}")
        if not Path(images).is_dir():
            raise CommandError(f"no such folder: {images}")
        with outbox.held_back():  # one bulk pass below (or visrec_index), not a task per image
            mapping = self._products(Path(products), Path(images))
        if events:
            self._events(Path(events), mapping, "user" if users_are_accounts else "import")
        if index:
            call_command("visrec_index", verbosity=options["verbosity"])

    def _products(self, path: Path, images: Path) -> dict[str, int]:
        media = Path(settings.MEDIA_ROOT) / "products"
        media.mkdir(parents=True, exist_ok=True)
        mapping: dict[str, int] = {}
        skipped = 0
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "name", "category", "price", "image"} - set(reader.fieldnames or [])
            if missing:
                raise CommandError(f"{path}: missing columns {', '.join(sorted(missing))}")
            for line, row in enumerate(tqdm(reader, desc="products", unit="row"), start=2):
                source = images / row["image"]
                try:
                    price = Decimal(row["price"]) if (row["price"] or "").strip() else None
                    stock = int(row.get("stock") or 1)
                except (InvalidOperation, ValueError):
                    self.stderr.write(f"{path}:{line}: bad price or stock, skipped")
                    skipped += 1
                    continue
                if not source.is_file():
                    self.stderr.write(f"{path}:{line}: image {source} not found, skipped")
                    skipped += 1
                    continue
                with transaction.atomic():
                    name = row["category"].strip()  # empty: no category, not a pseudo-category
                    category = Category.objects.get_or_create(slug=slugify(name)[:100] or f"category-{line}",
                                                              defaults={"name": name[:100]})[0] if name else None
                    slug = f"import-{slugify(row['id'])}"[:220]
                    product, _ = Product.objects.update_or_create(
                        slug=slug, defaults={"name": row["name"][:200], "price": price, "stock": stock,
                                             "category": category})
                    target = media / f"{slug}{source.suffix.lower()}"
                    shutil.copyfile(source, target)
                    ProductImage.objects.update_or_create(
                        product=product, position=0, defaults={"image": f"products/{target.name}"})
                mapping[row["id"]] = product.pk
        self.stdout.write(f"products: {len(mapping)} imported, {skipped} skipped")
        return mapping

    def _events(self, path: Path, mapping: dict[str, int], namespace: str) -> None:
        rows, skipped = [], 0
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"user", "item", "timestamp", "event_type"} - set(reader.fieldnames or [])
            if missing:
                raise CommandError(f"{path}: missing columns {', '.join(sorted(missing))}")
            for row in tqdm(reader, desc="events", unit="row"):
                kind = ALIASES.get(row["event_type"].strip().lower())
                product = mapping.get(row["item"])
                try:
                    when = parse_time(row["timestamp"])
                except ValueError:
                    when = None
                if kind not in EventType.values or product is None or when is None:
                    skipped += 1
                    continue
                rows.append(InteractionEvent(subject_key=subject_key(namespace, row["user"].strip()),
                                             product_id=product, event_type=kind, occurred_at=when,
                                             source=IMPORT_SOURCE))
        InteractionEvent.objects.bulk_create(rows, batch_size=5000)
        self.stdout.write(f"events: {len(rows)} imported, {skipped} skipped (unknown item, type or time)")
