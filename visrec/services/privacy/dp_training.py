"""Differentially private training of "for you": the nightly hook and the epsilon sweep.

``VISREC["RECOMMENDER_DP"]["ENABLED"]`` switches nightly training to the ``dp_itembpr``
model trained with DP-SGD (Opacus) to at most ``EPSILON``; the epsilon actually spent goes
into the model version's metrics. :func:`epsilon_sweep` (``visrec_evaluate --dp-epsilons``)
measures what that privacy costs in Recall@20 / NDCG@20 on the evaluation's temporal split,
so a shop can choose its epsilon. See PRIVACY.md, "DP training", for what it protects.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ...conf import DEFAULTS, visrec_settings
from ...evaluation.recommendations import all_metrics
from ...recommenders import Recommender
from ...recommenders.dp_itembpr import DPItemBPRRecommender
from ..foryou.evaluation import fit_model, make_split, model_top
from ..foryou.interactions import Dataset

#: The model DP training uses (its only trained parameters are item-side).
DP_MODEL = DPItemBPRRecommender.name


def dp_settings() -> dict:
    """``VISREC["RECOMMENDER_DP"]`` over its defaults (a partial dict keeps the other keys)."""
    return {**DEFAULTS["RECOMMENDER_DP"], **(visrec_settings.RECOMMENDER_DP or {})}


def dp_params(epsilon: float | None, config: dict | None = None) -> dict:
    """Hyper-parameters of :data:`DP_MODEL` for a target epsilon (None: the same model without DP)."""
    config = config or dp_settings()
    if epsilon is None:
        return {"epsilon": None}
    epsilon = float(epsilon)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a positive number, not {epsilon!r}")
    delta = config.get("DELTA")
    if delta is not None and not 0 < float(delta) < 1:
        raise ValueError(f'RECOMMENDER_DP["DELTA"] must lie strictly between 0 and 1 (or be None), not {delta!r}')
    max_grad_norm = float(config["MAX_GRAD_NORM"])
    if not math.isfinite(max_grad_norm) or max_grad_norm <= 0:
        raise ValueError(f'RECOMMENDER_DP["MAX_GRAD_NORM"] must be positive, not {config["MAX_GRAD_NORM"]!r}')
    return {"epsilon": epsilon, "delta": None if delta is None else float(delta), "max_grad_norm": max_grad_norm}


def training_plan(model_name: str) -> tuple[str, dict | None]:
    """The model and hyper-parameters nightly training uses: the DP model when DP is enabled.

    With DP enabled the configured model is replaced, whatever it is: the shop promised
    its shoppers DP training.
    """
    config = dp_settings()
    if not config.get("ENABLED"):
        return model_name, None
    return DP_MODEL, dp_params(config["EPSILON"], config)


def privacy_metrics(model: Recommender, guardrail: Recommender | None = None) -> dict:
    """What a DP-trained model spent, for ``ModelVersion.metrics`` ({} for a model without DP).

    ``guardrail_epsilon`` is the epsilon of the candidate fitted on the older events to
    decide on promotion: it saw the same shoppers, so a shopper's loss over the night's run
    is at most the sum of the two (basic composition).
    """
    privacy = getattr(model, "privacy", None) or {}
    if not privacy.get("dp"):
        return {}
    metrics = {"dp": True, **{key: privacy.get(key) for key in
                              ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps",
                               "shoppers", "accountant")}}
    guard = getattr(guardrail, "privacy", None) or {}
    if guard.get("dp"):
        metrics["guardrail_epsilon"] = guard.get("epsilon")
    return metrics


def parse_epsilons(text: str) -> list[float]:
    """``"1,4,8"`` -> ``[1.0, 4.0, 8.0]``; ValueError with a clear message otherwise."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number; give epsilons like 1,4,8") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"epsilon must be positive and finite, not {part}")
        values.append(value)
    if not values:
        raise ValueError("no epsilon given; give epsilons like 1,4,8")
    return sorted(set(values))


def epsilon_sweep(dataset: Dataset, epsilons: Sequence[float], *, holdout_days: float | None = None,
                  ks: Sequence[int] = (10, 20), repeats: int = 1, params: dict | None = None,
                  progress: Callable[[str], None] | None = None, protocol: str | None = None) -> dict:
    """Recall and NDCG of :data:`DP_MODEL` without DP, at every epsilon, and untrained.

    The split is :func:`~visrec.services.foryou.evaluation.make_split`'s (``protocol``), the one
    ``visrec_evaluate``'s main table uses, so the rows compare with its models. The
    untrained model (``epsilon`` 0) learns nothing from other shoppers: its item side is
    the catalogue's pictures only, so it is what DP training should beat to be worth its
    epsilon. DP noise is fresh every training, so one run is one draw: with ``repeats`` > 1
    every row is the mean of that many trainings (seeds ``seed .. seed + repeats - 1``) and
    ``recall@20_sd`` their standard deviation.

    Args:
        dataset: the event log and image vectors.
        epsilons: target epsilons, e.g. ``[1, 4, 8]``.
        repeats: trainings per row.
        params: extra hyper-parameters of the model (the same for every row).

    Returns:
        ``{"model": DP_MODEL, "train_shoppers": S, "test_shoppers": U, "repeats": R, "rows":
        [{"epsilon": None | float, "epsilon_spent", "delta", "noise_multiplier", "recall@20",
        "recall@20_sd", "ndcg@20", ...}]}``: the row without DP first, then the epsilons in
        ascending order, then the untrained row (``epsilon`` 0.0).
    """
    split = make_split(dataset, protocol, holdout_days)
    if len(split.users) == 0:
        raise LookupError("no shopper bought something new in the held-out baskets or days; nothing to evaluate")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    config = dp_settings()
    base = {**DPItemBPRRecommender().get_params(), **(params or {})}
    rows = []
    for epsilon in [None, *sorted(epsilons), 0.0]:
        label = ("without DP" if epsilon is None else "untrained" if epsilon == 0 else f"at epsilon {epsilon:g}")
        runs, model = [], None
        for repeat in range(repeats):
            if progress:
                progress(f"fit {DP_MODEL} {label}" + (f" ({repeat + 1}/{repeats})" if repeats > 1 else ""))
            row_params = {**base, "seed": base["seed"] + repeat}
            row_params.update({"epochs": 0, "epsilon": None} if epsilon == 0 else dp_params(epsilon, config))
            model = fit_model(DP_MODEL, dataset, split.train, params=row_params)
            runs.append(all_metrics(model_top(model, split, max(ks)), split.relevant, split.cold_relevant,
                                    split.item_counts, ks))
        privacy = model.privacy
        metrics = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        rows.append({"epsilon": epsilon, "epsilon_spent": 0.0 if epsilon == 0 else privacy.get("epsilon"),
                     "delta": privacy.get("delta"), "noise_multiplier": privacy.get("noise_multiplier"), **metrics,
                     f"recall@{max(ks)}_sd": float(np.std([run[f"recall@{max(ks)}"] for run in runs]))})
    return {"model": DP_MODEL, "train_shoppers": int(model.privacy["shoppers"]),
            "test_shoppers": int(len(split.users)), "repeats": int(repeats), "rows": rows}
