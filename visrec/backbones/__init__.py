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


_loaded: dict = {}
_threads_set = False


def torchvision_cache_path(name: str):
    """Where torchvision's default ImageNet weights of ``name`` are looked for."""
    from .torchvision_backbones import cache_path

    return cache_path(name)


def load_backbone(name: str | None = None, *, weights_path: str | None = None, device: str | None = None):
    """The backbone ``name`` (default ``VISREC["BACKBONE"]``), loaded once per process.

    Raises:
        WeightsUnavailable: torchvision weights are neither configured nor in the cache.
        ValueError: unknown name.
    """
    import torch

    from ..conf import visrec_settings

    global _threads_set
    name = name or visrec_settings.BACKBONE
    if name not in BACKBONE_NAMES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
    weights_path = weights_path or visrec_settings.BACKBONE_WEIGHTS.get(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (name, weights_path, device)
    if key in _loaded:
        return _loaded[key]
    if not _threads_set and visrec_settings.TORCH_THREADS > 0:
        torch.set_num_threads(visrec_settings.TORCH_THREADS)
        _threads_set = True
    if name == "efficientnet_lite0":
        from .efficientnet_lite import EfficientNetLite0

        backbone = EfficientNetLite0(weights_path, device=device)
    else:
        from .torchvision_backbones import TorchvisionBackbone

        backbone = TorchvisionBackbone(name, weights_path, device=device)
    _loaded[key] = backbone
    return backbone
