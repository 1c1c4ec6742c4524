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
* embedding tables are stepped by a row-wise ("lazy") Adam, :class:`RowAdam`, so a step
  touches the batch's rows only, not 100k x factors parameters;
* all randomness comes from ``seed`` (a numpy ``Generator`` and a ``torch.Generator``):
  the global torch RNG and ``torch.set_num_threads`` are left alone.

Items nobody interacted with are only ever negatives, so they sink to the bottom: BPR
cannot recommend a new product; VBPR can.
"""
from __future__ import annotations

import logging
import math

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


def random_table(rows: int, dim: int, std: float, generator: torch.Generator) -> np.ndarray:
    """float32 (rows, dim) drawn N(0, std) from ``generator`` (zeros when ``std == 0``)."""
    table = torch.zeros(rows, dim)
    if std > 0:
        table.normal_(0.0, std, generator=generator)
    return table.numpy()


class RowAdam:
    """Adam on only the rows of a table that a step touches ("lazy" Adam, as SparseAdam).

    A step costs O(batch x dim) whatever the number of users or items. Written in numpy
    on purpose: torch's sparse gradients (``SparseAdam``) and ``index_add_`` on small
    tensors cost milliseconds per call on a busy 2-core machine (thread hand-offs for a
    few kB of work), which dominated training; here duplicate rows are summed with one
    single-threaded sparse product and the moments are read and written by fancy indexing.
    """

    def __init__(self, table: np.ndarray, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.table, self.lr, self.betas, self.eps = table, lr, betas, eps
        self.m = np.zeros_like(table)
        self.v = np.zeros_like(table)
        self.t = 0

    def step(self, rows: np.ndarray, grad: np.ndarray) -> None:
        """Applies ``grad`` float32 (B, dim), the gradient of ``table[rows]`` (rows int64 (B,))."""
        self.t += 1
        beta1, beta2 = self.betas
        unique, inverse = np.unique(rows, return_inverse=True)
        summed = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (inverse, np.arange(len(rows)))), shape=(len(unique), len(rows))
        ) @ grad  # (n_unique, dim): gradients of repeated rows added up
        m = self.m[unique]
        m *= beta1
        m += (1 - beta1) * summed
        v = self.v[unique]
        v *= beta2
        v += (1 - beta2) * np.square(summed)
        self.m[unique], self.v[unique] = m, v
        step = self.lr * math.sqrt(1 - beta2 ** self.t) / (1 - beta1 ** self.t)
        self.table[unique] -= (step * m / (np.sqrt(v) + self.eps)).astype(np.float32)


def train_bpr(
    net: BPRNet,
    sampler: TripleSampler,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    samples_per_epoch: int | None,
    progress: ProgressCallback | None,
) -> list[float]:
    """Runs BPR epochs on ``net``: its tables step with :class:`RowAdam`, its parameters with Adam.

    Returns:
        the mean loss of every epoch.
    """
    tables = net.tables()
    row_optimisers = {name: RowAdam(table, lr) for name, table in tables.items()}
    dense = list(net.parameters())
    optimiser = torch.optim.Adam(dense, lr=lr) if dense else None
    size = int(samples_per_epoch or len(sampler))
    history: list[float] = []
    for epoch in range(epochs):
        users, positives, negatives = sampler.sample(size)
        total = 0.0
        for start in range(0, size, batch_size):
            batch = slice(start, start + batch_size)
            u, i, j = users[batch], positives[batch], negatives[batch]
            lookups = net.lookups(u, i, j)
            rows = {name: torch.from_numpy(tables[name][index]).requires_grad_() for name, index in lookups.items()}
            loss = net.loss(rows, u, i, j)
            if optimiser is not None:
                optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if optimiser is not None:
                optimiser.step()
            for name, index in lookups.items():
                row_optimisers[name].step(index, rows[name].grad.numpy())
            total += float(loss.detach()) * len(u)
        history.append(total / max(1, size))
        logger.debug("visrec: %s epoch %d/%d loss %.4f", type(net).__name__, epoch + 1, epochs, history[-1])
        if progress:
            progress(epoch, history[-1])
    return history


class BPRNet(nn.Module):
    """``beta_i + gamma_u . gamma_i`` with the BPR loss and L2 on the batch's rows.

    Embedding tables are float32 numpy arrays (:meth:`tables`): each batch reads its rows
    into small leaf tensors, autograd gives their gradients and :class:`RowAdam` writes
    the rows back; ``nn.Parameter`` s (none here, E and beta' in VBPR) step with Adam.
    """

    def __init__(self, n_users: int, n_items: int, factors: int, reg: float, reg_bias: float,
                 generator: torch.Generator, init_std: float = 0.1) -> None:
        super().__init__()
        self.reg, self.reg_bias = reg, reg_bias
        self.user_factors = random_table(n_users, factors, init_std, generator)  # gamma_u (U, K)
        self.item_factors = random_table(n_items, factors, init_std, generator)  # gamma_i (I, K)
        self.item_bias = np.zeros((n_items, 1), dtype=np.float32)  # beta_i (I, 1), starts at 0

    def tables(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors, "item_bias": self.item_bias}

    def lookups(self, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of each table a batch reads: users (B,), items ``[positives, negatives]`` (2B,)."""
        items = np.concatenate([positives, negatives])
        return {"user_factors": users, "item_factors": items, "item_bias": items}

    def loss(self, rows: dict[str, torch.Tensor], users: np.ndarray, positives: np.ndarray,
             negatives: np.ndarray) -> torch.Tensor:
        """Mean BPR loss ``-log sigmoid(x_uij)`` of the batch plus the L2 penalty."""
        x, penalty = self.difference(rows, users, positives, negatives)
        return F.softplus(-x).mean() + penalty

    def difference(self, rows: dict[str, torch.Tensor], users: np.ndarray, positives: np.ndarray,
                   negatives: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_uij = score(u, i) - score(u, j)`` (B,) and the L2 penalty (scalar).

        ``rows`` holds the looked-up rows of each table, in the order of :meth:`lookups`.
        """
        b = len(users)
        gamma_u = rows["user_factors"]
        gamma_i, gamma_j = rows["item_factors"][:b], rows["item_factors"][b:]
        beta_i, beta_j = rows["item_bias"][:b, 0], rows["item_bias"][b:, 0]
        x = (gamma_u * (gamma_i - gamma_j)).sum(1) + beta_i - beta_j
        l2 = (gamma_u.square().sum(1) + gamma_i.square().sum(1) + gamma_j.square().sum(1)).mean()
        l2_bias = (beta_i.square() + beta_j.square()).mean()
        return x, self.reg * l2 + self.reg_bias * l2_bias


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
        gamma_u = net.user_factors.copy()
        gamma_i, beta = net.item_factors, net.item_bias
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
