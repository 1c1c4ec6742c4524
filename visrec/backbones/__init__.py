"""CNN backbones behind one small interface (see :mod:`visrec.backbones.base`).

Importing this package does not import torch; :func:`load_backbone` does.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Backbone

#: Names accepted by ``VISREC["BACKBONE"]``.
BACKBONE_NAMES: tuple[str, ...] = (
    "efficientnet_lite0",
    "resnet18",
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_b0",
)

#: Loaded backbones by ``(name, weights path or None, device)``: each process loads once.
_loaded: dict[tuple[str, str | None, str], Backbone] = {}
_lock = threading.Lock()
_threads_set = False


def torchvision_cache_path(name: str) -> Path:
    """Where torch's hub cache keeps torchvision's default ImageNet weights of ``name``.

    E.g. ``~/.cache/torch/hub/checkpoints/resnet50-11ad3fa6.pth``; the file
    ``visrec_import_weights`` writes and :func:`load_backbone` reads.

    Raises:
        ValueError: ``name`` is not a torchvision backbone.
    """
    from .torchvision_backbones import cache_path

    return cache_path(name)


def load_backbone(
    name: str | None = None,
    *,
    weights_path: str | None = None,
    device: str | None = None,
) -> Backbone:
    """The backbone ``name``, loaded once per process and shared afterwards.

    The first call also applies ``VISREC["TORCH_THREADS"]`` (when positive) with
    ``torch.set_num_threads``, once per process.

    Args:
        name: one of :data:`BACKBONE_NAMES`; default ``VISREC["BACKBONE"]``.
        weights_path: a weights file; default ``VISREC["BACKBONE_WEIGHTS"].get(name)``,
            else the package's file (EfficientNet-Lite0) or torch's hub cache (torchvision).
        device: e.g. ``"cpu"`` or ``"cuda:0"``; default ``"cuda"`` when available.

    Raises:
        ValueError: unknown name.
        WeightsUnavailable: no weights file (visrec never downloads weights).
        InvalidWeights: the weights file does not fit the architecture.
    """
    import torch

    from ..conf import visrec_settings

    global _threads_set
    name = name or visrec_settings.BACKBONE
    if name not in BACKBONE_NAMES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
    weights_path = weights_path or (visrec_settings.BACKBONE_WEIGHTS or {}).get(name)
    weights_path = str(weights_path) if weights_path else None
    device = str(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (name, weights_path, device)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if not _threads_set:
            if visrec_settings.TORCH_THREADS > 0:
                torch.set_num_threads(visrec_settings.TORCH_THREADS)
            _threads_set = True
        if name == "efficientnet_lite0":
            from .efficientnet_lite import EfficientNetLite0

            backbone: Backbone = EfficientNetLite0(weights_path, device=device)
        else:
            from .torchvision_backbones import TorchvisionBackbone

            backbone = TorchvisionBackbone(name, weights_path, device=device)
        _loaded[key] = backbone
        return backbone
