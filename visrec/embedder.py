"""The served image embedder: a CNN backbone, optionally followed by a fine-tuned head.

Pure compute, no ORM. Every embedder writes the backbone's own vectors (the *base*
version, which later fine-tuning learns from) and, when it has a head, the head's
vectors (the *served* version).

A fine-tuned version's vector may join three parts, each weighted by its share ``w`` of
the cosine (:func:`fuse`): the head's vector (shape, category, details), the product's
colour (:mod:`visrec.colour`; ImageNet features hardly keep it, shoppers notice it
first) and the head's category affinity (:func:`~visrec.training.projection.category_affinity`:
keeps colour from pulling a product into another category). The cosine of two served
vectors is then ``w_head * cos(heads) + w_colour * cos(colours) + w_category * cos(affinities)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .backbones.base import Backbone
from .colour import DEFAULT_BINS, batch_descriptors


def fuse(parts: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """``normalize([sqrt(w1) * a1, sqrt(w2) * a2, ...])`` row-wise; parts of weight 0 are left out.

    Args:
        parts: ``(float32 (N, D_i) unit rows, weight)`` pairs; the weights sum to 1. A zero
            row (an image without colour) just contributes nothing.

    Returns:
        float32 ``(N, sum of D_i over parts with weight > 0)`` unit rows.
    """
    kept = [(np.asarray(a, dtype=np.float32), float(w)) for a, w in parts if w > 0]
    if len(kept) == 1:
        return kept[0][0]
    fused = np.hstack([np.sqrt(w) * a for a, w in kept]).astype(np.float32)
    fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
    return fused


def served_vectors(projected: np.ndarray, colours: np.ndarray | None, prototypes: np.ndarray | None,
                   colour_weight: float, category_weight: float) -> np.ndarray:
    """A fine-tuned version's vectors from its head's output (see the module docstring).

    Args:
        projected: float32 ``(N, D)`` head vectors.
        colours: float32 ``(N, bins**3)`` colour descriptors; read only when ``colour_weight > 0``.
        prototypes: the head's category prototypes; read only when ``category_weight > 0``.
        colour_weight, category_weight: the two shares of the cosine (the head has the rest).
    """
    from .training.projection import category_affinity

    parts = [(projected, 1.0 - colour_weight - category_weight)]
    if colour_weight > 0:
        parts.append((colours, colour_weight))
    if category_weight > 0:
        parts.append((category_affinity(projected, prototypes), category_weight))
    return fuse(parts)


@dataclass
class Embedder:
    """A backbone and an optional projection head.

    Attributes:
        backbone: the CNN.
        head: a :class:`visrec.training.projection.ProjectionHead` or ``None``.
        head_version: the version string of the head's vectors (``None`` without head).
        colour_weight: the colour's share of the served vector's cosine (0: no colour).
        category_weight: the category affinity's share (0: none; needs the head's prototypes).
        colour_bins: bins per channel of the colour descriptor.
    """

    backbone: Backbone
    head: object | None = None
    head_version: str | None = None
    colour_weight: float = 0.0
    category_weight: float = 0.0
    colour_bins: int = DEFAULT_BINS

    def served_from(self, base: np.ndarray, colours: np.ndarray | None) -> np.ndarray:
        """The served vectors from backbone vectors and colour descriptors (no CNN pass).

        Args:
            base: float32 ``(N, D)`` backbone vectors.
            colours: float32 ``(N, bins**3)`` (:func:`visrec.colour.batch_descriptors`);
                only read when :attr:`colour_weight` is positive.
        """
        if self.head is None:
            return base
        return served_vectors(self.head.project(base), colours, self.head.prototypes,
                              self.colour_weight, self.category_weight)

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
            colours = None
            if self.colour_weight > 0:
                colours = batch_descriptors(batch, self.backbone.mean, self.backbone.std, self.colour_bins)
            out[self.head_version] = self.served_from(base, colours)
        return out

    def embed_served(self, batch: np.ndarray) -> np.ndarray:
        """Vectors under the served version only: float32 ``(N, D)``, unit rows."""
        return self.embed(batch)[self.served_version]
