"""torchvision backbones whose ImageNet weights come from torch's cache or a local file.

Nothing here downloads: models are built with ``weights=None`` and the weights file is
read with ``torch.load(..., weights_only=True)`` and loaded with every key checked. The
cache is torchvision's own (``torch.hub.get_dir()/checkpoints/<file name of the weights
enum's URL>``), so weights that torchvision downloaded on another occasion are found, and
``visrec_import_weights`` installs files where torchvision would put them.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .base import Backbone, WeightsUnavailable, file_digest, load_state_dict_strict, read_state_dict

logger = logging.getLogger(__name__)


class Architecture(NamedTuple):
    """How to build a torchvision model and where its pooled features are."""

    builder: str  #: function in ``torchvision.models``
    weights_enum: str  #: its weights enum in ``torchvision.models``
    dimensions: int  #: pooled feature size before the classifier
    head: str  #: the classifier attribute replaced by ``nn.Identity`` after loading


#: Every torchvision backbone visrec knows.
ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture("resnet18", "ResNet18_Weights", 512, "fc"),
    "resnet50": Architecture("resnet50", "ResNet50_Weights", 2048, "fc"),
    "mobilenet_v3_large": Architecture("mobilenet_v3_large", "MobileNet_V3_Large_Weights", 960, "classifier"),
    "efficientnet_b0": Architecture("efficientnet_b0", "EfficientNet_B0_Weights", 1280, "classifier"),
}


def _architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown torchvision backbone {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def build_model(name: str) -> nn.Module:
    """The torchvision architecture with its ImageNet classifier, without weights (no download)."""
    import torchvision

    return getattr(torchvision.models, _architecture(name).builder)(weights=None)


def _weights_file_names(name: str) -> list[str]:
    """torchvision's file names for the ImageNet weights of ``name``, the default first."""
    import torchvision

    enum = getattr(torchvision.models, _architecture(name).weights_enum)
    names = [Path(enum.DEFAULT.url).name] + [Path(member.url).name for member in enum]
    return list(dict.fromkeys(names))


def cache_path(name: str) -> Path:
    """Where torchvision keeps the default ImageNet weights of ``name``.

    E.g. ``~/.cache/torch/hub/checkpoints/resnet50-11ad3fa6.pth``; follows ``TORCH_HOME``
    and ``torch.hub.set_dir``.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / _weights_file_names(name)[0]


def cache_candidates(name: str) -> list[Path]:
    """Every cache file accepted for ``name``: the default weights first, then older ones."""
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    return [directory / file_name for file_name in _weights_file_names(name)]


def find_weights(name: str, configured: str | Path | None = None) -> Path:
    """The weights file of ``name``: the configured one, else the first in torch's cache.

    Raises:
        WeightsUnavailable: the configured file is missing, or none is configured and
            the cache has none.
    """
    if configured:
        if Path(configured).is_file():
            return Path(configured)
        raise WeightsUnavailable.not_found(name, [], configured=configured)
    candidates = cache_candidates(name)
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsUnavailable.not_found(name, candidates)


def load_weights(name: str, path: str | Path) -> nn.Module:
    """The model of ``name`` with the weights of ``path``, every key and shape checked.

    Raises:
        InvalidWeights: unreadable file, or one made for another architecture.
    """
    model = build_model(name)
    load_state_dict_strict(model, read_state_dict(path), source=f"{path} (as {name})")
    return model


def weights_version(name: str, path: str | Path) -> str:
    """The version string of vectors made with these weights: ``"<name>@imagenet-<sha8>"``."""
    return f"{name}@imagenet-{file_digest(path)}"


def install_weights(name: str, source: str | Path) -> Path:
    """Checks a weights file and copies it into torch's cache, where :func:`find_weights` looks.

    Official torchvision files keep their own name (``resnet50-0676ba61.pth`` is the
    older ResNet-50 weights), so torchvision's name still tells the truth about the
    contents; any other file is installed under the default weights' name. The copy is
    atomic: a worker never reads half a file.

    Returns:
        The installed file.

    Raises:
        InvalidWeights: the file does not fit the architecture.
    """
    load_weights(name, source)
    digest = file_digest(source)
    names = _weights_file_names(name)
    official = [n for n in names if re.search(rf"-{digest}[0-9a-f]*\.", n)]
    target = Path(torch.hub.get_dir()) / "checkpoints" / (official[0] if official else names[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """The model with each batch norm folded into its convolution (``torch.fx`` fusion).

    For inference only: 25-40% less CPU time per image, same outputs to ~1e-7. A model
    that ``torch.fx`` cannot trace is returned unchanged (and a warning logged).
    """
    from torch.fx.experimental.optimization import fuse

    model.eval()
    try:
        return fuse(model)
    except Exception:  # tracing limits vary across torch versions; fusion is only a speed-up
        logger.warning("could not fuse %s for inference; using it unfused", type(model).__name__, exc_info=True)
        return model


class TorchvisionBackbone(Backbone):
    """A torchvision ImageNet classifier without its classifier head, batch norms folded."""

    def __init__(self, name: str, path: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        """Finds and strictly loads the weights.

        Args:
            name: a key of :data:`ARCHITECTURES`.
            path: a weights file (``VISREC["BACKBONE_WEIGHTS"][name]``); ``None`` for the cache.
            device: where the model runs.

        Raises:
            ValueError: unknown name.
            WeightsUnavailable: no weights file.
            InvalidWeights: the file does not fit the architecture.
        """
        architecture = _architecture(name)
        self.name = name
        self.dimensions = architecture.dimensions
        found = find_weights(name, path)
        model = load_weights(name, found)
        setattr(model, architecture.head, nn.Identity())
        self.version = weights_version(name, found)
        super().__init__(fuse_for_inference(model), device)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, dimensions): globally average-pooled features (the model minus its head)."""
        return self.model(batch)
