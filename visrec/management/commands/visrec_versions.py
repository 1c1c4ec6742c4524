"""``python manage.py visrec_versions [--kind recommender] [--activate NAME]``: list, promote, roll back."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from visrec.models import ModelKind, ModelVersion
from visrec.services.serving.switching import NotServable, serve_version


class Command(BaseCommand):
    help = "Lists model versions with their metrics; --activate serves a version (promote or roll back)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--kind", choices=ModelKind.values, default=None)
        parser.add_argument("--activate", metavar="NAME", default=None)

    def handle(self, *args, kind, activate, **options) -> None:
        if activate:
            version = ModelVersion.objects.filter(name=activate).first()
            if version is None:
                raise CommandError(f"no model version named {activate!r}")
            try:
                serve_version(version, note="switched by visrec_versions")
            except NotServable as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{version.name} is now served")
            return
        versions = ModelVersion.objects.all() if kind is None else ModelVersion.objects.filter(kind=kind)
        for v in versions.order_by("kind", "-created_at"):
            flag = "*" if v.is_active else " "
            self.stdout.write(f"{flag} {v.kind:<12} {v.name:<60} {v.created_at:%Y-%m-%d %H:%M}  {v.notes[:80]}")
