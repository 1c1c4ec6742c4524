"""DP-SGD training of an item-based BPR model, one shopper per sample (torch + Opacus).

Pure torch/numpy, no ORM; imported lazily by :mod:`visrec.recommenders.dp_itembpr` so that
serving processes never import torch.

Why this model and not DP-SGD on BPR/VBPR:

* DP-SGD protects one *sample*. On BPR triples a sample is one (shopper, positive,
  negative) triple, so the guarantee would be per triple, not per shopper. Here every
  sample of DP-SGD is one shopper: their bounded history and ``pairs`` (positive, negative)
  pairs drawn from it; Opacus clips the gradient of that shopper's whole loss to
  ``max_grad_norm``, which bounds the influence of everything the shopper did.
* A per-shopper embedding table would be a trained parameter too, noised at every step and
  released with the model. Here every trained parameter is item-side: a shopper's vector
  is computed from their own history (``mean_j q_j`` and ``E mean_j f_j``), never learned.

The score (the same layout as VBPR's serving vectors)::

    score(u, i) = b_i + beta' . f_i + (sum_j w_j q_j / sum_j w_j) . q_i
                                    + (E sum_j w_j f_j / sum_j w_j) . (E f_i)

over the shopper's history ``j`` (at most ``max_history`` items, the most weighted; ``w_j``
their summed event weights), with item factors ``q`` (n_items, K), item biases ``b``, a
projection ``E`` (D', F) of the fixed CNN vectors ``f`` and a visual bias ``beta'`` (F,).
The history and the candidates share ``q`` and ``E``, so item-to-item similarity is
``q_j . q_i + f_j^T E^T E f_i``; ``E`` starts as the catalogue's top principal directions
(:func:`principal_directions`), so
before any training the visual term is the cosine similarity of the history's looks to the
item's (the session model), and DP noise degrades the model towards that, not towards
chance. In training the positive is left out of its own history (as in FISM), so the model
learns to predict an item from the *other* items, not to recognise the item itself.

Differential privacy (when ``epsilon`` is given):

* Poisson sampling of shoppers (Opacus ``UniformWithReplacementSampler``, rate
  ``batch_shoppers / n_shoppers``);
* per-shopper clipping by ghost clipping (``GradSampleModuleFastGradientClipping``: exact
  per-sample gradient norms of the ``nn.Embedding`` and ``nn.Linear`` layers without
  materialising (B, n_items, K) per-sample gradients; each layer is called once per forward
  because Opacus does not support parameter tying with ghost clipping);
* Gaussian noise of std ``noise_multiplier * max_grad_norm`` on the summed clipped gradient
  (``DPOptimizerFastGradientClipping``) with ``noise_multiplier`` chosen by Opacus's
  ``get_noise_multiplier`` so that the accountant's epsilon after all steps is at most the
  target; the epsilon actually spent is read back from the accountant;
* the update is SGD with momentum (``dp_lr``), not Adam as without DP: Adam divides every
  coordinate by its own recent magnitude, so on the many item rows whose gradient is
  mostly noise it turns the noise into full-size steps; with SGD successive noise draws
  average out. The mean clipped gradient is small (each shopper contributes at most
  ``max_grad_norm``), hence a large default ``dp_lr`` (3, tuned on the demo data for the
  pictures-only model that DP trains by default; see ``per_item``);
* the shopper sampling and the noise draw from fresh OS entropy, never from ``seed``: a
  known noise seed would void the guarantee. ``seed`` drives the initialisation and the
  (positive, negative) pair draws only, whose outcome the clipping bounds anyway.
* Everything that depends on which items were touched is avoided: negatives are drawn from
  the whole catalogue (public), and no item is treated differently for being "warm".

Threads: torch's intra-op thread pool is set to ``threads`` (default 1) for the duration of
training and restored afterwards (see :mod:`visrec.recommenders.bpr` on why several torch
threads are slow on a busy shared host).
"""
from __future__ import annotations

import contextlib
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visrec.recommenders.base import ProgressCallback

#: Times a negative that is in the shopper's history is redrawn.
_NEGATIVE_RETRIES = 4


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(n)`` and restores the previous value.

    The setting is process-wide: use it in a process that trains one thing at a time (a
    Celery prefork worker, a management command), not around concurrent torch work.
    """
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class ShopperHistories:
    """Each shopper's bounded history as padded arrays (one row per shopper with events).

    Attributes:
        users: int64 (S,) user index of each row.
        items: int64 (S, H) item indices, the most weighted first; padding = ``n_items``.
        weights: float32 (S, H) summed event weights; 0 on padding.
    """

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray


@dataclass
class PrivacyReport:
    """What DP-SGD spent: ``epsilon`` for ``delta`` (None for training without DP)."""

    dp: bool
    epsilon: float | None
    delta: float | None
    noise_multiplier: float
    max_grad_norm: float | None
    sample_rate: float
    steps: int
    shoppers: int
    accountant: str

    def as_dict(self) -> dict:
        return asdict(self)


class ShopperBatchModel(nn.Module):
    """Per-shopper BPR loss of the item-side parameters (see the module docstring).

    Args:
        n_items: catalogue size; row ``n_items`` of the tables is the padding row.
        features: float32 (n_items, F) fixed CNN vectors.
        factors: K, item factors.
        visual_factors: D', visual taste dimensions.
        generator: torch generator of the initialisation.
    """

    def __init__(self, n_items: int, features: np.ndarray, factors: int, visual_factors: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        padded = np.vstack([features, np.zeros((1, features.shape[1]), np.float32)])
        self.register_buffer("features", torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)))
        self.visual_factors = visual_factors
        self.embedding = nn.Embedding(n_items + 1, factors)          # q
        self.bias = nn.Embedding(n_items + 1, 1)                     # b
        self.looks = nn.Linear(features.shape[1], visual_factors + 1, bias=False)  # [E ; beta']
        with torch.no_grad():
            self.embedding.weight.normal_(0.0, 0.1, generator=generator)
            self.bias.weight.zero_()
            self.looks.weight.zero_()
            self.looks.weight[:visual_factors] = torch.from_numpy(principal_directions(features, visual_factors))

    def forward(self, history: torch.Tensor, weights: torch.Tensor, slots: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        """Mean BPR loss of each shopper: float32 (B,).

        Args:
            history: int64 (B, H) history items (padding = n_items).
            weights: float32 (B, H) their weights (0 on padding).
            slots: int64 (B, m) positions in ``history`` of the positives.
            negatives: int64 (B, m) negative items.
        """
        b, h = history.shape
        m = slots.shape[1]
        d = self.visual_factors
        positives = torch.gather(history, 1, slots)                           # (B, m)
        w_pos = torch.gather(weights, 1, slots)                                # (B, m)
        remaining = weights.sum(1, keepdim=True) - w_pos                       # (B, m)
        has_rest = remaining > 1e-6
        scale = torch.where(has_rest, 1.0 / remaining.clamp_min(1e-6), torch.zeros_like(remaining))

        # The history's looks without the positive (constants: the CNN vectors are fixed).
        feats = self.features[history]                                         # (B, H, F)
        feat_sum = (weights.unsqueeze(-1) * feats).sum(1, keepdim=True)        # (B, 1, F)
        feat_rest = (feat_sum - w_pos.unsqueeze(-1) * self.features[positives]) * scale.unsqueeze(-1)
        looks = self.looks(torch.cat([feat_rest, self.features[positives], self.features[negatives]], 1))
        theta, pos_looks, neg_looks = looks[:, :m, :d], looks[:, m:2 * m], looks[:, 2 * m:]

        factors = self.embedding(torch.cat([history, negatives], 1))           # (B, H + m, K)
        q_hist, q_neg = factors[:, :h], factors[:, h:]
        q_sum = (weights.unsqueeze(-1) * q_hist).sum(1, keepdim=True)          # (B, 1, K)
        q_pos = torch.gather(q_hist, 1, slots.unsqueeze(-1).expand(-1, -1, q_hist.shape[-1]))
        taste = (q_sum - w_pos.unsqueeze(-1) * q_pos) * scale.unsqueeze(-1)    # (B, m, K)

        biases = self.bias(torch.cat([positives, negatives], 1)).squeeze(-1)   # (B, 2m)
        x = ((taste * (q_pos - q_neg)).sum(-1)
             + (theta * (pos_looks[..., :d] - neg_looks[..., :d])).sum(-1)
             + pos_looks[..., d] - neg_looks[..., d]
             + biases[:, :m] - biases[:, m:])
        return F.softplus(-x).mean(1)


def principal_directions(features: np.ndarray, count: int) -> np.ndarray:
    """float32 (count, F): orthonormal rows spanning the catalogue's main visual directions.

    ``E`` starts here, so ``(E f_j) . (E f_i)`` starts as the inner product of the CNN
    vectors within their top ``count`` principal directions (uncentred, i.e. of the second
    moment ``f^T f``): the session model's similarity. The catalogue is public, so this
    costs no privacy. Rows beyond F are 0.
    """
    f = np.asarray(features, dtype=np.float64)
    values, vectors = np.linalg.eigh(f.T @ f)
    top = vectors[:, np.argsort(-values)[:count]].T
    out = np.zeros((count, f.shape[1]), dtype=np.float32)
    out[:len(top)] = top
    return out


def sample_pairs(items: np.ndarray, weights: np.ndarray, n_items: int, pairs: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positive slots (drawn in proportion to weight) and negatives for a batch of shoppers.

    Args:
        items: int64 (B, H) padded histories; weights: float32 (B, H).

    Returns:
        slots int64 (B, pairs) positions in ``items``; negatives int64 (B, pairs), drawn
        uniformly from the catalogue and redrawn a few times when in the history.
    """
    cum = np.cumsum(weights, axis=1, dtype=np.float64)
    draws = rng.random((len(items), pairs)) * cum[:, -1:]
    slots = (cum[:, None, :] <= draws[:, :, None]).sum(-1)
    slots = np.minimum(slots, (weights > 0).sum(1, keepdims=True) - 1).astype(np.int64)
    negatives = rng.integers(0, n_items, size=(len(items), pairs), dtype=np.int64)
    for _ in range(_NEGATIVE_RETRIES):
        hit = (negatives[:, :, None] == items[:, None, :]).any(-1)
        if not hit.any():
            break
        negatives[hit] = rng.integers(0, n_items, size=int(hit.sum()), dtype=np.int64)
    return slots, negatives


def default_delta(shoppers: int) -> float:
    """``1 / n^1.1``: below one over the number of shoppers, as DP practice requires."""
    return 1.0 / max(shoppers, 2) ** 1.1


def train_item_side(
    histories: ShopperHistories,
    features: np.ndarray,
    *,
    factors: int,
    visual_factors: int,
    epochs: int,
    lr: float,
    dp_lr: float,
    weight_decay: float,
    batch_shoppers: int,
    pairs: int,
    epsilon: float | None,
    delta: float | None,
    max_grad_norm: float,
    accountant: str,
    seed: int,
    per_item: bool = True,
    threads: int = 1,
    progress: ProgressCallback | None = None,
) -> tuple[dict[str, np.ndarray], PrivacyReport, list[float]]:
    """Trains the item-side parameters, with DP-SGD when ``epsilon`` is given.

    Args:
        histories: the shoppers (one DP-SGD sample each).
        features: float32 (n_items, F) fixed CNN vectors of the catalogue.
        epochs: passes; one pass is ``1 / sample_rate`` steps.
        batch_shoppers: expected shoppers per step (Poisson sampling).
        pairs: (positive, negative) pairs per shopper per step.
        epsilon: target epsilon (None: plain training, no clipping, no noise).
        delta: target delta (None: :func:`default_delta`).
        max_grad_norm: per-shopper gradient bound C.
        accountant: Opacus accountant, "rdp" or "prv".
        per_item: learn per-item factors and biases; False learns the projection of the
            pictures only (D'+1 by F numbers, shared by all items: far less noise under DP).

    Returns:
        ``({"factors": (n_items, K), "biases": (n_items,), "looks": (D'+1, F)}, report, losses)``.
    """
    n_items = features.shape[0]
    shoppers = len(histories.users)
    if shoppers == 0:
        raise ValueError("no shopper has events to learn from")
    rng = np.random.default_rng(seed)
    sample_rate = min(1.0, batch_shoppers / shoppers)
    steps_per_epoch = max(1, round(1.0 / sample_rate))
    steps = epochs * steps_per_epoch
    dp = epsilon is not None
    if dp and (epsilon <= 0 or steps < 1):
        raise ValueError("DP-SGD needs a positive epsilon and at least one epoch")
    delta = (default_delta(shoppers) if delta is None else float(delta)) if dp else None
    losses: list[float] = []
    with torch_threads(threads):
        model = ShopperBatchModel(n_items, features, factors, visual_factors,
                                  torch.Generator().manual_seed(seed))
        if not per_item:  # the pictures only: no per-item factors or biases are learned
            for table in (model.embedding, model.bias):
                table.weight.data.zero_()
                table.weight.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if dp:  # SGD: the noise of successive steps averages out (Adam would scale it up to lr per coordinate)
            optimiser = torch.optim.SGD(trainable, lr=dp_lr, momentum=0.9, weight_decay=weight_decay)
        else:
            optimiser = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
        items_t = torch.from_numpy(histories.items)
        weights_t = torch.from_numpy(histories.weights)
        if dp:
            from opacus.accountants import create_accountant
            from opacus.accountants.utils import get_noise_multiplier
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping
            from opacus.utils.uniform_sampler import UniformWithReplacementSampler

            noise_multiplier = get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                                    sample_rate=sample_rate, steps=steps, accountant=accountant)
            module = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="mean",
                                                          max_grad_norm=max_grad_norm, use_ghost_clipping=True)
            optimiser = DPOptimizerFastGradientClipping(
                optimiser, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                expected_batch_size=sample_rate * shoppers, loss_reduction="mean",
                generator=torch.Generator().manual_seed(secrets.randbits(63)))
            batches = iter(UniformWithReplacementSampler(
                num_samples=shoppers, sample_rate=sample_rate, steps=steps,
                generator=torch.Generator().manual_seed(secrets.randbits(63))))
            ledger = create_accountant(accountant)
        else:
            noise_multiplier = 0.0
            module = model
        for epoch in range(epochs):
            total, count = 0.0, 0
            if not dp:
                order = rng.permutation(shoppers)
                batches = iter(np.array_split(order, steps_per_epoch))
            for _ in range(steps_per_epoch):
                rows = torch.as_tensor(np.asarray(next(batches)), dtype=torch.int64)
                optimiser.zero_grad()
                if len(rows):
                    slots, negatives = sample_pairs(histories.items[rows.numpy()], histories.weights[rows.numpy()],
                                                    n_items, pairs, rng)
                    per_shopper = module(items_t[rows], weights_t[rows], torch.from_numpy(slots),
                                         torch.from_numpy(negatives))
                    total += float(per_shopper.detach().sum())
                    count += len(rows)
                    if dp:
                        with warnings.catch_warnings():  # Opacus's hooks on modules whose inputs are indices
                            warnings.filterwarnings("ignore", message="Full backward hook is firing")
                            DPTensorFastGradientClipping(module, optimiser, per_shopper, "mean").backward()
                    else:
                        per_shopper.mean().backward()
                elif dp:  # an empty Poisson batch is still a step: noise only
                    for parameter in trainable:
                        parameter.grad = torch.zeros_like(parameter)
                else:
                    continue
                optimiser.step()
                if dp:
                    ledger.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
            losses.append(total / max(count, 1))
            if progress is not None:
                progress(epoch, losses[-1])
        spent = float(ledger.get_epsilon(delta)) if dp else None
    report = PrivacyReport(dp=dp, epsilon=spent, delta=delta, noise_multiplier=float(noise_multiplier),
                           max_grad_norm=float(max_grad_norm) if dp else None, sample_rate=float(sample_rate),
                           steps=int(steps), shoppers=int(shoppers), accountant=accountant if dp else "")
    state = {
        "factors": model.embedding.weight.detach()[:n_items].numpy().copy(),
        "biases": model.bias.weight.detach()[:n_items, 0].numpy().copy(),
        "looks": model.looks.weight.detach().numpy().copy(),
    }
    return state, report, losses
