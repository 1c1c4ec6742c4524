"""BPR matrix factorisation in PyTorch (Rendle et al., UAI 2009).

``score(u, i) = beta_i + gamma_u . gamma_i``, trained to rank an item the user engaged
with above one they did not: maximise ``log sigmoid(score(u, i) - score(u, j))`` over
sampled triples (user u, positive i, negative j) with L2 regularisation.

Choices that matter here:

* positives are drawn in proportion to the summed event weight of the (user, item) pair,
  so a purchase (8) teaches eight times what a view (1) does, and recency decay already
  folded into the weights applies too;
* negatives are drawn uniformly from the negative pool (all items for BPR, interacted
  items for VBPR) and redrawn a few times when they hit one of the user's positives;
* one epoch is as many triples as there are distinct (user, item) pairs, drawn at once
  with numpy, then consumed in vectorised mini-batches (4096 by default);
* embeddings are sparse (``nn.Embedding(sparse=True)``) and stepped by ``SparseAdam``, so a
  step touches the batch's rows only, not 100k x factors parameters;
* all randomness comes from ``seed`` (a numpy ``Generator`` and a ``torch.Generator``):
  the global torch RNG and ``torch.set_num_threads`` are left alone.

Items nobody interacted with are only ever negatives, so they sink to the bottom: BPR
cannot recommend a new product; VBPR can.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from visrec.recommenders.base import InnerProductRecommender, Interactions, ProgressCallback

logger = logging.getLogger(__name__)

#: Times a negative that is one of the user's positives is redrawn.
_NEGATIVE_RETRIES = 4


class TripleSampler:
    """Draws BPR triples from a user-item matrix.

    Args:
        matrix: float32 CSR (n_users, n_items) of summed event weights, sorted indices.
        negative_pool: int64 (P,) items negatives are drawn from (None: every item).
        rng: the numpy generator all draws come from.
    """

    def __init__(self, matrix: sp.csr_matrix, negative_pool: np.ndarray | None, rng: np.random.Generator) -> None:
        self.n_items = matrix.shape[1]
        self.users = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
        self.items = matrix.indices.astype(np.int64)
        self.keys = self.users * self.n_items + self.items  # ascending: CSR with sorted indices
        self.cdf = np.cumsum(matrix.data, dtype=np.float64)
        self.pool = negative_pool
        self.rng = rng

    def __len__(self) -> int:
        """Number of distinct (user, item) pairs."""
        return len(self.keys)

    def _negatives(self, size: int) -> np.ndarray:
        if self.pool is None:
            return self.rng.integers(0, self.n_items, size=size, dtype=np.int64)
        return self.pool[self.rng.integers(0, len(self.pool), size=size)]

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[at] == keys

    def sample(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``size`` triples: users, positives, negatives, each int64 (size,)."""
        draws = self.rng.random(size) * self.cdf[-1]
        pick = np.minimum(np.searchsorted(self.cdf, draws, side="right"), len(self.cdf) - 1)
        users, positives = self.users[pick], self.items[pick]
        negatives = self._negatives(size)
        for _ in range(_NEGATIVE_RETRIES):
            clash = np.flatnonzero(self._is_positive(users, negatives))
            if not len(clash):
                break
            negatives[clash] = self._negatives(len(clash))
        return users, positives, negatives


def sparse_embedding(rows: int, dim: int, std: float, generator: torch.Generator) -> nn.Embedding:
    """``nn.Embedding(sparse=True)`` initialised N(0, std) (zeros when ``std == 0``)."""
    embedding = nn.Embedding(rows, dim, sparse=True)
    with torch.no_grad():
        if std > 0:
            embedding.weight.normal_(0.0, std, generator=generator)
        else:
            embedding.weight.zero_()
    return embedding


def train_bpr(
    net: nn.Module,
    sampler: TripleSampler,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    samples_per_epoch: int | None,
    progress: ProgressCallback | None,
) -> list[float]:
    """Runs BPR epochs on ``net`` (a module with ``loss(users, positives, negatives)``).

    Sparse parameters (embeddings) are stepped with ``SparseAdam``, dense ones with ``Adam``.

    Returns:
        the mean loss of every epoch.
    """
    sparse = [m.weight for m in net.modules() if isinstance(m, nn.Embedding) and m.sparse]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in net.parameters() if id(p) not in sparse_ids]
    optimisers: list[torch.optim.Optimizer] = [torch.optim.SparseAdam(sparse, lr=lr)]
    if dense:
        optimisers.append(torch.optim.Adam(dense, lr=lr))
    size = int(samples_per_epoch or len(sampler))
    history: list[float] = []
    for epoch in range(epochs):
        users, positives, negatives = (torch.from_numpy(a) for a in sampler.sample(size))
        total = 0.0
        for start in range(0, size, batch_size):
            batch = slice(start, start + batch_size)
            loss = net.loss(users[batch], positives[batch], negatives[batch])
            for optimiser in optimisers:
                optimiser.zero_grad(set_to_none=True)
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
            total += float(loss.detach()) * len(users[batch])
        history.append(total / max(1, size))
        logger.debug("visrec: %s epoch %d/%d loss %.4f", type(net).__name__, epoch + 1, epochs, history[-1])
        if progress:
            progress(epoch, history[-1])
    return history


class BPRNet(nn.Module):
    """``beta_i + gamma_u . gamma_i`` with the BPR loss and L2 on the batch's rows."""

    def __init__(self, n_users: int, n_items: int, factors: int, reg: float, reg_bias: float,
                 generator: torch.Generator, init_std: float = 0.1) -> None:
        super().__init__()
        self.reg, self.reg_bias = reg, reg_bias
        self.user_factors = sparse_embedding(n_users, factors, init_std, generator)
        self.item_factors = sparse_embedding(n_items, factors, init_std, generator)
        self.item_bias = sparse_embedding(n_items, 1, 0.0, generator)

    def loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        gamma_u = self.user_factors(users)
        gamma_i, gamma_j = self.item_factors(positives), self.item_factors(negatives)
        beta_i, beta_j = self.item_bias(positives)[:, 0], self.item_bias(negatives)[:, 0]
        x = (gamma_u * (gamma_i - gamma_j)).sum(1) + beta_i - beta_j
        l2 = (gamma_u.square().sum(1) + gamma_i.square().sum(1) + gamma_j.square().sum(1)).mean()
        l2_bias = (beta_i.square() + beta_j.square()).mean()
        return F.softplus(-x).mean() + self.reg * l2 + self.reg_bias * l2_bias


def fold_in_mean(vectors: np.ndarray, items: np.ndarray, weights: np.ndarray, norm: float) -> np.ndarray:
    """Weighted mean of ``vectors[items]`` (H, D) rescaled to ``norm``: float32 (D,).

    A mean of item vectors is shorter than a trained user vector, so its taste term would
    weigh too little against the item biases; rescaling to the median norm of trained
    users gives a new user the same balance as a typical known one. Zero if no signal.
    """
    out = np.zeros(vectors.shape[1], dtype=np.float32)
    total = float(weights.sum()) if len(weights) else 0.0
    if total <= 0:
        return out
    mean = (weights[:, None].astype(np.float64) * vectors[items]).sum(0) / total
    length = float(np.linalg.norm(mean))
    if length > 0 and norm > 0:
        mean *= norm / length
    out[:] = mean
    return out


def median_norm(vectors: np.ndarray, rows: np.ndarray) -> float:
    """Median L2 norm of ``vectors[rows]`` (0 when there are none)."""
    if not len(rows):
        return 0.0
    return float(np.median(np.linalg.norm(vectors[rows], axis=1)))


class BPRRecommender(InnerProductRecommender):
    """BPR matrix factorisation.

    Serving vectors (D = factors + 1): user ``[gamma_u, 1]``, item ``[gamma_i, beta_i]``.
    A new user's ``gamma_u`` is the weighted mean of ``gamma_i`` over their history,
    rescaled to the median trained-user norm (see :func:`fold_in_mean`); users without
    training events get ``gamma_u = 0`` (item bias only, i.e. a popularity order).

    Args:
        factors: latent dimensions.
        epochs: passes, each drawing as many triples as there are (user, item) pairs.
        lr: Adam learning rate.
        reg: L2 weight on the factors of each triple.
        reg_bias: L2 weight on the item biases of each triple.
        batch_size: triples per optimisation step.
        samples_per_epoch: triples per epoch instead of the number of pairs.
        seed: seed of every random draw.
    """

    name = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        epochs: int = 20,
        lr: float = 0.01,
        reg: float = 1e-4,
        reg_bias: float = 1e-4,
        batch_size: int = 4096,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        self.factors, self.epochs, self.lr = int(factors), int(epochs), float(lr)
        self.reg, self.reg_bias = float(reg), float(reg_bias)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.loss_history: list[float] = []

    def fit(
        self,
        interactions: Interactions,
        item_features: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> BPRRecommender:
        matrix = interactions.matrix()
        if matrix.nnz == 0:
            raise ValueError("BPR needs at least one interaction")
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        net = BPRNet(interactions.n_users, interactions.n_items, self.factors, self.reg, self.reg_bias, generator)
        self.loss_history = train_bpr(
            net, TripleSampler(matrix, None, rng), epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, samples_per_epoch=self.samples_per_epoch, progress=progress,
        )
        gamma_u = net.user_factors.weight.detach().numpy().copy()
        gamma_i = net.item_factors.weight.detach().numpy()
        beta = net.item_bias.weight.detach().numpy()
        active_users = np.flatnonzero(np.diff(matrix.indptr) > 0)
        inactive = np.ones(interactions.n_users, dtype=bool)
        inactive[active_users] = False
        gamma_u[inactive] = 0.0  # never trained: no taste, bias-only order
        self.n_users, self.n_items = interactions.n_users, interactions.n_items
        self._users = np.hstack([gamma_u, np.ones((self.n_users, 1), np.float32)]).astype(np.float32)
        self._items = np.hstack([gamma_i, beta]).astype(np.float32)
        self._user_norm = median_norm(gamma_u, active_users)
        logger.info("visrec: BPR trained on %d pairs, final loss %.4f", matrix.nnz, self.loss_history[-1])
        return self

    def _fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        gamma = fold_in_mean(self._items[:, :self.factors], items, weights, self._user_norm)
        return np.concatenate([gamma, np.ones(1, np.float32)])

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_vectors": self._users, "item_vectors": self._items,
                "fold_in_norms": np.array([self._user_norm], dtype=np.float64)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._users = arrays["user_vectors"].astype(np.float32)
        self._items = arrays["item_vectors"].astype(np.float32)
        self._user_norm = float(arrays["fold_in_norms"][0])
