"""Backbones: every pretrained key loads, vectors are stable and meaningful, nothing downloads."""
from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image, ImageDraw

from visrec.backbones import load_backbone, torchvision_cache_path
from visrec.backbones.base import InvalidWeights, WeightsUnavailable, file_digest, load_state_dict_strict
from visrec.backbones.efficientnet_lite import LITE_MEAN, LITE_STD, build_model, check_weight_keys, weights_path
from visrec.imaging import PreprocessConfig, preprocess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """torch's hub cache points at an empty folder, and no backbone is loaded yet."""
    hub = tmp_path / "torch-home" / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub.parent))
    # torch.hub.get_dir() prefers a directory set by torch.hub.set_dir(); restore it exactly.
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr("visrec.backbones._loaded", {})
    return hub


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download or open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("visrec tried to reach the network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def save_state_dict(path: Path, name: str, **kwargs) -> Path:
    """A freshly initialised torchvision model's state dict, saved to ``path``."""
    torch.save(getattr(torchvision.models, name)(weights=None, **kwargs).state_dict(), path)
    return path


def test_importing_the_package_does_not_import_torch():
    code = "import sys, visrec.backbones; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_every_efficientnet_lite0_weight_key_loads():
    model = build_model()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert check_weight_keys(model, state) == ([], [])
    load_state_dict_strict(model, state)

    broken = dict(state)
    dropped = sorted(broken)[0]
    del broken[dropped]
    broken["extra.weight"] = torch.zeros(1)
    assert check_weight_keys(model, broken) == ([dropped], ["extra.weight"])
    with pytest.raises(InvalidWeights, match="1 missing keys.*1 unexpected keys"):
        load_state_dict_strict(build_model(), broken)


def shape_image(kind: str, colour: tuple[int, int, int], dx: int = 0) -> bytes:
    """A product-like drawing on a light background, as PNG bytes."""
    image = Image.new("RGB", (224, 224), (246, 246, 244))
    draw = ImageDraw.Draw(image)
    if kind == "mug":
        draw.rectangle((60 + dx, 60, 150 + dx, 170), fill=colour)
        draw.ellipse((135 + dx, 85, 185 + dx, 145), outline=colour, width=12)
    else:  # chair
        draw.rectangle((70 + dx, 30, 85 + dx, 190), fill=colour)
        draw.rectangle((70 + dx, 110, 160 + dx, 125), fill=colour)
        draw.rectangle((145 + dx, 110, 160 + dx, 190), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_default_backbone_vectors_are_unit_stable_and_meaningful(empty_torch_home, no_network):
    # The default backbone's weights come with a package: an empty torch cache is fine.
    backbone = load_backbone("efficientnet_lite0")
    assert (backbone.mean, backbone.std) == (LITE_MEAN, LITE_STD)
    assert backbone.version == f"efficientnet_lite0@imagenet-{file_digest(weights_path())}"
    config = PreprocessConfig(size=backbone.input_size, mean=backbone.mean, std=backbone.std)
    mug = preprocess(shape_image("mug", (200, 30, 30)), config)
    batch = np.stack([
        mug,
        preprocess(shape_image("mug", (170, 40, 30), dx=12), config),  # shifted and recoloured
        preprocess(shape_image("chair", (30, 60, 200)), config),
        mug,
    ])
    vectors = backbone.embed(batch)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(vectors[3], vectors[0], atol=1e-5)  # same image, same vector
    np.testing.assert_allclose(backbone.embed(torch.from_numpy(batch[:1])), vectors[:1], atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]

    # Folding the batch norms for speed changes nothing that matters.
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in backbone.model.modules())
    reference = build_model().eval()
    load_state_dict_strict(reference, torch.load(weights_path(), map_location="cpu", weights_only=True))
    with torch.inference_mode():
        pooled = reference.extract_features(torch.from_numpy(batch)).mean(dim=(2, 3))
    np.testing.assert_allclose(vectors, torch.nn.functional.normalize(pooled, dim=1).numpy(), atol=1e-4)
    assert backbone.embed(batch[:0]).shape == (0, 1280)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        backbone.embed(batch[0])
    assert load_backbone() is backbone  # the default name, loaded once per process


def test_missing_torchvision_weights_raise_quickly_without_download(empty_torch_home, no_network):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable) as raised:
        load_backbone("resnet18")
    assert time.monotonic() - start < 10
    message = str(raised.value)
    assert str(torchvision_cache_path("resnet18")) in message
    assert str(empty_torch_home) in message
    assert "visrec_import_weights resnet18" in message and 'VISREC["BACKBONE_WEIGHTS"]' in message


def test_configured_weights_file_that_is_missing_is_named(settings, empty_torch_home, no_network, tmp_path):
    missing = tmp_path / "nowhere" / "resnet50.pth"
    settings.VISREC = {**settings.VISREC, "BACKBONE_WEIGHTS": {"resnet50": str(missing)}}
    with pytest.raises(WeightsUnavailable, match="configured file.*nowhere"):
        load_backbone("resnet50")


@pytest.mark.django_db
def test_import_command_installs_weights_and_rejects_bad_files(empty_torch_home, no_network, tmp_path):
    path = save_state_dict(tmp_path / "r18.pth", "resnet18")
    with pytest.raises(CommandError, match="not a resnet50 state dict.*missing keys"):
        call_command("visrec_import_weights", "resnet50", str(path))
    with pytest.raises(CommandError, match="unknown backbone 'vgg99'"):
        call_command("visrec_import_weights", "vgg99", str(path))
    with pytest.raises(CommandError, match="efficientnet_lite0 needs no import"):
        call_command("visrec_import_weights", "efficientnet_lite0", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("visrec_import_weights", "resnet18", str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(CommandError, match="not a readable PyTorch weights file"):
        call_command("visrec_import_weights", "resnet18", str(garbage))
    ten_classes = save_state_dict(tmp_path / "r18-10.pth", "resnet18", num_classes=10)
    with pytest.raises(CommandError, match=r"shape mismatches.*fc\.weight"):
        call_command("visrec_import_weights", "resnet18", str(ten_classes))

    out = io.StringIO()
    call_command("visrec_import_weights", "resnet18", str(path), "--check", stdout=out)
    assert "fits resnet18" in out.getvalue()
    assert not torchvision_cache_path("resnet18").exists()

    out = io.StringIO()
    call_command("visrec_import_weights", "resnet18", str(path), stdout=out)
    installed = torchvision_cache_path("resnet18")
    assert installed.read_bytes() == path.read_bytes() and installed.parent.parent == empty_torch_home
    assert f"resnet18@imagenet-{file_digest(path)}" in out.getvalue()
    assert list(installed.parent.iterdir()) == [installed]  # no temporary file left behind
    backbone = load_backbone("resnet18")
    assert backbone.dimensions == 512
    assert backbone.version == f"resnet18@imagenet-{file_digest(path)}"
    vectors = backbone.embed(np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32))
    assert vectors.dtype == np.float32 and vectors.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_wrapped_and_data_parallel_files_load(settings, empty_torch_home, tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{key}": value for key, value in state.items()}}, wrapped)
    settings.VISREC = {**settings.VISREC, "BACKBONE_WEIGHTS": {"resnet18": str(wrapped)}}
    assert load_backbone("resnet18").dimensions == 512

    truncated = tmp_path / "truncated.pth"
    torch.save({key: value for key, value in state.items() if not key.startswith("layer4.")}, truncated)
    settings.VISREC = {**settings.VISREC, "BACKBONE_WEIGHTS": {"resnet18": str(truncated)}}
    with pytest.raises(InvalidWeights, match="missing keys.*layer4"):
        load_backbone("resnet18")


@pytest.mark.parametrize(("name", "dims"), [("mobilenet_v3_large", 960), ("efficientnet_b0", 1280), ("resnet50", 2048)])
def test_torchvision_backbones_give_pooled_features_before_the_classifier(
    settings, empty_torch_home, no_network, tmp_path, name, dims
):
    path = save_state_dict(tmp_path / f"{name}.pth", name)
    settings.VISREC = {**settings.VISREC, "BACKBONE_WEIGHTS": {name: str(path)}}
    backbone = load_backbone(name)
    assert backbone.dimensions == dims and backbone.version == f"{name}@imagenet-{file_digest(path)}"
    batch = np.random.default_rng(1).normal(size=(2, 3, 224, 224)).astype(np.float32)
    vectors = backbone.embed(batch)
    assert vectors.dtype == np.float32 and vectors.shape == (2, dims)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in backbone.model.modules())

    reference = getattr(torchvision.models, name)(weights=None).eval()
    reference.load_state_dict(torch.load(path, weights_only=True))
    with torch.inference_mode():
        x = torch.from_numpy(batch)
        if name == "resnet50":
            x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
            x = reference.layer4(reference.layer3(reference.layer2(reference.layer1(x))))
        else:
            x = reference.features(x)
        pooled = torch.nn.functional.normalize(torch.flatten(reference.avgpool(x), 1), dim=1).numpy()
    np.testing.assert_allclose(vectors, pooled, atol=1e-4)
