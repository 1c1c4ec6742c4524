"""The one small interface every CNN backbone implements, and strict weight loading.

A backbone turns preprocessed images into L2-normalised feature vectors. Weights are
read from files already on the machine, every key accounted for: visrec never
downloads weights and never loads them with ``strict=False``.
"""
from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Normalisation of torchvision's ImageNet weights, on the 0..1 scale (RGB).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Keys under which training scripts commonly nest a state dict.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model")


class WeightsUnavailable(RuntimeError):
    """A backbone's weights are not on this machine (visrec never downloads them)."""

    @classmethod
    def not_found(
        cls,
        name: str,
        looked_in: Iterable[str | Path],
        *,
        configured: str | Path | None = None,
    ) -> WeightsUnavailable:
        """The error for weights found nowhere, saying where visrec looked and how to fix it.

        Args:
            name: the backbone, e.g. ``"resnet50"``.
            looked_in: files looked for in torch's hub cache (``torch.hub.get_dir()``).
            configured: the file named by ``VISREC["BACKBONE_WEIGHTS"][name]``, if any.
        """
        places = []
        if configured:
            places.append(f'the configured file VISREC["BACKBONE_WEIGHTS"]["{name}"] = {configured} (missing)')
        places += [f"torch hub cache file {path}" for path in looked_in]
        return cls(
            f"No weights for backbone {name!r}; visrec never downloads weights. "
            f"Looked for: {'; '.join(places) or 'nothing'}. "
            f"To fix: run `python manage.py visrec_import_weights {name} /path/to/{name}.pth` "
            f"(checks the file and copies it into torch's hub cache), or point "
            f'VISREC["BACKBONE_WEIGHTS"] = {{"{name}": "/path/to/{name}.pth"}} at a local file.'
        )


class InvalidWeights(WeightsUnavailable):
    """A weights file exists but cannot be read or does not fit the architecture."""


def file_digest(path: str | Path, length: int = 8) -> str:
    """First ``length`` hex characters of a file's SHA-256 (part of a backbone's version)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:length]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, safely unpickled and unwrapped.

    Accepts a plain state dict, one nested under ``"state_dict"`` or ``"model"``, and
    ``DataParallel`` files whose every key starts with ``"module."``.

    Raises:
        InvalidWeights: the file is not a readable PyTorch state dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, runtime and OS errors alike
        raise InvalidWeights(f"{path} is not a readable PyTorch weights file: {exc}") from exc
    for wrapper in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise InvalidWeights(f"{path} does not hold a state dict (a mapping of names to tensors).")
    state = dict(state)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def check_weight_keys(module: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Compares a state dict's keys with a module's.

    Returns:
        ``(missing, unexpected)``: sorted keys the module needs that ``state`` lacks, and
        sorted keys of ``state`` the module does not have. Both empty means a strict fit.
    """
    wanted = set(module.state_dict())
    given = set(state)
    return sorted(wanted - given), sorted(given - wanted)


def check_weight_shapes(module: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys present in both whose tensor shapes differ, as ``"key: file (a, b) != model (c, d)"``."""
    mismatched = []
    for key, expected in module.state_dict().items():
        given = state.get(key)
        if given is not None and tuple(given.shape) != tuple(expected.shape):
            mismatched.append(f"{key}: file {tuple(given.shape)} != model {tuple(expected.shape)}")
    return mismatched


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
    """Loads weights into ``module`` with every key and shape accounted for.

    Args:
        module: the architecture, e.g. a torchvision ``resnet50(weights=None)``.
        state: its state dict, e.g. from :func:`read_state_dict`.
        source: what to call the weights in the error (usually the file's path).

    Raises:
        InvalidWeights: a key is missing or unexpected, or a shape differs.
    """
    missing, unexpected = check_weight_keys(module, state)
    shapes = check_weight_shapes(module, state)
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
        raise InvalidWeights(
            f"{source} does not fit the {module.__class__.__name__} architecture: {', '.join(problems)}."
        )
    module.load_state_dict(state, strict=True)


class Backbone(abc.ABC):
    """A frozen CNN that turns preprocessed images into pooled, L2-normalised vectors.

    Subclasses set the class attributes and implement :meth:`features`; :meth:`embed`
    does the rest (inference mode, memory format, device transfer, mixed precision).

    Attributes:
        name: the registry name, e.g. ``"resnet50"``.
        dimensions: length of a vector, e.g. 2048.
        version: ``"<name>@imagenet-<sha8>"`` (first 8 hex of the weights file's SHA-256);
            stored beside every vector, so other weights give another version.
        input_size: side in pixels of the square images the weights expect.
        mean: per-channel RGB mean on the 0..1 scale that preprocessing subtracts.
        std: per-channel RGB standard deviation on the 0..1 scale that it divides by.
        device: where the model runs.
        model: the ``torch.nn.Module`` prepared for inference only: eval mode, gradients
            off, batch norms folded into convolutions where the subclass does so.
    """

    name: str
    dimensions: int
    version: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    device: torch.device
    model: nn.Module

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        # channels_last suits oneDNN on CPU and tensor cores under autocast on CUDA.
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._autocast_dtype: torch.dtype | None = None
        if self.device.type == "cuda":
            self._autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @abc.abstractmethod
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier.

        Args:
            batch: float32 ``(N, 3, H, W)`` on :attr:`device`, normalised with
                :attr:`mean` and :attr:`std`.

        Returns:
            ``(N, dimensions)``, not normalised (float32, or the autocast dtype on CUDA).
        """

    def embed(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Vectors of a batch of preprocessed images.

        Args:
            batch: float32 ``(N, 3, H, W)``, normalised with :attr:`mean` and :attr:`std`.

        Returns:
            float32 ``(N, dimensions)`` numpy array with L2-normalised rows.

        Raises:
            ValueError: ``batch`` is not ``(N, 3, H, W)``.
        """
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, got shape {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with torch.inference_mode():
            tensor = torch.as_tensor(batch, dtype=torch.float32)
            if self._autocast_dtype is not None:
                if tensor.device.type == "cpu":
                    tensor = tensor.pin_memory()
                tensor = tensor.to(self.device, non_blocking=True, memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=self._autocast_dtype):
                    out = self.features(tensor)
            else:
                out = self.features(tensor.to(self.device).contiguous(memory_format=torch.channels_last))
            return F.normalize(out.float(), dim=1).cpu().numpy()

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.version} ({self.dimensions}d on {self.device})>"
