"""The served image embedder: a CNN backbone, optionally followed by a fine-tuned head.

Pure compute, no ORM. Every embedder writes the backbone's own vectors (the *base*
version, which later fine-tuning learns from) and, when it has a head, the head's
vectors (the *served* version). A fine-tuned version may also carry the product's
colour (:mod:`visrec.colour`), which ImageNet features hardly keep: its vector is then
``normalize([sqrt(1 - w) * head(x), sqrt(w) * colour])``, so that the cosine of two such
vectors is ``(1 - w) * cos(heads) + w * cos(colours)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backbones.base import Backbone
from .colour import DEFAULT_BINS, batch_descriptors


def fuse_colour(head_vectors: np.ndarray, colours: np.ndarray, weight: float) -> np.ndarray:
    """``normalize([sqrt(1 - weight) * head_vectors, sqrt(weight) * colours])``, row-wise.

    Args:
        head_vectors: float32 ``(N, D)`` unit rows.
        colours: float32 ``(N, C)`` unit rows (a zero row where an image had no colour).
        weight: the colour's share of the cosine, ``0 <= weight < 1``; ``0`` returns
            ``head_vectors`` unchanged (no colour columns).

    Returns:
        float32 ``(N, D + C)`` unit rows, or ``(N, D)`` when ``weight`` is 0.
    """
    if weight <= 0:
        return np.asarray(head_vectors, dtype=np.float32)
    fused = np.hstack([np.sqrt(1.0 - weight) * head_vectors, np.sqrt(weight) * colours]).astype(np.float32)
    fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
    return fused


@dataclass
class Embedder:
    """A backbone and an optional projection head.

    Attributes:
        backbone: the CNN.
        head: a :class:`visrec.training.projection.ProjectionHead` or ``None``.
        head_version: the version string of the head's vectors (``None`` without head).
        colour_weight: the colour's share of the served vector's cosine (0: no colour).
        colour_bins: bins per channel of the colour descriptor.
    """

    backbone: Backbone
    head: object | None = None
    head_version: str | None = None
    colour_weight: float = 0.0
    colour_bins: int = DEFAULT_BINS

    @property
    def base_version(self) -> str:
        return self.backbone.version

    @property
    def served_version(self) -> str:
        return self.head_version or self.backbone.version

    @property
    def versions(self) -> list[str]:
        """Versions written per image: the base version, then the head's if any."""
        return [self.base_version] + ([self.head_version] if self.head_version else [])

    def embed(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Vectors of a batch under every version this embedder writes.

        Args:
            batch: float32 ``(N, 3, H, W)``, preprocessed for the backbone.

        Returns:
            ``{version: float32 (N, D_version)}``, rows L2-normalised.
        """
        base = self.backbone.embed(batch)
        out = {self.base_version: base}
        if self.head is not None:
            projected = self.head.project(base)
            if self.colour_weight > 0:
                colours = batch_descriptors(batch, self.backbone.mean, self.backbone.std, self.colour_bins)
                projected = fuse_colour(projected, colours, self.colour_weight)
            out[self.head_version] = projected
        return out

    def embed_served(self, batch: np.ndarray) -> np.ndarray:
        """Vectors under the served version only: float32 ``(N, D)``, unit rows."""
        return self.embed(batch)[self.served_version]
