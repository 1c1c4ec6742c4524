"""Backbones: every pretrained key loads, vectors are stable and meaningful, no downloads."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image, ImageDraw

from visrec.backbones import load_backbone
from visrec.backbones.base import WeightsUnavailable, check_weight_keys
from visrec.backbones.efficientnet_lite import build_model, weights_path
from visrec.imaging import PreprocessConfig, preprocess


def test_every_efficientnet_lite0_weight_key_loads():
    model = build_model()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert check_weight_keys(model, state) == ([], [])
    broken = dict(state)
    dropped = next(iter(broken))
    del broken[dropped]
    broken["extra.weight"] = torch.zeros(1)
    assert check_weight_keys(model, broken) == ([dropped], ["extra.weight"])


def shape_image(kind: str, colour, dx: int = 0) -> bytes:
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


def test_default_backbone_vectors_are_unit_stable_and_meaningful():
    backbone = load_backbone("efficientnet_lite0")
    config = PreprocessConfig(mean=backbone.mean, std=backbone.std)
    batch = np.stack([
        preprocess(shape_image("mug", (200, 30, 30)), config),
        preprocess(shape_image("mug", (170, 40, 30), dx=12), config),  # shifted and recoloured
        preprocess(shape_image("chair", (30, 60, 200)), config),
    ])
    vectors = backbone.embed(batch)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(backbone.embed(batch[:1]), vectors[:1], atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert backbone.version.startswith("efficientnet_lite0@imagenet-")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr("visrec.backbones._loaded", {})
    return tmp_path / "hub"


def test_missing_torchvision_weights_raise_without_download(empty_torch_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("visrec tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match="visrec_import_weights resnet18"):
        load_backbone("resnet18")


@pytest.mark.django_db
def test_import_command_installs_weights_and_rejects_wrong_architecture(empty_torch_home, tmp_path):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(CommandError, match="not a resnet50 state dict"):
        call_command("visrec_import_weights", "resnet50", str(path))
    with pytest.raises(CommandError, match="unknown backbone"):
        call_command("visrec_import_weights", "vgg99", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("visrec_import_weights", "resnet18", str(tmp_path / "nope.pth"))
    call_command("visrec_import_weights", "resnet18", str(path))
    backbone = load_backbone("resnet18")
    assert backbone.dimensions == 512 and backbone.version.startswith("resnet18@imagenet-")
    vectors = backbone.embed(np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32))
    assert vectors.shape == (2, 512)


@pytest.mark.parametrize(("name", "dims"), [("mobilenet_v3_large", 960), ("efficientnet_b0", 1280), ("resnet50", 2048)])
def test_torchvision_backbones_from_a_local_file(settings, tmp_path, name, dims, monkeypatch):
    import torchvision

    monkeypatch.setattr("visrec.backbones._loaded", {})
    path = tmp_path / f"{name}.pth"
    torch.save(getattr(torchvision.models, name)(weights=None).state_dict(), path)
    settings.VISREC = {**settings.VISREC, "BACKBONE_WEIGHTS": {name: str(path)}}
    backbone = load_backbone(name)
    out = backbone.embed(np.zeros((1, 3, 224, 224), dtype=np.float32))
    assert out.shape == (1, dims) and backbone.dimensions == dims
