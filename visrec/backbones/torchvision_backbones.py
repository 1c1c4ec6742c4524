"""torchvision backbones with weights from torch's cache or a local file; never downloaded."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import Backbone, WeightsUnavailable, file_digest, load_state_dict_strict

#: name -> (builder attribute, weights enum attribute, pooled feature size)
ARCHITECTURES: dict[str, tuple[str, str, int]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", 960),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", 1280),
}


def build_model(name: str) -> nn.Module:
    """The torchvision architecture without weights (no download)."""
    import torchvision

    return getattr(torchvision.models, ARCHITECTURES[name][0])(weights=None)


def cache_path(name: str) -> Path:
    """Where torchvision keeps the default ImageNet weights of an architecture."""
    import torchvision

    weights = getattr(torchvision.models, ARCHITECTURES[name][1]).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


class TorchvisionBackbone(Backbone):
    def __init__(self, name: str, path: str | Path | None = None, device: str = "cpu") -> None:
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown torchvision backbone {name!r}")
        self.name = name
        self.dimensions = ARCHITECTURES[name][2]
        candidates = [Path(path)] if path else [cache_path(name)]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise WeightsUnavailable(
                f"No weights for {name}: looked in {', '.join(str(p) for p in candidates)}. visrec does not "
                f"download weights. Put them there, set VISREC['BACKBONE_WEIGHTS'] = {{'{name}': '/path/file.pth'}}, "
                f"or run `python manage.py visrec_import_weights {name} /path/file.pth`."
            )
        model = build_model(name)
        load_state_dict_strict(model, torch.load(found, map_location="cpu", weights_only=True))
        self.version = f"{name}@imagenet-{file_digest(found)}"
        super().__init__(model, device)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.name.startswith("resnet"):
            x = model.maxpool(model.relu(model.bn1(model.conv1(batch))))
            x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
            return torch.flatten(model.avgpool(x), 1)
        return torch.flatten(model.avgpool(model.features(batch)), 1)
