"""VBPR: visual Bayesian personalised ranking (He & McAuley, AAAI 2016).

``score(u, i) = beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i``

where ``f_i`` (F,) is the fixed CNN vector of item i, ``E`` (F, D') a learned projection to a
visual taste space, ``theta_u`` (D',) the user's visual taste and ``beta'`` (F,) a visual
bias ("what looks popular"). Trained with the BPR loss and the numpy training loop of
:mod:`visrec.recommenders.bpr` (why numpy: see there), positives drawn in proportion to
event weights. ``E`` and ``beta'`` are trained in the catalogue's top principal directions
of the CNN vectors (``feature_dims``, 128 by default) and mapped back to the full vector
for serving.

Cold start. The visual terms reach every catalogue item, also those nobody touched:

* items absent from training keep ``gamma_i = 0`` and ``beta_i = 0``, never learned from
  noise: negatives are drawn from interacted ("warm") items only, so cold items never
  enter a triple, and their per-item parameters are set to 0 after training;
* the warm item biases are then centred (mean 0 over warm items). BPR is invariant to a
  shift of all biases, so this changes no warm-vs-warm order, but it puts a cold item's
  ``beta_i = 0`` at the level of an average warm item instead of wherever Adam left the
  warm ones: cold items compete on their looks (``theta_u . E f_i + beta' . f_i``) and are
  not ranked last because of a bias they could never earn;
* products added after training get serving vectors from their CNN vector alone
  (:meth:`VBPRRecommender.item_vectors_for_features`).

What that gives, measured on the demo's simulated shop (3,000 products, 217 cold; 18
purchases of cold products in the test week; 20 epochs): cold products are scored and
compete, the visual term dominates the score (std 0.88 against 0.35 for the collaborative
term and 0.29 for the biases), and among the cold products the bought ones rank high
(median place 10 of 217); but among all products they come at places 32 to 913, behind
look-alike warm products with a record. Neither mapping ``gamma_i`` and ``beta_i`` of cold
items from their visual neighbours (ridge or kNN) nor an optimistic cold bias (+1 to +2
standard deviations) moved more than one of them into a top 20. Ranking by expected
relevance does that, rightly: a new product has no evidence of being more than average.
Getting new products seen is exploration, which the served list does
(``RECOMMENDER_NEW_PRODUCT_SHARE`` in :mod:`visrec.services.foryou.recommend`).

New shoppers (fold-in): ``theta_u`` is the weighted mean of ``E f_i`` and ``gamma_u`` the
weighted mean of ``gamma_i`` over the history, each rescaled to the median norm of trained
users (see :func:`visrec.recommenders.bpr.fold_in_mean`).
"""
from __future__ import annotations

import logging

import numpy as np

from visrec.recommenders.base import InnerProductRecommender, Interactions, ProgressCallback, item_features_for
from visrec.recommenders.bpr import (
    AVERAGE_FROM,
    BPRParameters,
    Gradients,
    TripleSampler,
    fold_in_mean,
    median_norm,
    random_table,
    rowwise_dot,
    train_bpr,
)

logger = logging.getLogger(__name__)


class VBPRParameters(BPRParameters):
    """BPR's arrays plus ``theta_u`` (in the user table, after ``gamma_u``) and ``[E | beta']``.

    A batch projects only its own items' features: ``(f_i - f_j) @ [E | beta']``, one
    (B, F) x (F, D'+1) product, never the whole catalogue.
    """

    def __init__(self, n_users: int, n_items: int, features: np.ndarray, factors: int, visual_factors: int,
                 reg: float, reg_bias: float, reg_visual: float, rng: np.random.Generator,
                 init_std: float = 0.1) -> None:
        super().__init__(n_users, n_items, factors, reg, reg_bias, rng, init_std, user_extra=visual_factors)
        self.features = features  # f (n_items, F) float32, fixed
        self.reg_visual = np.float32(reg_visual)
        # [E | beta'] (F, D'+1): the projection and the visual bias as one matrix.
        self.visual = self._table("visual", np.hstack([random_table(features.shape[1], visual_factors, init_std, rng),
                                                       np.zeros((features.shape[1], 1), np.float32)]))
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def user_visual(self) -> np.ndarray:
        """theta_u: float32 (U, D') view."""
        return self.users[:, self.factors:]

    @property
    def projection(self) -> np.ndarray:
        """E: float32 (F, D') view."""
        return self.visual[:, :-1]

    @property
    def visual_bias(self) -> np.ndarray:
        """beta': float32 (F,) view."""
        return self.visual[:, -1]

    def _visual_forward(self, user_rows: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        difference = np.take(self.features, positives, axis=0)  # (B, F)
        difference -= np.take(self.features, negatives, axis=0)
        # (B, D'+1): E (f_i - f_j) and beta' . (f_i - f_j). The copy matters: BLAS on the
        # strided view of the Adam state was 2.5x slower than on a contiguous (F, D'+1).
        projected = difference @ np.ascontiguousarray(self.visual)
        self._cache = (difference, projected)
        return rowwise_dot(user_rows[:, self.factors:], projected[:, :-1]) + projected[:, -1]

    def _visual_backward(self, user_rows: np.ndarray, dx: np.ndarray, grad_users: np.ndarray,
                         grads: Gradients) -> float:
        assert self._cache is not None
        difference, projected = self._cache
        self._cache = None
        b = len(dx)
        theta_u = user_rows[:, self.factors:]
        two_reg = np.float32(2 / b) * self.reg
        grad_users[:, self.factors:] = dx[:, None] * projected[:, :-1] + two_reg * theta_u
        outer = np.empty((b, self.visual.shape[1]), dtype=np.float32)  # d x / d [E | beta'] per triple
        np.multiply(dx[:, None], theta_u, out=outer[:, :-1])
        outer[:, -1] = dx
        grads["visual"] = (None, difference.T @ outer + np.float32(2) * self.reg_visual * self.visual)
        return float(self.reg * np.square(theta_u).sum() / b + self.reg_visual * np.square(self.visual).sum())


def principal_basis(features: np.ndarray, dims: int | None) -> np.ndarray | None:
    """float32 (F, dims) top right singular vectors of ``features`` (I, F); None if ``dims``
    is None or not below F (nothing to reduce)."""
    if dims is None or dims >= min(features.shape):
        return None
    features = np.asarray(features, dtype=np.float32)
    # Eigenvectors of the (F, F) Gram matrix: one (F, I) x (I, F) product, cheap at 100k items.
    _, vectors = np.linalg.eigh((features.T @ features).astype(np.float64))  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)


class VBPRRecommender(InnerProductRecommender):
    """VBPR with cold-start scoring and fold-in for new users.

    Serving vectors (D = factors + visual_factors + 1), exact inner-product form:
    user ``[gamma_u, theta_u, 1]``, item ``[gamma_i, E f_i, beta_i + beta' . f_i]``.

    Args:
        factors: latent (non-visual) dimensions K.
        visual_factors: visual taste dimensions D'.
        epochs: passes, each drawing as many triples as there are (user, item) pairs.
        lr: Adam learning rate.
        reg: L2 weight on gamma_u, theta_u, gamma_i, gamma_j of each triple.
        reg_bias: L2 weight on the item biases of each triple.
        reg_visual: L2 weight on E and beta' (whole matrices, every step).
        feature_dims: E and beta' are trained on the item features' coordinates along
            their top ``feature_dims`` right singular vectors (truncated SVD of the
            catalogue's (I, F) features, not centred: VBPR sees only differences
            ``f_i - f_j``, so a shift of all features changes nothing), then mapped back to
            (F, D'): serving and new products use the full CNN vector as before. The CNN
            vector's dimensions are far from independent (on the demo the top 128 of 780
            directions hold 96% of the variance), and E is rank D' anyway; training it in
            the catalogue's principal subspace cuts the two (B, F)-sized products of a step
            by F / feature_dims (the fit takes about half the time) without a loss of recall
            measured on validation. None: every dimension.
        batch_size: triples per optimisation step.
        samples_per_epoch: triples per epoch instead of the number of pairs.
        max_samples: triples over the whole fit at most (fewer epochs on large data).
        average_from: keep the mean of the parameters over the epochs from this share of
            the fit on (see :func:`~visrec.recommenders.bpr.train_bpr`); None: the last epoch's.
        seed: seed of every random draw.
    """

    name = "vbpr"

    def __init__(
        self,
        *,
        factors: int = 64,
        visual_factors: int = 32,
        epochs: int = 20,
        lr: float = 0.01,
        reg: float = 0.01,
        reg_bias: float = 0.01,
        reg_visual: float = 1e-4,
        feature_dims: int | None = 128,
        batch_size: int = 4096,
        samples_per_epoch: int | None = None,
        max_samples: int | None = None,
        average_from: float | None = AVERAGE_FROM,
        seed: int = 0,
    ) -> None:
        self.factors, self.visual_factors = int(factors), int(visual_factors)
        self.average_from = None if average_from is None else float(average_from)
        self.epochs, self.lr = int(epochs), float(lr)
        self.reg, self.reg_bias, self.reg_visual = float(reg), float(reg_bias), float(reg_visual)
        self.feature_dims = None if feature_dims is None else int(feature_dims)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.max_samples = None if max_samples is None else int(max_samples)
        self.loss_history: list[float] = []

    def fit(
        self,
        interactions: Interactions,
        item_features: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> VBPRRecommender:
        features = item_features_for(interactions, item_features, "VBPR")
        matrix = interactions.matrix()
        if matrix.nnz == 0:
            raise ValueError("VBPR needs at least one interaction")
        warm = np.bincount(matrix.indices, minlength=interactions.n_items) > 0
        rng = np.random.default_rng(self.seed)
        basis = principal_basis(features, self.feature_dims)  # (F, F') or None
        reduced = features if basis is None else np.ascontiguousarray(features @ basis)
        net = VBPRParameters(interactions.n_users, interactions.n_items, reduced, self.factors,
                             self.visual_factors, self.reg, self.reg_bias, self.reg_visual, rng)
        sampler = TripleSampler(matrix, np.flatnonzero(warm), rng)  # cold items never enter a triple
        self.loss_history = train_bpr(
            net, sampler, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            samples_per_epoch=self.samples_per_epoch, progress=progress, max_samples=self.max_samples,
            average_from=self.average_from,
        )
        gamma_u, theta_u, gamma_i = net.user_factors.copy(), net.user_visual.copy(), net.item_factors.copy()
        beta = net.item_bias.astype(np.float64)
        projection, visual_bias = net.projection.copy(), net.visual_bias.copy()
        if basis is not None:  # back to the CNN vector's space: f @ (V E) = (f V) @ E
            projection, visual_bias = basis @ projection, basis @ visual_bias
        gamma_i[~warm] = 0.0
        beta[warm] -= beta[warm].mean()  # shift-invariant for BPR; cold items sit at the warm mean
        beta[~warm] = 0.0
        active_users = np.flatnonzero(np.diff(matrix.indptr) > 0)
        inactive = np.ones(interactions.n_users, dtype=bool)
        inactive[active_users] = False
        gamma_u[inactive] = 0.0
        theta_u[inactive] = 0.0
        self.n_users, self.n_items = interactions.n_users, interactions.n_items
        self._projection, self._visual_bias = projection, visual_bias
        self._warm = warm
        visual_items = self.item_vectors_for_features(features)
        visual_items[:, :self.factors] = gamma_i
        visual_items[:, -1] += beta.astype(np.float32)
        self._items = visual_items
        self._users = np.hstack([gamma_u, theta_u, np.ones((self.n_users, 1), np.float32)]).astype(np.float32)
        self._norms = np.array([median_norm(gamma_u, active_users), median_norm(theta_u, active_users)])
        logger.info("visrec: VBPR trained on %d pairs (%d warm of %d items), final loss %.4f",
                    matrix.nnz, int(warm.sum()), self.n_items, self.loss_history[-1])
        return self

    def item_vectors_for_features(self, features: np.ndarray) -> np.ndarray:
        """Serving vectors of items known by their looks only (e.g. added after training).

        Args:
            features: float32 (M, F) L2-normalised CNN vectors.

        Returns:
            float32 (M, D) rows ``[0, E f, beta' . f]`` (no collaborative part, no item bias).
        """
        self._check_fitted()
        features = np.asarray(features, dtype=np.float32)
        out = np.zeros((features.shape[0], self.factors + self.visual_factors + 1), dtype=np.float32)
        out[:, self.factors:self.factors + self.visual_factors] = features @ self._projection
        out[:, -1] = features @ self._visual_bias
        return out

    @property
    def warm_items(self) -> np.ndarray:
        """bool (n_items,): items that had interactions in training."""
        self._check_fitted()
        return self._warm

    def _fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        k, d = self.factors, self.visual_factors
        gamma = fold_in_mean(self._items[:, :k], items, weights, float(self._norms[0]))
        theta = fold_in_mean(self._items[:, k:k + d], items, weights, float(self._norms[1]))
        return np.concatenate([gamma, theta, np.ones(1, np.float32)])

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_vectors": self._users, "item_vectors": self._items,
            "projection": self._projection, "visual_bias": self._visual_bias,
            "warm_items": self._warm, "fold_in_norms": self._norms.astype(np.float64),
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._users = arrays["user_vectors"].astype(np.float32)
        self._items = arrays["item_vectors"].astype(np.float32)
        self._projection = arrays["projection"].astype(np.float32)
        self._visual_bias = arrays["visual_bias"].astype(np.float32)
        self._warm = arrays["warm_items"].astype(bool)
        self._norms = arrays["fold_in_norms"].astype(np.float64)
