"""Nightly "for you" training with a guardrail, and publishing a model for serving.

:func:`train_recommender` (the ``visrec.train_recommender`` beat task and the
``visrec_train_recommender`` command):

1. loads the last ``TRAINING_WINDOW_DAYS`` of events and the served image vectors;
2. chooses the model's hyper-parameters (a small grid shared by BPR and VBPR) and the
   served blend's weights (trained model, item-kNN, session) on a validation slice
   *before* the held-out days (:func:`~.recommender_evaluation.select_blend`, the function
   ``visrec_evaluate`` uses) and stores them in the version's ``metrics["params"]`` (every
   candidate's validation recall in ``metrics["params_tried"]``) and ``metrics["blend"]``;
   serving reads the weights from there;
3. fits the model with those hyper-parameters on all but the last ``HOLDOUT_DAYS`` and
   measures Recall@20 on those days' purchases, alone and blended; the active model is
   measured on the same slice;
4. if the candidate is at least as good (or nothing is served yet), refits it (and, when
   the blend uses it, item-kNN) on the whole window, writes its shopper and product
   vectors, builds the HNSW index and switches in one transaction; otherwise keeps the
   active model and records why.

A failure anywhere leaves the active model serving.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ...conf import visrec_settings
from ...evaluation.recommendations import paired_bootstrap, recall_at_k, recall_values
from ...models import ModelKind, ModelVersion, RecommenderItemVector, ShopperVector
from ...recommenders import MODELS, Recommender, load_model, top_n
from ..catalogue.embedders import active_embedder_version
from ..db import vector_index
from ..privacy import dp_training
from ..serving.versions import activate_version, active_version
from .evaluation import (
    BLEND_K,
    SESSION_DEPTH,
    Split,
    blend_top,
    fit_model,
    make_split,
    model_top,
    new_products_top,
    select_blend,
    session_top,
    unchosen_blend,
    with_new_products,
)
from .interactions import Dataset, load_dataset, reference_time

logger = logging.getLogger(__name__)
GUARD_K = 20


class NothingToLearn(RuntimeError):
    """Too few events (or no image vectors) to train on."""


@dataclass
class Bundle:
    """A saved "for you" model with the keys its indices stand for.

    ``neighbours`` is the item-kNN model of the blend (None when the blend gives it no weight);
    ``warm`` marks the products that had interactions in the training window (the others
    are the "new products" that the served list keeps places for); ``popularity`` scores the
    blend's popularity part (None when it has no weight).
    """

    model: Recommender
    subjects: np.ndarray  # str (n_users,) subject keys
    products: np.ndarray  # int64 (n_items,) product pks
    neighbours: Recommender | None = None
    warm: np.ndarray | None = None  # bool (n_items,)
    popularity: np.ndarray | None = None  # float32 (n_items,) the blend's popularity part (None: no weight)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        extra = {} if self.neighbours is None else {
            "neighbours": np.frombuffer(self.neighbours.to_bytes(), dtype=np.uint8)}
        if self.warm is not None:
            extra["warm"] = np.asarray(self.warm, dtype=bool)
        if self.popularity is not None:
            extra["popularity"] = np.asarray(self.popularity, dtype=np.float32)
        np.savez(buffer, model=np.frombuffer(self.model.to_bytes(), dtype=np.uint8),
                 subjects=np.asarray(self.subjects, dtype="U64"), products=np.asarray(self.products, dtype=np.int64),
                 **extra)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        neighbours = (load_model(io.BytesIO(arrays["neighbours"].tobytes())) if "neighbours" in arrays.files
                      else None)
        return cls(load_model(io.BytesIO(arrays["model"].tobytes())), arrays["subjects"], arrays["products"],
                   neighbours, arrays["warm"] if "warm" in arrays.files else None,
                   arrays["popularity"] if "popularity" in arrays.files else None)


def load_bundle(version: ModelVersion) -> Bundle:
    with version.artefact.open("rb") as handle:
        return Bundle.from_bytes(handle.read())


def bundle_top(bundle: Bundle, split: Split, n: int) -> np.ndarray:
    """Top lists of a saved model for the split's test users, in the split's item indices.

    Shoppers the saved model never saw are folded in from their recent history; products it
    never saw cannot be recommended by it.
    """
    dataset = split.dataset
    user_index = {s: i for i, s in enumerate(bundle.subjects.tolist())}
    item_index = {int(p): i for i, p in enumerate(bundle.products.tolist())}
    to_old = np.array([item_index.get(int(p), -1) for p in dataset.products], dtype=np.int64)
    known = to_old >= 0
    out = np.full((len(split.users), n), -1, dtype=np.int64)
    for row, user in enumerate(split.users):
        old_user = user_index.get(str(dataset.subjects[user]), -1)
        items, weights = split.histories[row]
        mapped = to_old[items]
        old_scores = bundle.model.score(old_user, mapped[mapped >= 0], weights[mapped >= 0])
        scores = np.full(len(dataset.products), -np.inf, dtype=np.float32)
        scores[known] = old_scores[to_old[known]]
        scores[split.exclude[row]] = -np.inf
        ids, _ = top_n(scores, n)
        out[row] = ids[0]
    return out


def publish(version: ModelVersion, model: Recommender, dataset: Dataset) -> None:
    """Writes the model's product and shopper vectors and the HNSW index of the version."""
    items, users = model.item_vectors(), model.user_vectors()
    if items is None or users is None:
        raise ValueError(f"{model.name} is not an inner-product model and cannot be served from pgvector")
    step = 5000
    for start in range(0, len(items), step):
        RecommenderItemVector.objects.bulk_create(
            RecommenderItemVector(product_id=int(p), model_version=version.name, vector=v)
            for p, v in zip(dataset.products[start:start + step], items[start:start + step]))
    for start in range(0, len(users), step):
        ShopperVector.objects.bulk_create(
            ShopperVector(subject_key=str(s), model_version=version.name, vector=v)
            for s, v in zip(dataset.subjects[start:start + step], users[start:start + step]))
    vector_index.ensure_hnsw_index(RecommenderItemVector, version.name, items.shape[1], metric="ip")
    version.dimensions = int(items.shape[1])
    version.save(update_fields=["dimensions"])


def drop_vectors(name: str) -> None:
    with transaction.atomic():
        RecommenderItemVector.objects.filter(model_version=name).delete()
        ShopperVector.objects.filter(model_version=name).delete()
    vector_index.drop_hnsw_index(RecommenderItemVector, name)


def configuration_top(dataset: Dataset, split: Split, model_top_lists: np.ndarray, weights: dict[str, float],
                      k: int = GUARD_K, itemknn_params: dict | None = None,
                      new_product_share: float | None = None) -> np.ndarray:
    """int64 (U, k) lists a configuration serves on the split's test shoppers: its trained
    model's lists blended with item-kNN (fitted with ``itemknn_params``) and the session model
    by ``weights``, with its share of new-product places (None: the setting's), as
    :func:`~visrec.services.foryou.recommend.recommend_for_subject` serves."""
    session = session_top(split, max(SESSION_DEPTH, k))
    parts = {"model": model_top_lists[:, :k], "session": session[:, :k]}
    if weights.get("itemknn", 0) > 0:
        parts["itemknn"] = model_top(fit_model("itemknn", dataset, split.train, params=itemknn_params), split, k)
    if weights.get("popularity", 0) > 0:
        parts["popularity"] = model_top(fit_model("popularity", dataset, split.train), split, k)
    return with_new_products(blend_top(parts, weights, k), new_products_top(session, split.item_counts, k), k,
                             new_product_share)


def served_configuration_top(active: ModelVersion, dataset: Dataset, split: Split, k: int = GUARD_K) -> np.ndarray:
    """The served version's configuration (model, hyper-parameters, blend weights) fitted on
    the split's training events, and what it serves on the test shoppers.

    Measuring the saved model itself would be unfair both ways: it was trained on data that
    may include the held-out baskets (it wins every comparison), or on older data.
    """
    metrics = active.metrics or {}
    name = metrics.get("model") or visrec_settings.RECOMMENDER
    if name not in MODELS or metrics.get("dp"):
        raise LookupError(f"{active.name} has no configuration to retrain ({name})")
    model = fit_model(name, dataset, split.train, params=metrics.get("params") or None)
    weights = metrics.get("blend") if isinstance(metrics.get("blend"), dict) else unchosen_blend()["weights"]
    # Versions from before item-kNN had EASE weights (no "itemknn_params") served cosines.
    knn = metrics["itemknn_params"] if isinstance(metrics.get("itemknn_params"), dict) else {"similarity": "cosine"}
    share = metrics.get("new_product_share")
    return configuration_top(dataset, split, model_top(model, split, k), weights, k, itemknn_params=knn,
                             new_product_share=share if isinstance(share, (int, float)) else None)


def guard_verdict(split: Split, candidate: np.ndarray, baseline: np.ndarray | None, k: int = GUARD_K) -> dict:
    """Whether the candidate may replace the served configuration, and why, in words.

    Paired over the same test shoppers, the difference of Recall@k with a 95% bootstrap
    interval: promoted unless significantly worse; with fewer than ``GUARD_MIN_SHOPPERS``
    test shoppers there is not enough evidence either way, and the served model stays.
    """
    new_values = recall_values(candidate, split.relevant, k)
    out = {"shoppers": int(len(new_values)), "candidate": float(new_values.mean()) if len(new_values) else 0.0,
           "metric": f"recall@{k}"}
    if baseline is None:
        return {**out, "promote": True, "served": None,
                "verdict": f"Recall@{k} {out['candidate']:.4f} on {out['shoppers']} shoppers; nothing served to compare"}
    old_values = recall_values(baseline, split.relevant, k)
    difference, low, high = paired_bootstrap(new_values, old_values)
    out.update(served=float(old_values.mean()), difference=difference, ci95=[low, high])
    told = (f"Recall@{k} {out['candidate']:.4f} against {out['served']:.4f} for the served configuration "
            f"retrained on the same split (difference {difference:+.4f}, 95% CI {low:+.4f} to {high:+.4f}, "
            f"{out['shoppers']} shoppers)")
    if out["shoppers"] < visrec_settings.GUARD_MIN_SHOPPERS:
        return {**out, "promote": False, "verdict": f"not enough evidence: {out['shoppers']} test shoppers "
                f"(fewer than GUARD_MIN_SHOPPERS = {visrec_settings.GUARD_MIN_SHOPPERS}); {told}"}
    if high < 0:
        return {**out, "promote": False, "verdict": f"significantly worse: {told}"}
    word = "significantly better" if low > 0 else "no significant difference"
    return {**out, "promote": True, "verdict": f"{word}: {told}"}


def train_recommender(model_name: str | None = None, progress=None, as_of=None) -> ModelVersion:
    """Trains, guards, publishes and (if not worse) switches the "for you" model.

    ``as_of``: the end of the training window (default: the newest event, see
    :func:`~visrec.services.foryou.interactions.reference_time`)."""
    model_name = model_name or visrec_settings.RECOMMENDER
    model_name, params = dp_training.training_plan(model_name)  # DP training hook: the DP model when enabled
    embedder = active_embedder_version()
    if embedder is None:
        raise NothingToLearn("no image vectors yet; run visrec_index first")
    until = reference_time(as_of)
    since = until - timezone.timedelta(days=visrec_settings.TRAINING_WINDOW_DAYS)
    dataset = load_dataset(embedder.name, since=since, until=until + timezone.timedelta(microseconds=1))
    if len(dataset.users) == 0:
        raise NothingToLearn(f"no events in the {visrec_settings.TRAINING_WINDOW_DAYS} days before "
                             f"{until:%Y-%m-%d %H:%M}")
    split = make_split(dataset)
    if len(split.users) == 0:
        raise NothingToLearn("no returning shopper bought something new in the held-out baskets or days; "
                             "nothing to measure on")
    private = params is not None
    if not private:
        blend = select_blend(dataset, split.train, model_name)
        params = blend.get("params") or None  # chosen on validation, before the held-out baskets
    else:  # DP training hook: choosing weights would fit a non-private model on the events
        blend = unchosen_blend()
    weights = blend["weights"]
    candidate = fit_model(model_name, dataset, split.train, progress=progress, params=params)
    candidate_top = model_top(candidate, split, GUARD_K)
    new = recall_at_k(candidate_top, split.relevant, GUARD_K)
    knn_params = blend.get("itemknn_params") or {}
    share = blend.get("new_product_share")
    served = configuration_top(dataset, split, candidate_top, weights, itemknn_params=knn_params,
                               new_product_share=share)
    blend_recall = recall_at_k(served, split.relevant, GUARD_K)
    active = active_version(ModelKind.RECOMMENDER)
    baseline = None
    if active is not None:
        try:  # like with like: the served configuration retrained on the same split
            baseline = served_configuration_top(active, dataset, split)
        except Exception:  # noqa: BLE001 - an unmeasurable served model cannot block a new one
            logger.exception("visrec: the served configuration of %s could not be retrained", active.name)
    guard = guard_verdict(split, served, baseline)
    old = guard.get("served")
    name = f"{model_name}-{timezone.now():%Y%m%dT%H%M%S%f}"
    metrics = {"model": model_name, "embedder": embedder.name, f"recall@{GUARD_K}": new,
               f"active_recall@{GUARD_K}": old, "test_shoppers": int(len(split.users)), "guard": guard,
               "validation": visrec_settings.VALIDATION,
               "train_events": int(split.train.sum()), "holdout_days": visrec_settings.HOLDOUT_DAYS,
               "window_end": until.isoformat(),
               "blend": weights, f"blend_recall@{GUARD_K}": blend_recall,
               f"blend_validation_recall@{BLEND_K}": blend[f"validation_recall@{BLEND_K}"],
               "blend_validation_shoppers": blend["validation_shoppers"],
               "params": blend.get("params", {}), "params_tried": blend.get("params_tried", []),
               "itemknn_params": knn_params, "itemknn_params_tried": blend.get("itemknn_params_tried", []),
               "new_product_share": (visrec_settings.RECOMMENDER_NEW_PRODUCT_SHARE if share is None else share),
               "new_product_shares_tried": blend.get("new_product_shares_tried", []),
               **dp_training.privacy_metrics(candidate)}
    version = ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name=name, metrics=metrics)
    if not guard["promote"]:
        version.notes = f"kept {active.name}: {guard['verdict']}"
        version.save(update_fields=["notes"])
        logger.info("visrec: %s", version.notes)
        return version
    try:
        final = fit_model(model_name, dataset, None, progress=progress, params=params)
        if params is not None:  # DP training hook: the epsilon of the model that is published
            version.metrics = {**version.metrics, **dp_training.privacy_metrics(final, guardrail=candidate)}
            version.save(update_fields=["metrics"])
        neighbours = (fit_model("itemknn", dataset, None, params=knn_params) if weights.get("itemknn", 0) > 0
                      else None)
        warm = np.bincount(dataset.interactions().items, minlength=len(dataset.products)) > 0
        popularity = (fit_model("popularity", dataset, None).item_scores() if weights.get("popularity", 0) > 0
                      else None)
        bundle = Bundle(final, dataset.subjects, dataset.products, neighbours, warm, popularity)
        version.artefact.save(f"{name}.npz", ContentFile(bundle.to_bytes()), save=True)
        publish(version, final, dataset)
        activate_version(version, note=f"promoted: {guard['verdict']}")
    except Exception:
        drop_vectors(name)
        version.notes = "training failed; the previous model keeps serving"
        version.save(update_fields=["notes"])
        raise
    return version
