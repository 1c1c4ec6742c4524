"""The CUDA path of the backbones: bf16 autocast, channels_last, float32 unit vectors out.

Skipped without a GPU (CI has none). Needs neither Django nor a database, so on a GPU
machine it also runs alone: ``python -m pytest -p no:django --noconftest tests/test_backbones_cuda.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from visrec.backbones.efficientnet_lite import EfficientNetLite0

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def pair():
    return EfficientNetLite0(device="cuda"), EfficientNetLite0(device="cpu")


def batch(n=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 224, 224)).astype(np.float32)


def test_cuda_backbone_runs_in_bf16_or_fp16_autocast_on_channels_last(pair):
    gpu, _ = pair
    assert gpu.device.type == "cuda"
    assert gpu._autocast_dtype in (torch.bfloat16, torch.float16)
    first = next(gpu.model.parameters())
    assert first.is_cuda
    conv = next(m for m in gpu.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_cuda_vectors_are_float32_unit_rows_that_agree_with_the_cpu(pair):
    gpu, cpu = pair
    x = batch()
    on_gpu, on_cpu = gpu.embed(x), cpu.embed(x)
    assert on_gpu.dtype == np.float32 and on_gpu.shape == (16, gpu.dimensions)
    assert np.allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-4)
    cosine = (on_gpu * on_cpu).sum(axis=1)
    assert cosine.min() > 0.98, cosine
    # Mixed precision must not blur which image is which.
    assert (np.argmax(on_gpu @ on_cpu.T, axis=1) == np.arange(16)).all()


def test_cuda_embedding_is_deterministic_across_batch_sizes(pair):
    gpu, _ = pair
    x = batch(32, seed=1)
    whole = gpu.embed(x)
    halves = np.vstack([gpu.embed(x[:16]), gpu.embed(x[16:])])
    assert (whole * halves).sum(axis=1).min() > 0.999
