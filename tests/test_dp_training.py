"""Tests for DP training: the dp_itembpr model, shopper-level clipping, the nightly hook, the sweep.

The model runs the shared recommender contract (without DP) on the synthetic shop of
``test_recommenders``; a second synthetic shop plants a preference only collaborative
learning can find (shoppers of kind k also buy kind k + 10, which looks different).
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from visrec.models import ModelVersion, ShopperVector
from visrec.recommenders import MODELS, DPItemBPRRecommender, Interactions, Recommender, load_model
from visrec.recommenders.dp_itembpr import bounded_history
from visrec.recommenders.dp_sgd import ShopperBatchModel, default_delta, sample_pairs, torch_threads
from visrec.services.foryou import training as recommender_training
from visrec.services.privacy import dp_training

from .test_foryou import shop  # noqa: F401 - the fixture
from .test_recommenders import (  # noqa: F401 - fixtures and the shared contract
    N_ITEMS,
    N_KINDS,
    RecommenderContract,
    features,
    interactions,
    items_of_kind,
    kind_of,
)


def partner(kind: int) -> int:
    return (kind + N_KINDS // 2) % N_KINDS


def make_partner_shop(seed: int = 0, n_users: int = 300) -> Interactions:
    """Every shopper loves kind k (50% of events) and its partner kind k+10 (40%), rest random."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(n_users):
        kind = user % N_KINDS
        n = int(rng.integers(20, 30))
        which = rng.choice(3, size=n, p=[0.5, 0.4, 0.1])
        picked = np.where(which == 0, rng.choice(items_of_kind(kind, warm=True), size=n),
                          np.where(which == 1, rng.choice(items_of_kind(partner(kind), warm=True), size=n),
                                   rng.integers(0, N_ITEMS, size=n)))
        users.append(np.full(n, user))
        items.append(picked)
    users, items = np.concatenate(users), np.concatenate(items)
    return Interactions(users=users, items=items, weights=np.ones(len(users), np.float32),
                        times=np.zeros(len(users)), n_users=n_users, n_items=N_ITEMS)


def partner_fraction(model: Recommender, kind: int) -> float:
    """Share of the partner kind in the top 10 of a new shopper who saw kind ``kind`` only."""
    history = items_of_kind(kind, warm=True)[:5]
    ids, _ = model.recommend(-1, n=10, exclude=items_of_kind(kind), history_items=history)
    return float(np.mean(kind_of(ids) == partner(kind)))


# --------------------------------------------------------------------------- the model


class TestDPItemBPR(RecommenderContract):
    @staticmethod
    def model_factory() -> Recommender:
        return DPItemBPRRecommender(factors=8, visual_factors=16, epochs=10, batch_shoppers=64, seed=1)

    def test_needs_features(self, interactions):
        with pytest.raises(ValueError, match="item_features"):
            DPItemBPRRecommender().fit(interactions)

    def test_trained_without_dp_reports_no_epsilon(self, model):
        assert model.privacy["dp"] is False and model.privacy["epsilon"] is None
        assert np.abs(model.item_vectors()[:, :8]).max() > 0  # per-item factors are learned without DP
        assert dp_training.privacy_metrics(model) == {}


def test_registry_has_the_dp_model():
    assert MODELS["dp_itembpr"] is DPItemBPRRecommender


def test_bounded_history_sums_repeats_and_keeps_the_most_weighted():
    items, weights = bounded_history(np.array([5, 3, 5, 9, 3, 5, 7]), np.array([1, 4, 1, 2, 4, 1, 0], np.float32), 2)
    assert items.tolist() == [3, 5] and weights.tolist() == [8.0, 3.0]


def test_learns_a_planted_preference_the_pictures_do_not_show(features):
    shop_events = make_partner_shop()
    untrained = DPItemBPRRecommender(factors=16, epochs=0, seed=0).fit(shop_events, features)
    trained = DPItemBPRRecommender(factors=16, epochs=15, batch_shoppers=64, seed=0).fit(shop_events, features)
    kinds = range(0, N_KINDS, 3)
    assert np.mean([partner_fraction(untrained, k) for k in kinds]) < 0.3
    assert np.mean([partner_fraction(trained, k) for k in kinds]) >= 0.8


def test_dp_training_spends_at_most_the_target_epsilon(features):
    shop_events = make_partner_shop(n_users=200)
    model = DPItemBPRRecommender(factors=8, epochs=3, batch_shoppers=50, epsilon=2.0, seed=0).fit(shop_events, features)
    privacy = model.privacy
    assert privacy["dp"] is True and privacy["accountant"] == "rdp"
    assert 1.8 <= privacy["epsilon"] <= 2.0
    assert privacy["noise_multiplier"] > 0.3
    assert privacy["delta"] == pytest.approx(default_delta(200)) and privacy["delta"] < 1 / 200
    assert privacy["steps"] == 12 and privacy["sample_rate"] == pytest.approx(0.25)
    vectors = model.item_vectors()
    assert np.all(np.isfinite(vectors))
    # Under DP only the projection of the pictures is learned by default: no per-item numbers.
    assert np.all(vectors[:, :8] == 0)
    np.testing.assert_allclose(vectors, model.item_vectors_for_features(features), rtol=1e-6, atol=1e-6)
    loaded = load_model(io.BytesIO(model.to_bytes()))
    assert loaded.privacy["epsilon"] == pytest.approx(privacy["epsilon"])
    assert loaded.privacy["noise_multiplier"] == pytest.approx(privacy["noise_multiplier"])
    metrics = dp_training.privacy_metrics(loaded)
    assert metrics["dp"] is True and metrics["epsilon"] == pytest.approx(privacy["epsilon"])


@pytest.mark.slow
def test_dp_noise_changes_the_model_and_a_smaller_epsilon_needs_more_noise(features):
    shop_events = make_partner_shop(n_users=100)
    common = dict(factors=8, epochs=2, batch_shoppers=20, seed=0)
    small = DPItemBPRRecommender(epsilon=1.0, **common).fit(shop_events, features)
    large = DPItemBPRRecommender(epsilon=2.0, **common).fit(shop_events, features)
    again = DPItemBPRRecommender(epsilon=2.0, **common).fit(shop_events, features)
    assert small.privacy["noise_multiplier"] > large.privacy["noise_multiplier"] > 0
    # The noise comes from fresh entropy, not from ``seed``: the same seed gives another model.
    assert not np.allclose(large.item_vectors(), again.item_vectors())


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # Opacus hooks on index inputs
def test_each_shopper_moves_the_gradient_by_at_most_max_grad_norm(features):
    """Opacus's per-shopper clipping: a shopper with many heavy events counts at most C."""
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    clip = 0.01
    rng = np.random.default_rng(0)
    n_items = features.shape[0]
    # Shopper 0: 40 items with weight 8 (many purchases); shopper 1: two views.
    items = np.full((2, 40), n_items, dtype=np.int64)
    weights = np.zeros((2, 40), dtype=np.float32)
    items[0] = rng.choice(n_items, size=40, replace=False)
    weights[0] = 8.0
    items[1, :2], weights[1, :2] = [3, 4], 1.0
    slots, negatives = sample_pairs(items, weights, n_items, 8, rng)
    batch = [torch.from_numpy(a) for a in (items, weights, slots, negatives)]

    def fresh() -> ShopperBatchModel:
        return ShopperBatchModel(n_items, features, 8, 16, torch.Generator().manual_seed(0))

    with torch_threads(1):
        # The exact gradient of each shopper alone, by plain autograd.
        raw = []
        for row in range(2):
            model = fresh()
            model(*[t[row:row + 1] for t in batch]).sum().backward()
            raw.append(_flat_grad(model))
        assert raw[0].norm() > 10 * clip and raw[1].norm() > clip  # both would be clipped
        # Opacus: per-shopper norms by ghost clipping, then the clipped sum (no noise).
        model = fresh()
        module = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="mean",
                                                      max_grad_norm=clip, use_ghost_clipping=True)
        optimiser = DPOptimizerFastGradientClipping(torch.optim.SGD(model.parameters(), lr=0.0),
                                                    noise_multiplier=0.0, max_grad_norm=clip,
                                                    expected_batch_size=2, loss_reduction="mean")
        optimiser.zero_grad()
        DPTensorFastGradientClipping(module, optimiser, module(*batch), "mean").backward()
        norms = module.per_sample_gradient_norms
        torch.testing.assert_close(norms, torch.stack([g.norm() for g in raw]), rtol=1e-4, atol=1e-6)
        clipped_sum = _flat_grad(model)
    expected = sum(g * min(1.0, clip / float(g.norm())) for g in raw)
    torch.testing.assert_close(clipped_sum, expected, rtol=1e-4, atol=1e-7)
    # Removing the heavy shopper changes the summed gradient by exactly their clipped part: norm <= C.
    without_heavy = raw[1] * min(1.0, clip / float(raw[1].norm()))
    assert float((clipped_sum - without_heavy).norm()) <= clip * (1 + 1e-4)


def test_torch_threads_restores_the_previous_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------- settings and services


def test_epsilons_are_parsed_with_clear_errors():
    assert dp_training.parse_epsilons("8, 1,4,4") == [1.0, 4.0, 8.0]
    for bad, message in (("a,2", "not a number"), ("0", "positive"), ("-1", "positive"), (",", "no epsilon")):
        with pytest.raises(ValueError, match=message):
            dp_training.parse_epsilons(bad)


def test_training_plan_follows_the_setting(settings):
    assert dp_training.training_plan("vbpr") == ("vbpr", None)
    settings.VISREC = {**settings.VISREC, "RECOMMENDER_DP": {"ENABLED": True, "EPSILON": 4}}
    name, params = dp_training.training_plan("vbpr")
    assert name == "dp_itembpr" and params == {"epsilon": 4.0, "delta": None, "max_grad_norm": 1.0}
    for bad, message in (({"EPSILON": 0}, "positive"), ({"DELTA": 1.5}, "DELTA"), ({"MAX_GRAD_NORM": -1}, "MAX_GRAD")):
        settings.VISREC = {**settings.VISREC, "RECOMMENDER_DP": {"ENABLED": True, **bad}}
        with pytest.raises(ValueError, match=message):
            dp_training.training_plan("vbpr")


@pytest.mark.slow
@pytest.mark.django_db
def test_nightly_training_with_dp_records_the_epsilon_spent(shop, settings):  # noqa: F811
    settings.VISREC = {**settings.VISREC, "RECOMMENDER": "vbpr",
                       "RECOMMENDER_DP": {"ENABLED": True, "EPSILON": 4.0, "DELTA": 1e-3, "MAX_GRAD_NORM": 1.0}}
    version = recommender_training.train_recommender()
    assert version.name.startswith("dp_itembpr-") and version.is_active
    metrics = ModelVersion.objects.get(pk=version.pk).metrics
    assert metrics["model"] == "dp_itembpr" and metrics["dp"] is True
    assert 3.6 <= metrics["epsilon"] <= 4.0 and metrics["delta"] == 1e-3
    assert metrics["noise_multiplier"] > 0 and metrics["max_grad_norm"] == 1.0
    assert 3.6 <= metrics["guardrail_epsilon"] <= 4.0  # the candidate that decided on promotion
    bundle = recommender_training.load_bundle(version)
    assert bundle.model.privacy["epsilon"] == pytest.approx(metrics["epsilon"])
    assert ShopperVector.objects.filter(model_version=version.name).count() == 40


@pytest.mark.slow
@pytest.mark.django_db
def test_evaluate_prints_recall_against_epsilon(shop, tmp_path, capsys):  # noqa: F811
    call_command("visrec_evaluate", "--output", str(tmp_path), "--dp-epsilons", "8,2", "--dp-repeats", "2")
    out = capsys.readouterr().out
    assert "vbpr" in out and "Recall@20 against epsilon" in out  # the main table is still there
    table = out.split("Recall@20 against epsilon", 1)[1].splitlines()
    header = next(line for line in table if line.startswith("epsilon"))
    assert "recall@20" in header and "ndcg@20" in header and "epsilon_spent" in header
    labels = [line.split()[0] for line in table if line.split() and line.split()[0] in ("no", "2", "8", "0")]
    assert labels == ["no", "2", "8", "0"]
    report = json.loads((tmp_path / "results.json").read_text())
    rows = report["dp"]["rows"]
    assert [r["epsilon"] for r in rows] == [None, 2.0, 8.0, 0.0] and report["dp"]["repeats"] == 2
    assert rows[0]["epsilon_spent"] is None and rows[0]["noise_multiplier"] == 0.0
    assert rows[-1]["epsilon_spent"] == 0.0 and rows[-1]["noise_multiplier"] == 0.0  # untrained
    assert all(row["recall@20_sd"] >= 0 for row in rows)
    for row, target in zip(rows[1:], (2.0, 8.0)):
        assert 0.9 * target <= row["epsilon_spent"] <= target and row["noise_multiplier"] > 0
        assert 0.0 <= row["recall@20"] <= 1.0
    assert report["dp"]["test_shoppers"] == report["split"]["test_shoppers"]


@pytest.mark.django_db
def test_evaluate_refuses_bad_epsilons(tmp_path):
    with pytest.raises(CommandError, match="--dp-epsilons"):
        call_command("visrec_evaluate", "--output", str(tmp_path), "--dp-epsilons", "one")
    with pytest.raises(CommandError, match="--dp-repeats"):
        call_command("visrec_evaluate", "--output", str(tmp_path), "--dp-epsilons", "1", "--dp-repeats", "0")
