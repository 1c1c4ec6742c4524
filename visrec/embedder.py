"""The served image embedder: a CNN backbone, optionally followed by a fine-tuned head.

Pure compute, no ORM. Every embedder writes the backbone's own vectors (the *base*
version, which later fine-tuning learns from) and, when it has a head, the head's
vectors (the *served* version).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backbones.base import Backbone


@dataclass
class Embedder:
    """A backbone and an optional projection head.

    Attributes:
        backbone: the CNN.
        head: a :class:`visrec.training.projection.ProjectionHead` or ``None``.
        head_version: the version string of the head's vectors (``None`` without head).
    """

    backbone: Backbone
    head: object | None = None
    head_version: str | None = None

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
            out[self.head_version] = self.head.project(base)
        return out

    def embed_served(self, batch: np.ndarray) -> np.ndarray:
        """Vectors under the served version only: float32 ``(N, D)``, unit rows."""
        return self.embed(batch)[self.served_version]
