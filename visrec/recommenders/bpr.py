"""BPR matrix factorisation (Rendle et al., UAI 2009).

``score(u, i) = beta_i + gamma_u . gamma_i``, trained to rank an item the user engaged
with above one they did not: minimise ``-log sigmoid(score(u, i) - score(u, j))`` over
sampled triples (user u, positive i, negative j) with L2 regularisation.

Choices that matter here:

* positives are drawn in proportion to the summed event weight of the (user, item) pair,
  so a purchase (8) teaches eight times what a view (1) does, and recency decay already
  folded into the weights applies too;
* negatives are drawn uniformly from the negative pool (all items for BPR, interacted
  items for VBPR) and redrawn a few times when they hit one of the user's positives;
* one epoch is as many triples as there are distinct (user, item) pairs, drawn at once,
  then consumed in vectorised mini-batches (4096 triples by default);
* the gradients are written out (they are a few lines, see :meth:`BPRParameters.gradients`)
  and every array is stepped by a row-wise ("lazy") Adam, :class:`AdamTable`, which touches
  the batch's rows only, not 100k x factors parameters;
* the inner loop is numpy, not torch autograd. Measured on the project's shared 2-core
  host: torch's intra-op OpenMP threads turn each (4096 x 64) elementwise op into a
  10-20 ms thread rendezvous when other processes keep the cores busy (a 4096-triple BPR
  step took 320 ms, 65x its single-thread time), and the fix would be
  ``torch.set_num_threads(1)``, which is process-global and not ours to change in a shared
  Celery worker. numpy's elementwise ops are single-threaded; only VBPR's two
  (B, F) x (F, D'+1)-sized products (forward, and the gradient of E) go to BLAS;
* the parameters kept are the mean of the iterates at the end of each epoch of the second
  half (``average_from``, :class:`IterateAverage`): with a constant learning rate the last
  iterate carries the noise of its last batches. On the demo's shoppers (five seeds each,
  the same split) the average moved VBPR's Recall@20 from 0.549-0.621 (mean 0.592) to
  0.574-0.620 (0.597) and BPR's from 0.511-0.541 (0.519) to 0.510-0.540 (0.521); a
  learning rate decayed linearly to zero instead lowered BPR (0.496). A fit cut short by
  ``max_samples`` keeps its last iterate (see :func:`train_bpr`);
* all randomness comes from ``seed`` (one numpy ``Generator``): no global RNG is touched,
  and a fit is bit-for-bit repeatable.

Items nobody interacted with are only ever negatives, so they sink to the bottom: BPR
cannot recommend a new product; VBPR can.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp

from visrec.recommenders.base import InnerProductRecommender, Interactions, ProgressCallback

logger = logging.getLogger(__name__)

#: Times a negative that is one of the user's positives is redrawn.
_NEGATIVE_RETRIES = 4
#: BPR and VBPR keep the mean of their parameters over the second half of the epochs.
AVERAGE_FROM = 0.5


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


def random_table(rows: int, dim: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """float32 (rows, dim) drawn N(0, std) (zeros when ``std == 0``)."""
    if std <= 0:
        return np.zeros((rows, dim), dtype=np.float32)
    table = rng.standard_normal((rows, dim), dtype=np.float32)
    table *= std
    return table


def rowwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a * b).sum(1)`` for (B, D) arrays: (B,)."""
    return np.einsum("ij,ij->i", a, b)


class AdamTable:
    """A float32 (N, D) parameter array trained by Adam on the rows a step touches.

    "Lazy" Adam, as ``torch.optim.SparseAdam``: a step costs O(batch x D) whatever N is.
    Each row's value and both moments sit side by side in one (N, 3, D) array, so a step
    is one fancy-index read and one write of the touched rows (instead of six), and the
    gradients of rows repeated in a batch are summed with one sparse product.

    Attributes:
        value: float32 (N, D) view of the parameter (read it, never rebind it).
    """

    def __init__(self, initial: np.ndarray, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        initial = np.asarray(initial, dtype=np.float32)
        self.state = np.zeros((initial.shape[0], 3, initial.shape[1]), dtype=np.float32)
        self.state[:, 0] = initial
        self.value = self.state[:, 0]
        self.betas, self.eps, self.t = betas, eps, 0

    def step(self, rows: np.ndarray | None, grad: np.ndarray, lr: float) -> None:
        """Applies ``grad``: float32 (B, D) for ``value[rows]`` (rows int64 (B,), repeats
        allowed), or (N, D) for the whole array when ``rows`` is None."""
        self.t += 1
        beta1, beta2 = self.betas
        correction = np.float32(lr * math.sqrt(1 - beta2 ** self.t) / (1 - beta1 ** self.t))
        if rows is None:
            unique, state, summed = None, self.state, grad
        else:
            unique, inverse = np.unique(rows, return_inverse=True)
            summed = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (inverse, np.arange(len(rows)))), shape=(len(unique), len(rows))
            ) @ grad  # (n_unique, D): gradients of repeated rows added up
            state = self.state[unique]
        value, m, v = state[:, 0], state[:, 1], state[:, 2]
        buffer = np.multiply(summed, np.float32(1 - beta1))
        m *= np.float32(beta1)
        m += buffer
        np.square(summed, out=buffer)
        buffer *= np.float32(1 - beta2)
        v *= np.float32(beta2)
        v += buffer
        np.sqrt(v, out=buffer)
        buffer += np.float32(self.eps)
        np.divide(m, buffer, out=buffer)
        buffer *= correction
        value -= buffer
        if unique is not None:
            self.state[unique] = state


#: Gradients of one batch: array name -> (rows of that array, or None for all; gradient).
Gradients = dict[str, tuple["np.ndarray | None", np.ndarray]]


class BPRParameters:
    """The arrays of ``beta_i + gamma_u . gamma_i`` and the BPR gradients of a batch.

    Two :class:`AdamTable` s, so that a step reads and writes each touched row once:
    ``users`` = ``[gamma_u | extra]`` (U, K + user_extra) and ``items`` = ``[gamma_i | beta_i]``
    (I, K + 1); VBPR keeps ``theta_u`` in the user table's extra columns. All float32,
    stepped in place by :func:`train_bpr`.
    """

    def __init__(self, n_users: int, n_items: int, factors: int, reg: float, reg_bias: float,
                 rng: np.random.Generator, init_std: float = 0.1, user_extra: int = 0) -> None:
        self.factors = factors
        self.reg, self.reg_bias = np.float32(reg), np.float32(reg_bias)
        self._tables: dict[str, AdamTable] = {}
        self.users = self._table("users", random_table(n_users, factors + user_extra, init_std, rng))
        self.items = self._table("items", np.hstack([random_table(n_items, factors, init_std, rng),
                                                     np.zeros((n_items, 1), np.float32)]))  # beta_i starts at 0

    def _table(self, name: str, initial: np.ndarray) -> np.ndarray:
        """Registers a trained array; returns its (N, D) value view, updated in place."""
        self._tables[name] = AdamTable(initial)
        return self._tables[name].value

    def tables(self) -> dict[str, AdamTable]:
        """Every trained array, by the names :meth:`gradients` uses."""
        return self._tables

    @property
    def user_factors(self) -> np.ndarray:
        """gamma_u: float32 (U, K) view."""
        return self.users[:, :self.factors]

    @property
    def item_factors(self) -> np.ndarray:
        """gamma_i: float32 (I, K) view."""
        return self.items[:, :self.factors]

    @property
    def item_bias(self) -> np.ndarray:
        """beta_i: float32 (I,) view."""
        return self.items[:, self.factors]

    def gradients(self, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> tuple[float, Gradients]:
        """Loss and gradients of a batch of triples (each int64 (B,)).

        ``loss = mean_b softplus(-x_b) + reg * mean_b(|gamma_u|^2 + |gamma_i|^2 + |gamma_j|^2)
        + reg_bias * mean_b(beta_i^2 + beta_j^2)`` with ``x = score(u, i) - score(u, j)``;
        ``d loss / d x = -sigmoid(-x) / B``.
        """
        k, b = self.factors, len(users)
        items = np.concatenate([positives, negatives])
        user_rows, item_rows = self.users[users], self.items[items]  # (B, K+extra), (2B, K+1)
        gamma_u = user_rows[:, :k]
        gamma_i, gamma_j = item_rows[:b, :k], item_rows[b:, :k]
        beta_i, beta_j = item_rows[:b, k], item_rows[b:, k]
        gap = gamma_i - gamma_j
        x = rowwise_dot(gamma_u, gap) + beta_i - beta_j + self._visual_forward(user_rows, positives, negatives)
        dx = np.float32(-0.5 / b) * (1 - np.tanh(np.float32(0.5) * x))  # -sigmoid(-x) / B, overflow-free
        two_reg, two_reg_bias = np.float32(2 / b) * self.reg, np.float32(2 / b) * self.reg_bias
        grad_users = np.empty_like(user_rows)
        grad_users[:, :k] = dx[:, None] * gap + two_reg * gamma_u
        grad_items = np.empty_like(item_rows)
        np.multiply(dx[:, None], gamma_u, out=grad_items[:b, :k])
        np.negative(grad_items[:b, :k], out=grad_items[b:, :k])
        grad_items[:, :k] += two_reg * item_rows[:, :k]
        grad_items[:b, k], grad_items[b:, k] = dx, -dx
        grad_items[:, k] += two_reg_bias * item_rows[:, k]
        grads: Gradients = {"users": (users, grad_users), "items": (items, grad_items)}
        loss = float(np.logaddexp(0, -x).mean())
        loss += float(self.reg * (np.square(gamma_u).sum() + np.square(item_rows[:, :k]).sum()) / b)
        loss += float(self.reg_bias * np.square(item_rows[:, k]).sum() / b)
        loss += self._visual_backward(user_rows, dx, grad_users, grads)
        return loss, grads

    def _visual_forward(self, user_rows: np.ndarray, positives: np.ndarray,
                        negatives: np.ndarray) -> np.ndarray | float:
        """The visual part of ``x`` (B,) (VBPR); 0 here."""
        return 0.0

    def _visual_backward(self, user_rows: np.ndarray, dx: np.ndarray, grad_users: np.ndarray,
                         grads: Gradients) -> float:
        """Fills the visual gradients (VBPR) and returns their L2 penalty; 0 here."""
        return 0.0


class IterateAverage:
    """Running mean of every trained array over the epochs it is shown (Polyak-Ruppert
    averaging, as in stochastic weight averaging): :meth:`apply` writes the mean back.

    With a constant learning rate the last iterate of stochastic training keeps bouncing
    around the optimum by the noise of its last batches; the mean of the late iterates sits
    nearer to it and depends much less on the seed. Means are float32, one copy of each
    array's values (not of its Adam moments).
    """

    def __init__(self, tables: dict[str, AdamTable]) -> None:
        self.tables = tables
        self.means: dict[str, np.ndarray] = {}
        self.count = 0

    def add(self) -> None:
        """Takes the arrays' current values into the mean."""
        self.count += 1
        for name, table in self.tables.items():
            mean = self.means.get(name)
            if mean is None:
                self.means[name] = table.value.copy()
            else:
                mean += (table.value - mean) / np.float32(self.count)

    def apply(self) -> None:
        """Replaces every array's values by their mean (nothing if fewer than two were taken)."""
        if self.count > 1:
            for name, table in self.tables.items():
                table.value[:] = self.means[name]


def first_averaged_epoch(epochs: int, average_from: float | None) -> int:
    """Index of the first epoch whose parameters enter the average: the last
    ``1 - average_from`` of the epochs; ``epochs`` (none averaged) when ``average_from`` is None."""
    if average_from is None:
        return epochs
    return min(epochs - 1, max(0, int(float(average_from) * epochs)))


def train_bpr(
    parameters: BPRParameters,
    sampler: TripleSampler,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    samples_per_epoch: int | None,
    progress: ProgressCallback | None,
    max_samples: int | None = None,
    average_from: float | None = None,
) -> list[float]:
    """Runs BPR epochs, every array of ``parameters`` stepped by its :class:`AdamTable`.

    Args:
        max_samples: triples drawn over the whole fit at most: on large data there are
            fewer epochs (at least one), so that a fit's cost stays bounded.
        average_from: the parameters kept are the mean of those at the end of each epoch
            from this share of the epochs on (0.5: the second half; :class:`IterateAverage`);
            None keeps the last epoch's, as does a fit that ``max_samples`` cut short.

    Returns:
        the mean loss of every epoch (of the iterates, not of the average).
    """
    tables = parameters.tables()
    size = int(samples_per_epoch or len(sampler))
    planned, epochs = int(epochs), budget_epochs(epochs, size, max_samples)
    # A fit cut short by max_samples is still improving at its end, and the mean of its late
    # iterates lags behind the last one (1,000,000 synthetic events, 7 of 40 epochs: VBPR's
    # Recall@20 0.195 averaged against 0.199): it keeps its last iterate.
    average = IterateAverage(tables)
    first_averaged = first_averaged_epoch(epochs, average_from if epochs == planned else None)
    history: list[float] = []
    for epoch in range(epochs):
        users, positives, negatives = sampler.sample(size)
        total = 0.0
        for start in range(0, size, batch_size):
            batch = slice(start, start + batch_size)
            loss, grads = parameters.gradients(users[batch], positives[batch], negatives[batch])
            for name, (rows, grad) in grads.items():
                tables[name].step(rows, grad, lr)
            total += loss * len(users[batch])
        history.append(total / max(1, size))
        logger.debug("visrec: %s epoch %d/%d loss %.4f", type(parameters).__name__, epoch + 1, epochs, history[-1])
        if progress:
            progress(epoch, history[-1])
        if epoch >= first_averaged:
            average.add()
    average.apply()
    return history


def budget_epochs(epochs: int, per_epoch: int, max_samples: int | None) -> int:
    """``epochs``, fewer (at least 1) where ``epochs * per_epoch`` triples exceed ``max_samples``."""
    if not max_samples:
        return int(epochs)
    return max(1, min(int(epochs), int(max_samples) // max(1, int(per_epoch))))


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
        max_samples: triples over the whole fit at most (fewer epochs on large data).
        average_from: keep the mean of the parameters over the epochs from this share of
            the fit on (see :func:`train_bpr`); None: the last epoch's.
        seed: seed of every random draw.
    """

    name = "bpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        epochs: int = 20,
        lr: float = 0.01,
        reg: float = 0.01,
        reg_bias: float = 0.01,
        batch_size: int = 4096,
        samples_per_epoch: int | None = None,
        max_samples: int | None = None,
        average_from: float | None = AVERAGE_FROM,
        seed: int = 0,
    ) -> None:
        self.factors, self.epochs, self.lr = int(factors), int(epochs), float(lr)
        self.average_from = None if average_from is None else float(average_from)
        self.reg, self.reg_bias = float(reg), float(reg_bias)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.max_samples = None if max_samples is None else int(max_samples)
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
        net = BPRParameters(interactions.n_users, interactions.n_items, self.factors, self.reg, self.reg_bias, rng)
        self.loss_history = train_bpr(
            net, TripleSampler(matrix, None, rng), epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, samples_per_epoch=self.samples_per_epoch, progress=progress, max_samples=self.max_samples,
            average_from=self.average_from,
        )
        gamma_u = net.user_factors.copy()
        gamma_i, beta = net.item_factors.copy(), net.item_bias.copy()[:, None]
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
