"""Honest offline evaluation of "for you": a temporal split, every model, the same metrics.

The split: the last ``holdout_days`` of the event log are the future. Test shoppers are
those who bought something in the future and did anything before it; what they bought
(and had not bought before) is what a model should have recommended. Models learn only
from the past. "Cold" products are those nobody touched in the past.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..conf import visrec_settings
from ..evaluation.recommendations import all_metrics, recall_at_k, rrf_blend
from ..recommenders import MODELS, Recommender, top_n
from ..recommenders.session import session_vectors_batch, session_weights
from .interactions import Dataset

DAY = 86400.0
#: Candidates each list contributes to the blend.
BLEND_DEPTH = 200
#: Hyper-parameters per model for the catalogue sizes visrec is built for.
DEFAULT_PARAMS: dict[str, dict] = {
    "popularity": {},
    "itemknn": {},
    "bpr": {},
    "vbpr": {},
}


@dataclass
class Split:
    dataset: Dataset
    split_time: float
    train: np.ndarray                # bool (E,) events before the split
    users: np.ndarray                # int64 (U,) test users
    relevant: list[set[int]]         # future purchases per test user (not bought before)
    cold_relevant: list[set[int]]    # the cold ones among them
    exclude: list[np.ndarray]        # items each test user bought before the split
    histories: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # session input
    item_counts: np.ndarray | None = None  # training interactions per item


def temporal_split(dataset: Dataset, holdout_days: float | None = None) -> Split:
    """Splits at ``max(time) - holdout_days`` (see module docstring)."""
    holdout_days = visrec_settings.HOLDOUT_DAYS if holdout_days is None else holdout_days
    if len(dataset.times) == 0:
        raise LookupError("no events to evaluate on")
    split_time = float(dataset.times.max()) - holdout_days * DAY
    train = dataset.times < split_time
    is_purchase = dataset.types == "purchase"
    item_counts = np.bincount(dataset.items[train], minlength=len(dataset.products))
    cold = item_counts == 0
    weights = dataset.weights
    users, relevant, cold_relevant, exclude, histories = [], [], [], [], []
    order = np.argsort(dataset.users, kind="stable")
    bounds = np.searchsorted(dataset.users[order], np.arange(len(dataset.subjects) + 1))
    for user in range(len(dataset.subjects)):
        rows = order[bounds[user]:bounds[user + 1]]
        past = rows[train[rows]]
        future = rows[~train[rows] & is_purchase[rows]]
        if len(past) == 0 or len(future) == 0:
            continue
        bought = set(dataset.items[past[is_purchase[past]]].tolist())
        wanted = set(dataset.items[future].tolist()) - bought
        if not wanted:
            continue
        users.append(user)
        relevant.append(wanted)
        cold_relevant.append({i for i in wanted if cold[i]})
        exclude.append(np.array(sorted(bought), dtype=np.int64) if visrec_settings.EXCLUDE_PURCHASED
                       else np.zeros(0, dtype=np.int64))
        recent = past[np.argsort(dataset.times[past], kind="stable")][-visrec_settings.SESSION_EVENTS:]
        ages = (split_time - dataset.times[recent]) / 3600.0
        histories.append((dataset.items[recent], session_weights(weights[recent], ages,
                                                                  visrec_settings.SESSION_HALF_LIFE_HOURS)))
    return Split(dataset, split_time, train, np.array(users, dtype=np.int64), relevant, cold_relevant, exclude,
                 histories, item_counts)


def fit_model(name: str, dataset: Dataset, mask: np.ndarray | None = None, progress=None,
              params: dict | None = None) -> Recommender:
    """A model of the registry fitted on the events selected by ``mask``."""
    model = MODELS[name](**{**DEFAULT_PARAMS.get(name, {}), **(params or {})})
    return model.fit(dataset.interactions(mask), dataset.features, progress=progress)


def model_top(model: Recommender, split: Split, n: int) -> np.ndarray:
    """int64 (U, n) top lists of a fitted model for the split's test users."""
    ids, _ = model.recommend_batch(split.users, n, exclude=split.exclude)
    return ids


def session_top(split: Split, n: int) -> np.ndarray:
    """int64 (U, n) top lists of the session model (cosine to the recent products' vectors)."""
    vectors = session_vectors_batch(split.dataset.features, split.histories)
    scores = vectors @ split.dataset.features.T
    for row, excluded in enumerate(split.exclude):
        scores[row, excluded] = -np.inf
    ids, _ = top_n(scores.astype(np.float32), n)
    return ids


def blend_top(trained: np.ndarray, session: np.ndarray, n: int, session_weight: float | None = None) -> np.ndarray:
    """int64 (U, n) rank fusion of the trained and session lists (what is served)."""
    w = visrec_settings.SESSION_BLEND if session_weight is None else session_weight
    out = np.full((len(trained), n), -1, dtype=np.int64)
    for row in range(len(trained)):
        blended = rrf_blend([trained[row], session[row]], [1.0 - w, w], n)
        out[row, : len(blended)] = blended
    return out


def evaluate(dataset: Dataset, *, holdout_days: float | None = None, ks=(10, 20), curve_max: int = 50,
             models=("popularity", "itemknn", "bpr", "vbpr"), progress=None) -> dict:
    """Fits every model on the past and measures it on the future.

    Returns:
        ``{"split": {...}, "models": {name: {metric: value}}, "curves": {name: [recall@1..curve_max]}}``.
    """
    split = temporal_split(dataset, holdout_days)
    if len(split.users) == 0:
        raise LookupError("no shopper bought something new in the held-out days; nothing to evaluate")
    depth = max(BLEND_DEPTH, curve_max, *ks)
    tops: dict[str, np.ndarray] = {}
    for name in models:
        if progress:
            progress(f"fit {name}")
        tops[name] = model_top(fit_model(name, dataset, split.train), split, depth)
    tops["session"] = session_top(split, depth)
    trained = "vbpr" if "vbpr" in tops else models[-1]
    tops["blended"] = blend_top(tops[trained], tops["session"], depth)
    results = {name: all_metrics(top, split.relevant, split.cold_relevant, split.item_counts, ks)
               for name, top in tops.items()}
    curves = {name: [recall_at_k(top, split.relevant, k) for k in range(1, curve_max + 1)] for name, top in tops.items()}
    cold_users = sum(1 for c in split.cold_relevant if c)
    return {
        "split": {
            "holdout_days": visrec_settings.HOLDOUT_DAYS if holdout_days is None else holdout_days,
            "split_time": split.split_time,
            "train_events": int(split.train.sum()),
            "test_events": int((~split.train).sum()),
            "test_shoppers": int(len(split.users)),
            "shoppers_with_cold_purchases": cold_users,
            "items": int(len(dataset.products)),
            "cold_items": int((split.item_counts == 0).sum()),
            "blended_from": trained,
        },
        "models": results,
        "curves": curves,
    }
