"""The one small interface every CNN backbone implements."""
from __future__ import annotations

import abc
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """A backbone's weights are not on this machine; visrec never downloads them."""


def file_digest(path: str | Path, length: int = 8) -> str:
    """First ``length`` hex characters of a file's SHA-256 (part of the version string)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:length]


def load_state_dict_strict(module: nn.Module, state: dict) -> None:
    """Loads weights with every key accounted for (no silent ``strict=False``)."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    missing, unexpected = check_weight_keys(module, state)
    if missing or unexpected:
        raise WeightsUnavailable(
            f"weights do not match the {module.__class__.__name__} architecture: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    module.load_state_dict(state, strict=True)


def check_weight_keys(module: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    """Keys the module needs that ``state`` lacks, and keys of ``state`` the module does not have."""
    wanted = set(module.state_dict())
    given = set(state)
    return sorted(wanted - given), sorted(given - wanted)


class Backbone(abc.ABC):
    """A frozen CNN that turns preprocessed images into pooled feature vectors.

    Attributes:
        name: the registry name, e.g. ``"resnet50"``.
        dimensions: length of a vector.
        version: ``name@weights-sha8``; stored beside every vector.
        input_size, mean, std: the preprocessing the weights expect.
    """

    name: str
    dimensions: int
    version: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @abc.abstractmethod
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier: (N, 3, H, W) float32 -> (N, dimensions)."""

    @torch.inference_mode()
    def embed(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """L2-normalised vectors: float32 (N, 3, H, W) -> float32 (N, dimensions), unit rows."""
        tensor = torch.as_tensor(batch, dtype=torch.float32)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                out = self.features(tensor)
        else:
            out = self.features(tensor.contiguous(memory_format=torch.channels_last))
        return F.normalize(out.float(), dim=1).cpu().numpy()
