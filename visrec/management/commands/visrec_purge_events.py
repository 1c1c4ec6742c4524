"""``python manage.py visrec_purge_events [--days N]``: delete raw events past retention."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from visrec.services.privacy.shopper_data import purge_expired_events


class Command(BaseCommand):
    help = "Deletes interaction events older than VISREC['RETENTION_DAYS'] (or --days), in batches."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days, **options) -> None:
        if days is not None and days < 0:
            raise CommandError("--days must not be negative")
        self.stdout.write(f"deleted {purge_expired_events(days=days)} events")
