"""``python manage.py visrec_import_weights NAME FILE [--check]``: install torchvision weights offline."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from django.core.management.base import BaseCommand, CommandError

from visrec.backbones.base import WeightsUnavailable, file_digest, load_state_dict_strict
from visrec.backbones.torchvision_backbones import ARCHITECTURES, build_model, cache_path


class Command(BaseCommand):
    help = "Checks a weights file against a torchvision architecture and copies it into torch's cache."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help=", ".join(ARCHITECTURES))
        parser.add_argument("file", help="a .pth state dict (torchvision's ImageNet weights)")
        parser.add_argument("--check", action="store_true", help="only check the file")

    def handle(self, *args, name: str, file: str, check: bool, **options) -> None:
        if name not in ARCHITECTURES:
            raise CommandError(f"unknown backbone {name!r}; choose one of {', '.join(ARCHITECTURES)}")
        source = Path(file)
        if not source.is_file():
            raise CommandError(f"no such file: {source}")
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
            load_state_dict_strict(build_model(name), state)
        except (WeightsUnavailable, RuntimeError, OSError, EOFError, ValueError, AttributeError) as exc:
            raise CommandError(f"{source} is not a {name} state dict: {exc}") from exc
        version = f"{name}@imagenet-{file_digest(source)}"
        if check:
            self.stdout.write(f"{source} fits {name} ({version})")
            return
        target = cache_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.stdout.write(f"installed {name} weights at {target} ({version})")
