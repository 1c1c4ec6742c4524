"""``python manage.py visrec_seed_demo [--products N] [--shoppers M] [--seed S] [--weeks W] [--clear]``.

Fills the demo shop with a reproducible catalogue and a simulated browsing history:
categories, products with one or two drawn pictures each, and visrec interaction events
of simulated shoppers. The same ``--seed`` (and ``--end``) always gives the same names,
prices, stock, descriptions, picture bytes and events; only database ids differ.

The hidden truth (each product's category, colour, pattern and style; each shopper's
taste) is written to ``var/demo/ground_truth.json`` for evaluations, never to the
product tables.

Pictures are drawn by a pool of worker processes straight into ``MEDIA_ROOT/products/``
and the rows are inserted with ``bulk_create``, which sends no ``post_save``: visrec
does not queue one embedding task per picture. Run ``manage.py visrec_index`` afterwards.
"""
from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models.signals import post_delete
from tqdm import tqdm

from shop_demo.catalog.demo_data.catalogue import CATEGORY_NAMES, ProductSpec, generate_catalogue
from shop_demo.catalog.demo_data.drawing import CATEGORY_STYLES, COLOURS, PATTERNS, ImageJob, write_image
from shop_demo.catalog.demo_data.shoppers import (
    DEFAULT_END, Shopper, SimulatedEvent, generate_shoppers, simulate_events,
)
from shop_demo.catalog.models import Category, Product, ProductImage
from visrec.models import InteractionEvent
from visrec.pseudonyms import subject_key

PSEUDONYM_KIND = "demo"


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _aware_datetime(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(value)
    return moment


class Command(BaseCommand):
    help = "Creates a deterministic demo catalogue with drawn product pictures and a simulated shopper history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=_positive, default=600, help="number of products (default 600)")
        parser.add_argument("--shoppers", type=_non_negative, default=300, help="simulated shoppers (default 300)")
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument("--weeks", type=_positive, default=8, help="weeks of simulated history (default 8)")
        parser.add_argument(
            "--end", type=_aware_datetime, default=DEFAULT_END,
            help="timezone-aware ISO end of the simulated history; fixed, not 'now', so runs are "
                 f"reproducible (default {DEFAULT_END.isoformat()})",
        )
        parser.add_argument("--clear", action="store_true",
                            help="delete existing products, categories, pictures and visrec events first")
        parser.add_argument("--processes", type=_positive, default=2, help="drawing processes (default 2)")
        parser.add_argument("--batch-size", type=_positive, default=2000, help="rows per INSERT (default 2000)")
        parser.add_argument("--ground-truth", type=Path, default=None,
                            help="where to write the ground truth (default BASE_DIR/var/demo/ground_truth.json)")

    def handle(self, *args: Any, **options: Any) -> None:
        progress = options["verbosity"] > 0
        if Product.objects.exists() or Category.objects.exists():
            if not options["clear"]:
                raise CommandError("The catalogue already has products; run again with --clear to replace them.")
            self._clear(progress)
        seed, end, weeks = options["seed"], options["end"], options["weeks"]
        specs = generate_catalogue(options["products"], seed)
        shoppers = generate_shoppers(options["shoppers"], seed)
        self._draw(specs, options["processes"], progress)
        events = simulate_events(specs, shoppers, seed, weeks=weeks, end=end)
        keys = [subject_key(PSEUDONYM_KIND, shopper.shopper_id) for shopper in shoppers]
        batch = options["batch_size"]
        with transaction.atomic():
            products = self._create_catalogue(specs, end, batch)
            self._create_events(events, products, keys, batch, progress)
        path = options["ground_truth"] or Path(settings.BASE_DIR) / "var" / "demo" / "ground_truth.json"
        arguments = {
            "products": options["products"], "shoppers": options["shoppers"], "seed": seed,
            "weeks": weeks, "end": end.isoformat(),
        }
        _write_ground_truth(path, arguments, specs, products, shoppers, keys, events)
        counts = Counter(event.event_type for event in events)
        self.stdout.write(self.style.SUCCESS(
            f"Created {len(specs)} products in {len({s.category for s in specs})} categories with "
            f"{sum(s.image_count for s in specs)} pictures, {len(shoppers)} shoppers and {len(events)} events "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); ground truth in {path}"
        ))

    def _clear(self, progress: bool) -> None:
        """Deletes the catalogue, its picture files and visrec's events."""
        names = list(ProductImage.objects.values_list("image", flat=True))
        # visrec refreshes a product's vector when one of its images is deleted; for a
        # whole catalogue that would be one task per picture, for products about to go.
        muted = post_delete.disconnect(sender=ProductImage, dispatch_uid="visrec_post_delete_image")
        try:
            with transaction.atomic():
                InteractionEvent.objects.all().delete()
                Product.objects.all().delete()
                Category.objects.all().delete()
        finally:
            if muted:
                from visrec.signal_handlers import post_delete_image

                post_delete.connect(post_delete_image, sender=ProductImage, dispatch_uid="visrec_post_delete_image")
        for name in tqdm(names, desc="deleting pictures", unit="file", disable=not progress):
            if name:
                default_storage.delete(name)

    def _draw(self, specs: list[ProductSpec], processes: int, progress: bool) -> None:
        """Draws every picture into the media storage's folder, in parallel."""
        try:
            jobs = [
                ImageJob(spec.look, spec.seed, view, default_storage.path(name))
                for spec in specs for view, name in enumerate(spec.image_names)
            ]
        except NotImplementedError as exc:
            raise CommandError("visrec_seed_demo writes pictures to a local file-system media storage.") from exc
        Path(jobs[0].path).parent.mkdir(parents=True, exist_ok=True)
        with tqdm(total=len(jobs), desc="drawing pictures", unit="img", disable=not progress) as bar:
            if processes == 1:
                for job in jobs:
                    write_image(job)
                    bar.update()
                return
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with context.Pool(processes) as pool:
                for _ in pool.imap_unordered(write_image, jobs, chunksize=16):
                    bar.update()

    def _create_catalogue(self, specs: list[ProductSpec], end: datetime, batch: int) -> list[Product]:
        """Inserts categories, products (dated ``added_days_ago`` before ``end``) and picture rows."""
        categories = {
            slug: Category(name=CATEGORY_NAMES[slug], slug=slug) for slug in sorted(CATEGORY_NAMES)
        }
        Category.objects.bulk_create(categories.values())
        products = [
            Product(name=s.name, slug=s.slug, price=s.price, stock=s.stock, category=categories[s.category],
                    description=s.description)
            for s in specs
        ]
        Product.objects.bulk_create(products, batch_size=batch)
        # created_at is auto_now_add, so the catalogue's history is set in a second pass.
        for product, spec in zip(products, specs):
            product.created_at = end - timedelta(days=spec.added_days_ago)
        Product.objects.bulk_update(products, ["created_at"], batch_size=batch)
        images = [
            ProductImage(product=product, image=name, position=position,
                         alt_text=spec.name if position == 0 else f"{spec.name}, another view")
            for product, spec in zip(products, specs)
            for position, name in enumerate(spec.image_names)
        ]
        ProductImage.objects.bulk_create(images, batch_size=batch)
        return products

    def _create_events(self, events: list[SimulatedEvent], products: list[Product], keys: list[str], batch: int,
                       progress: bool) -> None:
        with tqdm(total=len(events), desc="writing events", unit="event", disable=not progress) as bar:
            for start in range(0, len(events), batch):
                rows = [
                    InteractionEvent(subject_key=keys[e.shopper_index], product_id=products[e.product_index].pk,
                                     event_type=e.event_type, occurred_at=e.occurred_at)
                    for e in events[start:start + batch]
                ]
                InteractionEvent.objects.bulk_create(rows)
                bar.update(len(rows))


def _write_ground_truth(path: Path, arguments: dict[str, Any], specs: list[ProductSpec], products: list[Product],
                        shoppers: list[Shopper], keys: list[str], events: list[SimulatedEvent]) -> None:
    """Writes the hidden attributes of products and shoppers as JSON."""
    counts = Counter(e.event_type for e in events)
    data = {
        "seed": arguments["seed"],
        "args": arguments,
        "attributes": {"category": sorted(CATEGORY_STYLES), "colour": list(COLOURS), "pattern": list(PATTERNS),
                       "style": {category: list(styles) for category, styles in sorted(CATEGORY_STYLES.items())}},
        "event_counts": dict(sorted(counts.items())),
        "products": [
            {
                "index": spec.index, "pk": product.pk, "slug": spec.slug, "name": spec.name,
                "category": spec.category, "colour": spec.colour, "pattern": spec.pattern, "style": spec.style,
                "images": spec.image_names, "added_at": product.created_at.isoformat(),
                "popularity": spec.popularity,
            }
            for spec, product in zip(specs, products)
        ],
        "shoppers": [
            {"shopper_id": shopper.shopper_id, "subject_key": key, "sessions_per_week": shopper.sessions_per_week,
             "taste": shopper.taste.as_dict()}
            for shopper, key in zip(shoppers, keys)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
