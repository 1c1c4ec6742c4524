"""A projection head fine-tuned on the shop's catalogue, over a frozen CNN backbone.

Pure torch, no ORM. The head maps a backbone vector ``x`` (unit norm) to
``normalize(x @ A + MLP(x))``: a linear map initialised from the identity-like top
principal directions plus a small residual MLP, so an untrained head is already about
as good as the backbone and training only has to improve it.

Two losses, combined:

* **supervised contrastive** (Khosla et al., 2020) on the host's categories where they
  exist: images of the same category attract, others repel;
* **instance contrastive** (SimCLR-style NT-Xent, Chen et al., 2020): each image and an
  augmented view of it (other crop, flip, scale; never a colour change) attract; images
  of the same product are positives too. This keeps what distinguishes one product from
  another in its category (colour, pattern, shape details), and is the whole training
  signal when a shop has no categories.

After training, the head keeps one *prototype* per category (the normalised mean of its
training products' vectors): :func:`category_affinity` turns a vector into how much it
looks like each category, which the served embedder can append to its vectors
(:mod:`visrec.embedder`) so that other features (colour) never pull a product into the
wrong category.

Artefacts are saved with ``torch.save`` of tensors only and loaded with
``weights_only=True`` (no pickle of code).
"""
from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class TrainingConfig:
    """Hyper-parameters of head training."""

    out_dim: int = 256
    hidden_dim: int = 512
    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    supervised_weight: float = 1.0
    instance_weight: float = 1.0
    seed: int = 0
    # Early stopping: stop once the mean epoch loss has not fallen by ``min_delta`` (relative)
    # below its best for ``patience`` epochs (0 = run every epoch).
    patience: int = 5
    min_delta: float = 0.005


class ProjectionHead(nn.Module):
    """``normalize(x @ A + MLP(x))``: (N, in_dim) float32 -> (N, out_dim) unit rows."""

    def __init__(self, in_dim: int, out_dim: int = 256, hidden_dim: int = 512) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden_dim = in_dim, out_dim, hidden_dim
        #: float32 ``(categories, out_dim)`` unit rows, or ``None`` (see :func:`category_prototypes`).
        self.prototypes: np.ndarray | None = None
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def init_from_pca(self, x: np.ndarray) -> None:
        """Starts the linear map at the top ``out_dim`` principal directions of ``x`` (N, in_dim)."""
        centred = torch.from_numpy(np.asarray(x, dtype=np.float32))
        centred = centred - centred.mean(0, keepdim=True)
        k = min(self.out_dim, centred.shape[0], centred.shape[1])
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        weight = torch.zeros(self.out_dim, self.in_dim)
        weight[:k] = v[:k]
        with torch.no_grad():
            self.linear.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x) + self.mlp(x), dim=1)

    @torch.inference_mode()
    def project(self, x: np.ndarray) -> np.ndarray:
        """Head output for base vectors: float32 (N, in_dim) -> float32 (N, out_dim), unit rows."""
        self.eval()
        return self(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def save(self, handle: BinaryIO) -> None:
        """Writes the tensors and sizes (no code) to a binary file object."""
        payload = {"sizes": torch.tensor([self.in_dim, self.out_dim, self.hidden_dim]), "state": self.state_dict()}
        if self.prototypes is not None:
            payload["prototypes"] = torch.from_numpy(np.ascontiguousarray(self.prototypes, dtype=np.float32))
        torch.save(payload, handle)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, handle: BinaryIO) -> ProjectionHead:
        """Reads a head saved by :meth:`save` (``weights_only``: no pickle of code)."""
        payload = torch.load(handle, map_location="cpu", weights_only=True)
        in_dim, out_dim, hidden_dim = (int(v) for v in payload["sizes"])
        head = cls(in_dim, out_dim, hidden_dim)
        head.load_state_dict(payload["state"], strict=True)
        if "prototypes" in payload:
            head.prototypes = payload["prototypes"].numpy()
        head.eval()
        return head


#: Softmax temperature of :func:`category_affinity` over cosines to the prototypes.
AFFINITY_TEMPERATURE = 0.05


def category_prototypes(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """One unit vector per category: the normalised mean of its items' (head) vectors.

    Args:
        vectors: float32 ``(N, D)``.
        labels: int64 ``(N,)`` category index, ``-1`` where unknown.

    Returns:
        float32 ``(categories, D)`` in label order (``0 .. max``), or ``None`` without labels.
    """
    labels = np.asarray(labels)
    known = sorted({int(c) for c in labels if c >= 0})
    if len(known) < 2:
        return None
    prototypes = np.stack([vectors[labels == c].mean(axis=0) for c in known]).astype(np.float32)
    prototypes /= np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
    return prototypes


def category_affinity(vectors: np.ndarray, prototypes: np.ndarray,
                      temperature: float = AFFINITY_TEMPERATURE) -> np.ndarray:
    """How much each vector looks like each category: float32 ``(N, categories)``, unit rows.

    ``sqrt(softmax(cos(vector, prototypes) / temperature))``: the cosine of two rows is the
    Bhattacharyya coefficient of the two category distributions (1 for the same
    confident category, near 0 for two different ones).
    """
    logits = np.asarray(vectors, dtype=np.float64) @ np.asarray(prototypes, dtype=np.float64).T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return np.sqrt(probabilities).astype(np.float32)


def supervised_contrastive_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon: for each anchor with a labelled positive, mean log-likelihood of its positives.

    Args:
        z: (N, D) unit rows.
        labels: (N,) int64; ``-1`` means unlabelled (never a positive).
    """
    n = z.shape[0]
    logits = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, -1e9)
    positives = (labels[:, None] == labels[None, :]) & ~eye & (labels[:, None] >= 0)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    counts = positives.sum(1)
    has = counts > 0
    if not has.any():
        return z.sum() * 0.0
    per_anchor = (log_prob * positives).sum(1)[has] / counts[has]
    return -per_anchor.mean()


def train_head(
    base: np.ndarray,
    augmented: np.ndarray,
    categories: np.ndarray,
    groups: np.ndarray,
    config: TrainingConfig | None = None,
    progress=None,
) -> tuple[ProjectionHead, list[float]]:
    """Trains a projection head.

    Args:
        base: float32 (N, D) backbone vectors of the training images.
        augmented: float32 (N, D) backbone vectors of one augmented view of each image.
        categories: int64 (N,) category index per image, ``-1`` where unknown.
        groups: int64 (N,) product index per image (images of one product are positives).
        config: hyper-parameters.
        progress: optional callable ``(epoch, loss)`` after each epoch.

    Returns:
        the trained head (eval mode) and the mean loss of every epoch.
    """
    config = config or TrainingConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = ProjectionHead(base.shape[1], config.out_dim, config.hidden_dim)
    head.init_from_pca(base)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x = torch.from_numpy(np.asarray(base, dtype=np.float32))
    x_aug = torch.from_numpy(np.asarray(augmented, dtype=np.float32))
    cats = torch.from_numpy(np.asarray(categories, dtype=np.int64))
    grp = torch.from_numpy(np.asarray(groups, dtype=np.int64))
    use_supervised = bool((cats >= 0).any()) and config.supervised_weight > 0
    n = x.shape[0]
    history: list[float] = []
    for epoch in range(config.epochs):
        head.train()
        order = torch.from_numpy(rng.permutation(n))
        losses = []
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            if idx.numel() < 2:
                continue
            # Each image twice: itself and its augmented view; positives share the product.
            z = head(torch.cat([x[idx], x_aug[idx]]))
            product = torch.cat([grp[idx], grp[idx]])
            loss = config.instance_weight * supervised_contrastive_loss(z, product, config.temperature)
            if use_supervised:
                loss = loss + config.supervised_weight * supervised_contrastive_loss(
                    z, torch.cat([cats[idx], cats[idx]]), config.temperature
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)) if losses else 0.0)
        if progress:
            progress(epoch, history[-1])
        if config.patience and _plateaued(history, config.patience, config.min_delta):
            break
    head.eval()
    logger.info("visrec: head trained, %s, final loss %.4f", asdict(config), history[-1] if history else 0.0)
    return head, history


def _plateaued(history: list[float], patience: int, min_delta: float) -> bool:
    """Whether the last ``patience`` epochs' losses all stayed above ``(1 - min_delta)`` × the
    best loss before them."""
    if len(history) <= patience:
        return False
    best = min(history[:-patience])
    return min(history[-patience:]) > best - abs(best) * min_delta
