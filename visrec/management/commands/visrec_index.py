"""``python manage.py visrec_index [--missing|--failed|--all] [--batch-size N]``."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visrec.backbones.base import WeightsUnavailable
from visrec.services.catalogue import extraction


class Command(BaseCommand):
    help = "Embeds the catalogue's product images (the same service as the Celery tasks)."

    def add_arguments(self, parser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--missing", dest="mode", action="store_const", const="missing",
                          help="images without a vector yet (default)")
        mode.add_argument("--failed", dest="mode", action="store_const", const="failed",
                          help="images whose embedding failed before")
        mode.add_argument("--all", dest="mode", action="store_const", const="all",
                          help="every image, even if already embedded")
        parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
        parser.set_defaults(mode="missing")

    def handle(self, *args, mode: str, batch_size: int | None, **options) -> None:
        if batch_size is not None and batch_size <= 0:
            raise CommandError("--batch-size must be a positive integer")
        try:
            total = len(extraction.images_to_index(mode))
            with tqdm(total=total, unit="img", desc=f"visrec_index --{mode}", disable=options["verbosity"] == 0) as bar:
                report = extraction.index_catalogue(mode, batch_size=batch_size, progress=bar.update)
        except WeightsUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"embedded {report.embedded}, unchanged {report.skipped}, failed {report.failed}, "
            f"products updated {report.products}"
        )
        for image_id, reason in list(report.failures.items())[:20]:
            self.stdout.write(f"  image {image_id}: {reason}")
