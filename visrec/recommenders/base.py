"""The recommender contract: implicit feedback in, top-n item indices and scores out.

Pure numpy/scipy/torch, no ORM: the services map users and products to the dense
indices used here (``0..n_users-1``, ``0..n_items-1``) and back.

Every model follows one abstract contract, on the shape of the ``implicit`` library's
``RecommenderBase``: :meth:`Recommender.fit`, :meth:`Recommender.score`,
:meth:`Recommender.recommend` -> ``(ids, scores)``, :meth:`Recommender.recommend_batch`,
:meth:`Recommender.save` / :meth:`Recommender.load`. Models that score by one inner product
(popularity, BPR, VBPR) also expose :meth:`Recommender.user_vectors` and
:meth:`Recommender.item_vectors` so that serving can be a single pgvector query.

Persistence is ``np.savez`` of plain numeric arrays plus one JSON string array (class name,
hyper-parameters, sizes); loading uses ``np.load(allow_pickle=False)``, so a model file can
never run code.
"""
from __future__ import annotations

import abc
import inspect
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

import numpy as np
import scipy.sparse as sp

#: Version of the saved-file layout; bumped when the arrays a model writes change meaning.
FORMAT_VERSION = 1
_META_KEY = "__visrec_meta__"
#: Scores of users x items scored at once by ``recommend_batch`` and the evaluation's session
#: lists (bounds their memory: 8M cells are 32 MB of float32).
BATCH_CELLS = 8_000_000

#: ``progress(epoch, loss)``: called after every training epoch (``loss`` None if a model has none).
ProgressCallback = Callable[[int, float | None], None]


@dataclass
class Interactions:
    """Implicit feedback in index space: one row per event.

    Attributes:
        users: int64 (E,) user index, ``0..n_users-1``.
        items: int64 (E,) item index, ``0..n_items-1``.
        weights: float32 (E,) event weight (e.g. view 1, click 2, cart 4, purchase 8),
            already multiplied by any recency decay.
        times: float64 (E,) unix seconds of the event.
        n_users: number of users (rows of :meth:`matrix`).
        n_items: number of catalogue items (columns of :meth:`matrix`), including items
            nobody interacted with.
    """

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    times: np.ndarray
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        self.users = np.ascontiguousarray(self.users, dtype=np.int64).reshape(-1)
        self.items = np.ascontiguousarray(self.items, dtype=np.int64).reshape(-1)
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float32).reshape(-1)
        self.times = np.ascontiguousarray(self.times, dtype=np.float64).reshape(-1)
        self.n_users, self.n_items = int(self.n_users), int(self.n_items)
        n = len(self.users)
        if not (len(self.items) == len(self.weights) == len(self.times) == n):
            raise ValueError("users, items, weights and times must have the same length")
        if n and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise ValueError(f"user indices must lie in 0..{self.n_users - 1}")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(f"item indices must lie in 0..{self.n_items - 1}")
        if n and (not np.all(np.isfinite(self.weights)) or self.weights.min() < 0):
            raise ValueError("weights must be finite and non-negative")

    def __len__(self) -> int:
        return len(self.users)

    def matrix(self) -> sp.csr_matrix:
        """Summed event weights per (user, item): float32 CSR (n_users, n_items), sorted indices.

        Repeated events of one pair add up; pairs whose weights sum to 0 are dropped.
        """
        m = sp.csr_matrix(
            (self.weights, (self.users, self.items)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        m.sum_duplicates()
        m.eliminate_zeros()
        m.sort_indices()
        return m


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best items of every row, best first; ties go to the lower item index.

    Linear time per row (a partition, not a full sort), so it is cheap for 100k items.

    Args:
        scores: float32 (U, N) scores; ``-inf`` marks items that must not be returned.
        n: how many items per row (clipped to N).

    Returns:
        ids int64 (U, n) and scores float32 (U, n); where a row has fewer than ``n``
        finite scores the tail holds id ``-1`` and score ``-inf``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1:
        scores = scores[None, :]
    u, total = scores.shape
    n = max(0, min(int(n), total))
    if n == 0 or u == 0:
        return np.zeros((u, n), dtype=np.int64), np.zeros((u, n), dtype=np.float32)
    if n < total:
        # n-th largest value of every row; everything above it is in, ties fill by index.
        kth = -np.partition(-scores, n - 1, axis=1)[:, n - 1]
    else:
        kth = scores.min(axis=1)
    greater = scores > kth[:, None]
    ties = scores == kth[:, None]
    missing = n - greater.sum(axis=1, dtype=np.int64)
    keep = greater | (ties & (np.cumsum(ties, axis=1, dtype=np.int32) <= missing[:, None]))
    ids = np.nonzero(keep)[1].reshape(u, n).astype(np.int64)  # ascending index per row
    values = np.take_along_axis(scores, ids, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")  # stable: equal scores keep index order
    ids = np.take_along_axis(ids, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    ids[np.isneginf(values)] = -1
    return ids, values


def item_features_for(interactions: Interactions, item_features: np.ndarray | None, model: str) -> np.ndarray:
    """Checked image features of a visual model: C-contiguous float32 ``(n_items, F)``.

    Raises:
        ValueError: missing, misshapen or not finite.
    """
    if item_features is None:
        raise ValueError(f"{model} needs item_features: float32 (n_items, F) CNN vectors")
    features = np.ascontiguousarray(item_features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != interactions.n_items:
        raise ValueError(f"item_features must be (n_items={interactions.n_items}, F), got {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("item_features must be finite")
    return features


def _read_npz(source: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata dict and arrays of a file written by :meth:`Recommender.save`."""
    with np.load(source, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    if _META_KEY not in arrays:
        raise ValueError("not a visrec recommender file (no metadata)")
    meta = json.loads(str(arrays.pop(_META_KEY)))
    if meta.get("format") != "visrec.recommender" or int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"unsupported recommender file: {meta.get('format')} v{meta.get('version')}")
    return meta, arrays


def _as_history(
    n_items: int, history_items: np.ndarray | None, history_weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated history: int64 (H,) item indices and float32 (H,) weights (default 1)."""
    if history_items is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    items = np.asarray(history_items, dtype=np.int64).reshape(-1)
    if history_weights is None:
        weights = np.ones(len(items), dtype=np.float32)
    else:
        weights = np.asarray(history_weights, dtype=np.float32).reshape(-1)
        if len(weights) != len(items):
            raise ValueError("history_weights must have one weight per history item")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"history item indices must lie in 0..{n_items - 1}")
    return items, weights


class Recommender(abc.ABC):
    """Abstract recommender over dense user and item indices.

    Subclasses set :attr:`name` (the registry key written into saved files), take their
    hyper-parameters as keyword arguments of ``__init__`` stored under the same attribute
    names (they are saved as JSON), and implement :meth:`fit`, :meth:`score`,
    :meth:`_state` and :meth:`_restore`.

    Users: a *known* user is an index ``0..n_users-1`` seen by :meth:`fit`. Any other
    index (use ``-1``) is a new user, scored from ``history_items`` only; pass ``-1`` with a
    history also to score a known user from fresher events than the model was trained on.
    """

    name: str = ""
    #: Scores depend on who the user is (False for popularity: same list for everyone).
    personalised: bool = True

    n_users: int = 0
    n_items: int = 0

    # ------------------------------------------------------------------ contract

    @abc.abstractmethod
    def fit(
        self,
        interactions: Interactions,
        item_features: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Learns from the interactions.

        Args:
            interactions: the training events.
            item_features: float32 (n_items, F) L2-normalised CNN vectors of every catalogue
                item, including items nobody interacted with; used by visual models only.
            progress: optional callable ``(epoch, loss)`` after every epoch (``loss`` None
                for models without one; called once by non-iterative models).

        Returns:
            self, fitted.
        """

    @abc.abstractmethod
    def score(
        self,
        user: int,
        history_items: np.ndarray | None = None,
        history_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of every item for one user: float32 (n_items,), higher is better.

        Args:
            user: a known user index, or ``-1`` for a user scored from the history.
            history_items: int64 (H,) item indices the user interacted with; read only
                when ``user`` is not a known user.
            history_weights: float32 (H,) weight per history event (default 1 each).
        """

    @abc.abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """The fitted arrays to save (numeric dtypes only)."""

    @abc.abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Sets the fitted state from the arrays written by :meth:`_state`."""

    # ------------------------------------------------------------------ shared

    @property
    def is_fitted(self) -> bool:
        return self.n_items > 0

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, by name, as passed to ``__init__`` (JSON-serialisable)."""
        signature = inspect.signature(type(self).__init__)
        return {
            key: getattr(self, key)
            for key, param in signature.parameters.items()
            if key != "self" and param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted")

    def _is_known(self, user: int | None) -> bool:
        return user is not None and 0 <= int(user) < self.n_users

    def _score_batch(self, users: np.ndarray) -> np.ndarray:
        """Scores of many users: float32 (U, n_items). Overridden with one matrix product."""
        return np.stack([self.score(int(u)) for u in users]) if len(users) else np.zeros(
            (0, self.n_items), dtype=np.float32
        )

    def recommend(
        self,
        user: int,
        n: int = 20,
        *,
        exclude: np.ndarray | None = None,
        history_items: np.ndarray | None = None,
        history_weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for one user, best first; ties go to the lower item index.

        Args:
            user: a known user index, or ``-1`` for a user described by the history.
            n: how many items.
            exclude: int64 item indices never to return (e.g. already bought).
            history_items, history_weights: as for :meth:`score`.

        Returns:
            ids int64 (m,) and scores float32 (m,), ``m = min(n, items not excluded)``.
        """
        self._check_fitted()
        scores = np.array(self.score(user, history_items, history_weights), dtype=np.float32)
        if exclude is not None and len(exclude):
            scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        ids, values = top_n(scores, n)
        found = ids[0] >= 0
        return ids[0][found], values[0][found]

    def recommend_batch(
        self,
        users: np.ndarray,
        n: int = 20,
        *,
        exclude: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for many known users at once (evaluation), in bounded-memory chunks.

        Args:
            users: int64 (U,) user indices (unknown ones get the no-history scores).
            n: how many items per user.
            exclude: optional list of U int64 arrays, items never to return per user.

        Returns:
            ids int64 (U, n) and scores float32 (U, n), rows as :meth:`recommend` gives them;
            where fewer than ``n`` items remain the tail holds id ``-1`` and score ``-inf``.
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if exclude is not None and len(exclude) != len(users):
            raise ValueError("exclude must hold one array per user")
        n = max(0, min(int(n), self.n_items))
        all_ids = np.full((len(users), n), -1, dtype=np.int64)
        all_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        chunk = max(1, BATCH_CELLS // max(1, self.n_items))
        for start in range(0, len(users), chunk):
            stop = min(start + chunk, len(users))
            scores = np.array(self._score_batch(users[start:stop]), dtype=np.float32)
            if exclude is not None:
                parts = [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude[start:stop]]
                rows = np.repeat(np.arange(stop - start), [len(p) for p in parts])
                if len(rows):
                    scores[rows, np.concatenate(parts)] = -np.inf
            all_ids[start:stop], all_scores[start:stop] = top_n(scores, n)
        return all_ids, all_scores

    def user_vectors(self) -> np.ndarray | None:
        """float32 (n_users, D) with ``score(u)[i] == user_vectors()[u] @ item_vectors()[i]``.

        None for models that are not one inner product (item-kNN).
        """
        return None

    def item_vectors(self) -> np.ndarray | None:
        """float32 (n_items, D), the item side of :meth:`user_vectors`; None where that is."""
        return None

    def user_vector(
        self,
        user: int,
        history_items: np.ndarray | None = None,
        history_weights: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """One user's float32 (D,) query vector, also for new users (fold-in); None if none."""
        return None

    # ------------------------------------------------------------------ persistence

    def save(self, fileobj_or_path: str | os.PathLike[str] | BinaryIO) -> None:
        """Writes the fitted model as an ``.npz`` of numeric arrays and a JSON metadata string.

        A path is written exactly as given (no ``.npz`` suffix is added).
        """
        self._check_fitted()
        arrays = {key: np.ascontiguousarray(value) for key, value in self._state().items()}
        for key, value in arrays.items():
            if value.dtype.hasobject or key == _META_KEY:
                raise TypeError(f"array {key!r} cannot be saved safely ({value.dtype})")
        meta = {
            "format": "visrec.recommender",
            "version": FORMAT_VERSION,
            "class": self.name,
            "params": self.get_params(),
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
        }
        arrays[_META_KEY] = np.array(json.dumps(meta, sort_keys=True))
        if isinstance(fileobj_or_path, (str, os.PathLike)):
            with open(fileobj_or_path, "wb") as handle:
                np.savez(handle, **arrays)
        else:
            np.savez(fileobj_or_path, **arrays)

    def to_bytes(self) -> bytes:
        """The saved model as bytes (for a ``FileField`` or a cache)."""
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, fileobj_or_path: str | os.PathLike[str] | BinaryIO) -> Recommender:
        """Reads a model written by :meth:`save` (``allow_pickle=False``: no code is run).

        ``Recommender.load`` returns whichever model class the file names;
        ``SomeModel.load`` also checks that the file holds a ``SomeModel``.
        """
        meta, arrays = _read_npz(fileobj_or_path)
        target = cls
        if cls is Recommender or inspect.isabstract(cls):
            from visrec.recommenders import MODELS

            if meta["class"] not in MODELS:
                raise ValueError(f"unknown recommender class {meta['class']!r}")
            target = MODELS[meta["class"]]
        elif meta["class"] != cls.name:
            raise ValueError(f"file holds a {meta['class']!r} model, not {cls.name!r}")
        model = target(**meta["params"])
        model.n_users = int(meta["n_users"])
        model.n_items = int(meta["n_items"])
        model._restore(arrays)
        return model


class InnerProductRecommender(Recommender):
    """A model whose score is one inner product: ``score(u) = user_vec(u) @ item_vectors.T``.

    Subclasses fill ``_users`` float32 (n_users, D) and ``_items`` float32 (n_items, D) in
    :meth:`fit` and implement :meth:`_fold_in` for users not seen in training. Scores are
    computed from exactly the vectors :meth:`user_vectors` / :meth:`item_vectors` return, so
    a pgvector inner-product query over ``item_vectors`` ranks as :meth:`recommend` does.
    """

    _users: np.ndarray
    _items: np.ndarray

    @abc.abstractmethod
    def _fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """float32 (D,) query vector of a new user from a history (possibly empty)."""

    def user_vector(
        self,
        user: int,
        history_items: np.ndarray | None = None,
        history_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        self._check_fitted()
        if self._is_known(user):
            return self._users[int(user)].copy()
        items, weights = _as_history(self.n_items, history_items, history_weights)
        return self._fold_in(items, weights).astype(np.float32)

    def score(
        self,
        user: int,
        history_items: np.ndarray | None = None,
        history_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        vector = self.user_vector(user, history_items, history_weights)
        return (self._items @ vector).astype(np.float32, copy=False)

    def _score_batch(self, users: np.ndarray) -> np.ndarray:
        known = (users >= 0) & (users < self.n_users)
        queries = np.empty((len(users), self._items.shape[1]), dtype=np.float32)
        queries[known] = self._users[users[known]]
        if not known.all():
            queries[~known] = self._fold_in(np.zeros(0, np.int64), np.zeros(0, np.float32))
        return queries @ self._items.T

    def user_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self._users

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self._items
