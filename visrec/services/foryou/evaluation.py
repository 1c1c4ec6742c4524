"""Honest offline evaluation of "for you": one split, every model, the same metrics.

The split (``VISREC["VALIDATION"]``): ``"basket"``, leave-last-basket-out, each returning
shopper's last basket is their future (:func:`basket_split`); or ``"days"``, the last
``holdout_days`` up to the last purchase are the future (:func:`temporal_split`). Test
shoppers are those who bought something in the future and did anything before it; what
they bought (and had not bought before) is what a model should have recommended. Models
learn only from the past. "Cold" products are those nobody touched in the past.

The blend (what is served) fuses the trained model, item-kNN and the session model with
weights chosen on a *validation* slice: the last ``HOLDOUT_DAYS`` of the training events,
with models fitted on the events before it (:func:`select_blend`). On the same slice,
before the weights, BPR and VBPR each choose their hyper-parameters from one small shared
grid (:data:`PARAM_GRID`, :func:`choose_params`), so that the two are tuned alike. Nightly
training chooses both the same way and stores them with the model version; the test days
never take part in the choice.

Real histories have few products that nobody touched before a shopper's last basket (a
closed catalogue such as MovieLens has almost none), so the cold half can also be made
measurable: ``withhold`` (``visrec_evaluate --withhold-products 0.2``) takes that share of
the products (chosen by a hash of their id) out of the past entirely, for every shopper, as
if they had been added to the catalogue at the split; their purchases in the held-out
baskets are then cold purchases that only the image path can reach
(:func:`withheld_products`).
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...conf import visrec_settings
from ...evaluation.recommendations import (
    all_metrics,
    hit_values,
    ndcg_at_k,
    ndcg_values,
    paired_bootstrap,
    recall_at_k,
)
from ...recommenders import BATCH_CELLS, MODELS, Recommender, top_n
from ...recommenders.blend import new_product_slots, reserve_slots, rrf_blend
from ...recommenders.session import session_vectors_batch, session_weights
from .interactions import Dataset

DAY = 86400.0
#: Candidates each list contributes to the blend.
BLEND_DEPTH = 200
#: Length of the served session list ("for you"); a list's new-product places are filled
#: from the products in it that nobody touched in the training window.
SESSION_DEPTH = 50
#: Hyper-parameters per model for the catalogue sizes visrec is built for, chosen on the
#: demo's two validation slices before its test days (Recall@20): 40 epochs for BPR and
#: VBPR alike (20 underfit both: 0.42-0.47; 40: 0.49-0.51; 80 little more for twice the
#: time). VBPR's ``reg_visual`` stays at 1e-4: 1e-3 lifted VBPR alone (0.544/0.560 against
#: 0.487/0.495) but not the served blend (validation 0.605 against 0.603), and on a
#: population three times larger it lowered the blend's validation recall (0.622 against 0.643).
DEFAULT_PARAMS: dict[str, dict] = {
    "popularity": {},
    "itemknn": {},
    "bpr": {"epochs": 40},
    "vbpr": {"epochs": 40},
}
#: Candidate hyper-parameters tried on the validation slice (:func:`choose_params`), the
#: same for BPR and VBPR so that neither is tuned more than the other. The item biases'
#: L2 weight decides how much of the ranking is popularity (the biases) and how much the
#: shopper's own taste (the factors); how popularity-driven purchases are differs from shop
#: to shop, so it is chosen on each shop's own validation slice instead of fixed. On the
#: demo's two validation slices 0.1 was the better one for VBPR (Recall@20 0.606 / 0.581
#: against 0.575 / 0.561 at 0.01) and about even for BPR (0.551 / 0.559 against 0.547 /
#: 0.550); 1.0 was no better than 0.1 for either. Each candidate is one more fit on the
#: validation slice (the winner's list is reused for the blend).
#: Item-kNN's EASE weight ``ease_reg`` (:class:`~visrec.recommenders.ItemKNNRecommender`) is
#: chosen the same way, for the blend's item-kNN list as well: the best value differed between
#: the demo (1, of 0.3-20: Recall@20 0.756 against 0.671 at 5) and MovieLens 100K (flat
#: between 0.3 and 20), so each shop's own validation slice decides.
PARAM_GRID: dict[str, tuple[dict, ...]] = {
    "bpr": ({"reg_bias": 0.01}, {"reg_bias": 0.1}),
    "vbpr": ({"reg_bias": 0.01}, {"reg_bias": 0.1}),
    "itemknn": ({"ease_reg": 0.5}, {"ease_reg": 2.0}, {"ease_reg": 8.0}),
}
#: The lists a blend fuses: the trained model, item-kNN on co-interactions, the session model,
#: and popularity (recency-weighted): on real histories where the next purchase is mostly
#: what everyone buys (MovieLens 100K's last baskets, bench/RESULTS.md) no personal list beat
#: it, so the blend may lean on it where validation says so.
BLEND_PARTS = ("model", "itemknn", "session", "popularity")
#: Shares of new-product places a training may raise ``RECOMMENDER_NEW_PRODUCT_SHARE`` to
#: (up to ``RECOMMENDER_NEW_PRODUCT_SHARE_MAX``), chosen on the validation slice.
NEW_PRODUCT_SHARES = (0.1, 0.2, 0.3)
#: Step of the grid of blend weights tried on the validation slice (weights sum to 1).
BLEND_STEP = 0.1
#: Recall@K the blend weights are chosen for (the guardrail's K).
BLEND_K = 20


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


def temporal_split(dataset: Dataset, holdout_days: float | None = None, withheld: np.ndarray | None = None) -> Split:
    """Splits ``holdout_days`` before the last purchase (see module docstring).

    The last purchase, not the last event: views after it (a stray test click days later)
    would otherwise move the held-out days onto days without purchases to measure.
    """
    holdout_days = visrec_settings.HOLDOUT_DAYS if holdout_days is None else holdout_days
    if len(dataset.times) == 0:
        raise LookupError("no events to evaluate on")
    is_purchase = dataset.types == "purchase"
    end = dataset.times[is_purchase].max() if is_purchase.any() else dataset.times.max()
    split_time = float(end) - holdout_days * DAY
    train = dataset.times < split_time
    order = np.argsort(dataset.users, kind="stable")
    bounds = np.searchsorted(dataset.users[order], np.arange(len(dataset.subjects) + 1))
    cases = []
    for user in range(len(dataset.subjects)):
        rows = order[bounds[user]:bounds[user + 1]]
        past, future = rows[train[rows]], rows[~train[rows] & is_purchase[rows]]
        if len(past) and len(future):
            cases.append((user, past, future, split_time))
    return _split_of(dataset, train, cases, split_time, withheld)


def withheld_products(dataset: Dataset, share: float, salt: str = "") -> np.ndarray:
    """bool (I,) about ``share`` of the products, the same ones on every run and machine:
    those whose SHA-1 of ``salt`` and their id falls in the lowest ``share`` of its range
    (the validation slice draws its own with another salt)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the share of products withheld must be in [0, 1), not {share}")
    cut = int(share * 2**32)
    return np.array([int.from_bytes(hashlib.sha1(f"{salt}{p}".encode()).digest()[:4], "big") < cut
                     for p in dataset.products.tolist()], dtype=bool)


def _split_of(dataset: Dataset, train: np.ndarray, cases: list, split_time: float,
              withheld: np.ndarray | None = None) -> Split:
    """The :class:`Split` of test cases ``(user, past rows, future purchase rows, session
    reference time)``: a case counts when its future holds a product its past did not buy;
    its session input is its last ``SESSION_EVENTS`` past events, aged from the reference.
    ``withheld`` (bool per product): products whose every past event is dropped (training,
    the shoppers' histories), so that they are cold in the future."""
    if withheld is not None and withheld.any():
        train = train & ~withheld[dataset.items]
        cases = [(user, past[~withheld[dataset.items[past]]], future, reference)
                 for user, past, future, reference in cases]
    is_purchase = dataset.types == "purchase"
    item_counts = np.bincount(dataset.items[train], minlength=len(dataset.products))
    cold = item_counts == 0
    weights = dataset.weights
    users, relevant, cold_relevant, exclude, histories = [], [], [], [], []
    for user, past, future, reference in cases:
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
        ages = (reference - dataset.times[recent]) / 3600.0
        histories.append((dataset.items[recent], session_weights(weights[recent], ages,
                                                                  visrec_settings.SESSION_HALF_LIFE_HOURS)))
    return Split(dataset, split_time, train, np.array(users, dtype=np.int64), relevant, cold_relevant, exclude,
                 histories, item_counts)


def basket_split(dataset: Dataset, withheld: np.ndarray | None = None) -> Split:
    """Leave-last-basket-out: each shopper's last basket (their purchases of their last UTC
    day with one) is their future, everything before it their past.

    Test shoppers are those with a past (any event before that basket) and at least one
    product in it they had not bought before; every other event (other shoppers', and
    theirs before the basket) is training data. Unlike a fixed number of days, every shopper
    with two visits counts, however sparse the history: a shop whose last week saw seven
    buyers still measures on all of its returning ones. Session inputs are each shopper's
    last events before their basket, aged from its start.
    """
    if len(dataset.times) == 0:
        raise LookupError("no events to evaluate on")
    is_purchase = dataset.types == "purchase"
    days = np.floor(dataset.times / DAY)
    order = np.lexsort((dataset.times, dataset.users))
    bounds = np.searchsorted(dataset.users[order], np.arange(len(dataset.subjects) + 1))
    train = np.ones(len(dataset.times), dtype=bool)
    cutoffs: dict[int, float] = {}
    for user in range(len(dataset.subjects)):
        rows = order[bounds[user]:bounds[user + 1]]
        bought = rows[is_purchase[rows]]
        if len(bought) == 0:
            continue
        last_day = days[bought].max()
        basket_start = dataset.times[bought[days[bought] == last_day]].min()
        if not (dataset.times[rows] < basket_start).any():
            continue  # no past to recommend from
        cutoffs[user] = float(basket_start)
        train[rows[dataset.times[rows] >= basket_start]] = False
    cases = []
    for user, cutoff in cutoffs.items():
        rows = order[bounds[user]:bounds[user + 1]]
        basket = rows[(dataset.times[rows] >= cutoff) & is_purchase[rows] & (days[rows] == np.floor(cutoff / DAY))]
        cases.append((user, rows[dataset.times[rows] < cutoff], basket, cutoff))
    split_time = max(cutoffs.values()) if cutoffs else float(dataset.times.max())
    return _split_of(dataset, train, cases, split_time, withheld)


def make_split(dataset: Dataset, protocol: str | None = None, holdout_days: float | None = None,
               withhold: float = 0.0, withhold_salt: str = "") -> Split:
    """The evaluation split of ``protocol`` (``VISREC["VALIDATION"]``): ``"basket"``
    (:func:`basket_split`) or ``"days"`` (:func:`temporal_split`, the last ``holdout_days``),
    with the share ``withhold`` of the products taken out of the past (:func:`withheld_products`)."""
    protocol = protocol or visrec_settings.VALIDATION
    withheld = withheld_products(dataset, withhold, withhold_salt) if withhold else None
    if protocol == "basket":
        return basket_split(dataset, withheld)
    if protocol == "days":
        return temporal_split(dataset, holdout_days, withheld)
    raise ValueError(f"unknown validation protocol {protocol!r}; use 'basket' or 'days'")


def fit_model(name: str, dataset: Dataset, mask: np.ndarray | None = None, progress=None,
              params: dict | None = None) -> Recommender:
    """A model of the registry fitted on the events selected by ``mask``."""
    model_params = {**DEFAULT_PARAMS.get(name, {}), **(params or {})}
    if "max_samples" in inspect.signature(MODELS[name]).parameters:  # BPR, VBPR: a bounded fit
        model_params.setdefault("max_samples", visrec_settings.RECOMMENDER_MAX_TRIPLES or None)
    model = MODELS[name](**model_params)
    return model.fit(dataset.interactions(mask), dataset.features, progress=progress)


def model_top(model: Recommender, split: Split, n: int) -> np.ndarray:
    """int64 (U, n) top lists of a fitted model for the split's test users."""
    ids, _ = model.recommend_batch(split.users, n, exclude=split.exclude)
    return ids


def session_top(split: Split, n: int) -> np.ndarray:
    """int64 (U, n) top lists of the session model (cosine to the recent products' vectors);
    ``-1`` rows for shoppers without a session, as serving gives them nothing."""
    return _session_ranked(split, n)


def default_blend() -> dict[str, float]:
    """Blend weights when none were chosen on validation: ``SESSION_BLEND`` for the session."""
    w = float(visrec_settings.SESSION_BLEND)
    return {"model": 1.0 - w, "itemknn": 0.0, "session": w, "popularity": 0.0}


def unchosen_blend() -> dict:
    """:func:`select_blend`'s answer when nothing was chosen on validation: :func:`default_blend`
    and the model's default hyper-parameters."""
    return {"weights": default_blend(), f"validation_recall@{BLEND_K}": None, "validation_shoppers": 0,
            "params": {}, "params_tried": [], "itemknn_params": {}, "itemknn_params_tried": [],
            "new_product_share": None, "new_product_shares_tried": []}


def new_products_top(session: np.ndarray, item_counts: np.ndarray, k: int) -> np.ndarray:
    """int64 (U, n) the candidates for the new-product places of a list of ``k``, as serving
    draws them: the products of each shopper's session list (its first ``max(SESSION_DEPTH, k)``)
    that nobody touched in the past, best first, ``-1`` padding.

    Args:
        session: int64 (U, depth) :func:`session_top` lists, ``depth >= max(SESSION_DEPTH, k)``.
        item_counts: (n_items,) past interactions per product.
    """
    head = session[:, :max(SESSION_DEPTH, k)]
    new = (head >= 0) & (item_counts[np.maximum(head, 0)] == 0)
    out = np.full(head.shape, -1, dtype=np.int64)
    for row in range(len(head)):
        picked = head[row][new[row]]
        out[row, : len(picked)] = picked
    return out


def _session_ranked(split: Split, n: int) -> np.ndarray:
    """Cosine of each shopper's session vector to every product, ranked in chunks of users
    (``BATCH_CELLS`` scores at once: 100k products never make a users x products matrix)."""
    features = split.dataset.features
    vectors = session_vectors_batch(features, split.histories)
    n_items = features.shape[0]
    out = np.full((len(vectors), max(0, min(int(n), n_items))), -1, dtype=np.int64)
    chunk = max(1, BATCH_CELLS // max(1, n_items))
    for start in range(0, len(vectors), chunk):
        stop = min(start + chunk, len(vectors))
        scores = np.asarray(vectors[start:stop] @ features.T, dtype=np.float32)
        scores[~vectors[start:stop].any(axis=1)] = -np.inf  # no session, no list
        for row, excluded in enumerate(split.exclude[start:stop]):
            scores[row, excluded] = -np.inf
        out[start:stop] = top_n(scores, n)[0]
    return out


def with_new_products(blended: np.ndarray, new: np.ndarray, k: int, share: float | None = None) -> np.ndarray:
    """int64 (U, k) the blended lists cut to ``k`` with the new-product places of a list of ``k``
    (``RECOMMENDER_NEW_PRODUCT_SHARE``, see :func:`~visrec.recommenders.blend.reserve_slots`)."""
    share = visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE if share is None else share
    slots = new_product_slots(k, share)
    out = np.full((len(blended), k), -1, dtype=np.int64)
    for row in range(len(blended)):
        ranked = reserve_slots(blended[row][blended[row] >= 0].tolist(), new[row][new[row] >= 0].tolist(), k, slots)
        out[row, : len(ranked)] = ranked
    return out


def blend_top(tops: dict[str, np.ndarray], weights: dict[str, float], n: int) -> np.ndarray:
    """int64 (U, n) weighted rank fusion of the parts' top lists (what is served).

    Args:
        tops: part name -> int64 (U, depth) top lists, ``-1`` padding.
        weights: part name -> non-negative weight; parts with weight 0 (or absent) are left out.
        n: length of the blended lists.
    """
    parts = [name for name in tops if weights.get(name, 0.0) > 0]
    users = len(next(iter(tops.values())))
    out = np.full((users, n), -1, dtype=np.int64)
    for row in range(users):
        blended = rrf_blend([tops[name][row] for name in parts], [weights[name] for name in parts], n)
        out[row, : len(blended)] = blended
    return out


def weight_grid(parts: tuple[str, ...] = BLEND_PARTS, step: float = BLEND_STEP) -> list[dict[str, float]]:
    """Every weighting of ``parts`` on a grid of ``step`` whose weights sum to 1."""
    units = round(1 / step)
    grid = []
    for combo in itertools.product(range(units + 1), repeat=len(parts) - 1):
        if sum(combo) <= units:
            grid.append({name: round(c * step, 6) for name, c in zip(parts, (*combo, units - sum(combo)))})
    return grid


def choose_blend(split: Split, tops: dict[str, np.ndarray], k: int = BLEND_K) -> tuple[dict[str, float], float]:
    """The weights of the grid with the best Recall@k on ``split``, and that recall.

    Ties (common on a few hundred shoppers) go to the better NDCG@k, then to the earlier
    grid point, so the choice is deterministic.
    """
    best, best_key = default_blend(), (-1.0, -1.0)
    for weights in weight_grid(tuple(tops)):
        top = blend_top(tops, weights, k)
        key = (round(recall_at_k(top, split.relevant, k), 9), round(ndcg_at_k(top, split.relevant, k), 9))
        if key > best_key:
            best, best_key = weights, key
    return best, best_key[0]


def before(dataset: Dataset, mask: np.ndarray) -> Dataset:
    """The dataset with only the events selected by ``mask`` (same user and item indices)."""
    return Dataset(subjects=dataset.subjects, products=dataset.products, users=dataset.users[mask],
                   items=dataset.items[mask], types=dataset.types[mask], times=dataset.times[mask],
                   features=dataset.features)


def validation_split(dataset: Dataset, train: np.ndarray, holdout_days: float | None = None,
                     protocol: str | None = None, withhold: float = 0.0) -> Split | None:
    """The training events (``train``) split again the same way (their own last baskets, or
    last ``holdout_days``; with ``withhold``, as many products of its own withheld); None
    when that slice has no shopper to measure on."""
    try:
        validation = make_split(before(dataset, train), protocol, holdout_days, withhold, "validation")
    except LookupError:
        return None
    return validation if len(validation.users) else None


def choose_params(validation: Split, model_name: str, depth: int = BLEND_K,
                  k: int = BLEND_K) -> tuple[dict, np.ndarray, list[dict]]:
    """The candidate of :data:`PARAM_GRID` whose model alone has the best Recall@k on ``validation``.

    Ties go to the better NDCG@k, then to the earlier candidate. A model without a grid
    is fitted once with its defaults.

    Returns:
        the chosen hyper-parameters, the chosen model's int64 (U, depth) top lists on
        ``validation``, and ``[{"params": {...}, "recall@k": float}]`` for every candidate.
    """
    best, best_key, tried = None, None, []
    for params in PARAM_GRID.get(model_name, ({},)):
        top = model_top(fit_model(model_name, validation.dataset, validation.train, params=params), validation, depth)
        key = (round(recall_at_k(top, validation.relevant, k), 9), round(ndcg_at_k(top, validation.relevant, k), 9))
        tried.append({"params": params, f"recall@{k}": key[0]})
        if best_key is None or key > best_key:
            best, best_key = (params, top), key
    assert best is not None
    return best[0], best[1], tried


def select_params(dataset: Dataset, train: np.ndarray, model_name: str, holdout_days: float | None = None,
                  protocol: str | None = None, withhold: float = 0.0) -> dict:
    """:func:`choose_params` on the validation slice of ``train`` alone (no blend).

    Returns:
        ``{"params": {...}, "params_tried": [...], "validation_shoppers": int}``.
    """
    validation = validation_split(dataset, train, holdout_days, protocol, withhold)
    if validation is None:
        return {"params": {}, "params_tried": [], "validation_shoppers": 0}
    params, _, tried = choose_params(validation, model_name)
    return {"params": params, "params_tried": tried, "validation_shoppers": int(len(validation.users))}


def new_product_shares() -> list[float]:
    """The shares of new-product places training may choose from: ``RECOMMENDER_NEW_PRODUCT_SHARE``
    (the floor: exploration is never cut below it) and those of :data:`NEW_PRODUCT_SHARES` above it,
    up to ``RECOMMENDER_NEW_PRODUCT_SHARE_MAX``; only 0 when the floor is 0 (turned off)."""
    floor = float(visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE)
    if floor <= 0:  # exploration turned off: nothing to raise
        return [0.0]
    top = float(visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE_MAX)
    return [floor] + [share for share in NEW_PRODUCT_SHARES if floor < share <= top]


def choose_new_product_share(split: Split, blended: np.ndarray, session: np.ndarray,
                             k: int = BLEND_K) -> tuple[float, list[dict]]:
    """The share of :func:`new_product_shares` whose served lists have the best Recall@k on
    ``split``; ties (to the better NDCG@k, then) to the smaller share.

    More places for new products only win where the shop's shoppers buy new products often
    enough, and the session list finds the ones they buy, for the hits to pay for the warm
    ones the places push out.

    Returns:
        the share and ``[{"share": s, "recall@k": r}]`` for every share tried.
    """
    new = new_products_top(session, split.item_counts, k)
    best, best_key, tried = None, None, []
    for share in new_product_shares():
        top = with_new_products(blended, new, k, share)
        key = (round(recall_at_k(top, split.relevant, k), 9), round(ndcg_at_k(top, split.relevant, k), 9))
        tried.append({"share": share, f"recall@{k}": key[0]})
        if best_key is None or key > best_key:
            best, best_key = share, key
    return best, tried


def select_blend(dataset: Dataset, train: np.ndarray, model_name: str, holdout_days: float | None = None,
                 progress=None, parts: tuple[str, ...] = BLEND_PARTS, protocol: str | None = None,
                 withhold: float = 0.0) -> dict:
    """Chooses the model's hyper-parameters and the blend weights on a validation slice
    taken from the training events only.

    The training events (``train``) are split again at their own last ``holdout_days``
    (:func:`validation_split`); the trained model (each candidate of :data:`PARAM_GRID`,
    :func:`choose_params`) and item-kNN are fitted on what comes before, and the weights of
    ``parts`` (of ``model`` / ``itemknn`` / ``session``) with the best Recall@20 on the
    validation shoppers' purchases are kept. Without validation shoppers, :func:`unchosen_blend`.

    Item-kNN's own hyper-parameters (its :data:`PARAM_GRID`) are chosen on the same slice
    when it is one of ``parts``, and then the share of new-product places for those weights
    (:func:`choose_new_product_share`). ``withhold``: the validation slice withholds that
    share of products of its own (:func:`evaluate`'s ``withhold``).

    Returns:
        ``{"weights": {part: w}, "validation_recall@20": float | None, "validation_shoppers": int,
        "params": {...}, "params_tried": [{"params": {...}, "recall@20": float}],
        "itemknn_params": {...}, "itemknn_params_tried": [...], "new_product_share": float | None,
        "new_product_shares_tried": [...]}``.
    """
    validation = validation_split(dataset, train, holdout_days, protocol, withhold)
    if validation is None:
        return unchosen_blend()
    depth = max(BLEND_DEPTH // 2, BLEND_K)
    if progress:
        progress(f"choose {model_name}'s hyper-parameters and the blend weights on {len(validation.users)} "
                 "validation shoppers")
    params, model_list, tried = choose_params(validation, model_name, depth)
    knn_params, knn_list, knn_tried = ({}, None, [])
    if "itemknn" in parts:
        knn_params, knn_list, knn_tried = choose_params(validation, "itemknn", depth)
    make = {
        "model": lambda: model_list,
        "itemknn": lambda: knn_list,
        "session": lambda: session_top(validation, depth),
        "popularity": lambda: model_top(fit_model("popularity", validation.dataset, validation.train), validation,
                                        depth),
    }
    tops = {part: make[part]() for part in parts}
    weights, recall = choose_blend(validation, tops)
    session = tops["session"] if "session" in tops else session_top(validation, depth)
    share, shares_tried = choose_new_product_share(validation, blend_top(tops, weights, depth), session)
    return {"weights": weights, f"validation_recall@{BLEND_K}": recall,
            "validation_shoppers": int(len(validation.users)), "params": params, "params_tried": tried,
            "itemknn_params": knn_params, "itemknn_params_tried": knn_tried,
            "new_product_share": share, "new_product_shares_tried": shares_tried}


def seed_spread(dataset: Dataset, seeds: int, *, holdout_days: float | None = None,
                params: dict[str, dict] | None = None, models=("bpr", "vbpr"), k: int = 20,
                protocol: str | None = None) -> dict:
    """Recall@k of each model retrained with training seeds ``0 .. seeds - 1`` on the same
    temporal split: how much of a gap between two models is the draw of one training.

    Args:
        params: each model's hyper-parameters (e.g. those :func:`evaluate` chose), by name.

    Returns:
        ``{"k", "models", "rows": [{"seed", <model>: recall, ...}], "mean": {<model>: recall}}``.
    """
    split = make_split(dataset, protocol, holdout_days)
    rows = []
    for seed in range(seeds):
        row: dict = {"seed": seed}
        for name in models:
            model = fit_model(name, dataset, split.train, params={**(params or {}).get(name, {}), "seed": seed})
            row[name] = recall_at_k(model_top(model, split, k), split.relevant, k)
        rows.append(row)
    mean = {name: float(np.mean([row[name] for row in rows])) if rows else 0.0 for name in models}
    return {"k": k, "models": list(models), "rows": rows, "mean": mean}


def significance(served: np.ndarray, tops: dict[str, np.ndarray], split: Split, k: int = 20) -> dict:
    """The served blend against every other list, paired over the same test shoppers: the
    difference of NDCG@k and hit rate@k (and hit rate@k on the cold purchases) with a 95%
    bootstrap interval; ``{name: {metric: [difference, low, high]}}``."""
    out = {}
    for name, top in tops.items():
        if name == "blended":
            continue
        out[name] = {
            f"ndcg@{k}": list(paired_bootstrap(ndcg_values(served, split.relevant, k),
                                               ndcg_values(top, split.relevant, k))),
            f"hit_rate@{k}": list(paired_bootstrap(hit_values(served, split.relevant, k),
                                                   hit_values(top, split.relevant, k))),
            f"cold_hit_rate@{k}": list(paired_bootstrap(hit_values(served, split.cold_relevant, k),
                                                        hit_values(top, split.cold_relevant, k))),
        }
    return out


def evaluate(dataset: Dataset, *, holdout_days: float | None = None, ks=(10, 20), curve_max: int = 50,
             models=("popularity", "itemknn", "bpr", "vbpr"), progress=None, protocol: str | None = None,
             peers: dict | None = None, withhold: float = 0.0, new_product_shares: Sequence[float] = ()) -> dict:
    """Fits every model on the past and measures it on the future.

    The blend's weights, and the hyper-parameters of every model with a :data:`PARAM_GRID`,
    are chosen on a validation slice before the test days (:func:`select_blend`), as nightly
    training chooses them. With BPR among ``models``, a control row ``bpr+itemknn`` fuses
    BPR and item-kNN the same way (no image vectors anywhere), so that the gain of the
    blend over its parts is not mistaken for a gain of the visual signal.

    ``peers``: other implementations measured on the same split, ``{name: callable(dataset,
    split, n) -> int64 (U, n) top lists}`` (the benchmarks' implicit and Cornac rows).
    ``withhold``: the share of products taken out of the past (module docstring), so that
    the cold half can be measured on a history that has few new products of its own.
    ``new_product_shares``: the served blend measured again at each of these shares of
    new-product places (``RECOMMENDER_NEW_PRODUCT_SHARE``): what a shop trades of its warm
    hits for cold ones (``new_product_shares`` in the result, one row per share).

    Returns:
        ``{"split": {...}, "models": {name: {metric: value}}, "curves": {name: [recall@1..curve_max]},
        "significance": {name: {metric: [difference, low, high]}}}``;
        ``split["blend"]`` holds the chosen weights and their validation recall,
        ``split["params"]`` each tuned model's chosen hyper-parameters and every candidate's
        validation recall.
    """
    split = make_split(dataset, protocol, holdout_days, withhold)
    if len(split.users) == 0:
        raise LookupError("no shopper bought something new in the held-out baskets or days; nothing to evaluate")
    depth = max(BLEND_DEPTH, curve_max, *ks)
    trained = visrec_settings.RECOMMENDER if visrec_settings.RECOMMENDER in models else models[-1]
    blend = select_blend(dataset, split.train, trained, holdout_days, progress, protocol=protocol, withhold=withhold)
    chosen = {trained: blend}
    if trained != "itemknn":  # the blend's item-kNN list and its own row: one choice
        chosen["itemknn"] = {"params": blend["itemknn_params"], "params_tried": blend["itemknn_params_tried"],
                             "validation_shoppers": blend["validation_shoppers"]}
    if "bpr" in models:
        if progress:
            progress("choose bpr's hyper-parameters and the control's weights on validation")
        control = select_blend(dataset, split.train, "bpr", holdout_days, parts=("model", "itemknn"), protocol=protocol,
                               withhold=withhold)
        chosen["bpr"] = control
    for name in models:
        if name in PARAM_GRID and name not in chosen:  # every tuned model is tuned alike
            chosen[name] = select_params(dataset, split.train, name, holdout_days, protocol, withhold)
    tops: dict[str, np.ndarray] = {}
    for name in dict.fromkeys((*models, "itemknn", "popularity")):
        if progress:
            progress(f"fit {name}")
        params = chosen[name]["params"] if name in chosen else None
        tops[name] = model_top(fit_model(name, dataset, split.train, params=params), split, depth)
    tops["session"] = session_top(split, depth)
    parts = {"model": tops[trained], "itemknn": tops["itemknn"], "session": tops["session"],
             "popularity": tops["popularity"]}
    tops["blended"] = blend_top(parts, blend["weights"], depth)
    if "bpr" in models:
        tops["bpr+itemknn"] = blend_top({"model": tops["bpr"], "itemknn": tops["itemknn"]}, control["weights"],
                                        depth)
    tops = {name: top for name, top in tops.items() if name in (*models, "session", "blended", "bpr+itemknn")}
    for name, make in (peers or {}).items():
        if progress:
            progress(f"fit {name}")
        tops[name] = make(dataset, split, depth)
    results = {name: all_metrics(top, split.relevant, split.cold_relevant, split.item_counts, ks)
               for name, top in tops.items()}
    curves = {name: [recall_at_k(top, split.relevant, k) for k in range(1, curve_max + 1)] for name, top in tops.items()}
    # The served blend keeps places for new products, and how many depends on the list's
    # length: each K is measured on the list of length K that would be served.
    chosen_share = blend["new_product_share"]

    def served(k: int, share: float | None = None) -> np.ndarray:
        share = chosen_share if share is None else share
        return with_new_products(tops["blended"], new_products_top(tops["session"], split.item_counts, k), k, share)

    results["blended"] = {key: value for k in ks for key, value in all_metrics(
        served(k), split.relevant, split.cold_relevant, split.item_counts, (k,)).items()}
    curves["blended"] = [recall_at_k(served(k), split.relevant, k) for k in range(1, curve_max + 1)]
    cold_users = sum(1 for c in split.cold_relevant if c)
    shares = [{"share": float(share), **all_metrics(served(20, share), split.relevant, split.cold_relevant,
                                                    split.item_counts, (20,))} for share in new_product_shares]
    return {
        "new_product_shares": shares,
        "significance": significance(served(20), tops, split, 20),
        "split": {
            "protocol": protocol or visrec_settings.VALIDATION,
            "holdout_days": visrec_settings.HOLDOUT_DAYS if holdout_days is None else holdout_days,
            "split_time": split.split_time,
            "train_events": int(split.train.sum()),
            "test_events": int((~split.train).sum()),
            "test_shoppers": int(len(split.users)),
            "shoppers_with_cold_purchases": cold_users,
            "items": int(len(dataset.products)),
            "cold_items": int((split.item_counts == 0).sum()),
            "withheld_share": withhold,
            "blended_from": trained,
            "blend": blend,
            "new_product_share": (visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE if chosen_share is None
                                  else chosen_share),
            **({"control_blend": control} if "bpr" in models else {}),
            "params": {name: {"params": c["params"], "tried": c["params_tried"],
                              "validation_shoppers": c["validation_shoppers"]}
                       for name, c in chosen.items() if name in PARAM_GRID},
        },
        "models": results,
        "curves": curves,
    }
