"""``python manage.py visrec_import_weights NAME FILE [--check]``: install torchvision weights offline.

visrec never downloads weights. On a machine without internet access, copy torchvision's
ImageNet file over (e.g. ``resnet50-11ad3fa6.pth`` from ``~/.cache/torch/hub/checkpoints``
elsewhere) and import it: the file is checked key by key against the architecture, then
copied into torch's hub cache where ``load_backbone(NAME)`` finds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from visrec.backbones import BACKBONE_NAMES


class Command(BaseCommand):
    help = "Checks a weights file against a torchvision architecture and copies it into torch's hub cache."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the backbone: resnet18, resnet50, mobilenet_v3_large or efficientnet_b0")
        parser.add_argument("file", help="a .pth state dict of torchvision's ImageNet weights for that backbone")
        parser.add_argument("--check", action="store_true", help="only check the file; install nothing")

    def handle(self, *args: Any, name: str, file: str, check: bool, **options: Any) -> None:
        from visrec.backbones.base import InvalidWeights
        from visrec.backbones.torchvision_backbones import ARCHITECTURES, install_weights, load_weights, weights_version

        if name not in ARCHITECTURES:
            if name in BACKBONE_NAMES:
                raise CommandError(f"{name} needs no import: its weights come with its Python package.")
            raise CommandError(f"unknown backbone {name!r}; choose one of {', '.join(ARCHITECTURES)}")
        source = Path(file)
        if not source.is_file():
            raise CommandError(f"no such file: {source}")
        try:
            if check:
                load_weights(name, source)
            else:
                target = install_weights(name, source)
        except InvalidWeights as exc:
            raise CommandError(f"not a {name} state dict: {exc}") from exc
        except OSError as exc:
            raise CommandError(f"could not install {source} into torch's hub cache: {exc}") from exc
        version = weights_version(name, source)
        if check:
            self.stdout.write(self.style.SUCCESS(f"{source} fits {name}; vectors would be version {version}"))
        else:
            self.stdout.write(self.style.SUCCESS(f"installed {name} weights at {target}; version {version}"))
