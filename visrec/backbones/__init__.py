"""CNN backbones behind one small interface (see :mod:`visrec.backbones.base`).

Importing this package does not import torch; :func:`load_backbone` does.
"""
from __future__ import annotations

#: Names accepted by ``VISREC["BACKBONE"]``.
BACKBONE_NAMES: tuple[str, ...] = (
    "efficientnet_lite0",
    "resnet18",
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_b0",
)
