"""A version's metrics read for a merchant: verdicts in words from really trained versions, tables,
plot data and charts; old, odd and missing metrics never raise."""
from __future__ import annotations

import copy
import re

import pytest

from visrec import charts
from visrec.models import ModelKind, ModelVersion
from visrec.services import model_report as mr
from visrec.services.foryou import training as recommender_training

from .test_foryou import shop  # noqa: F401 - fixture

MINUS = "\u2212"


def table(report: mr.ModelReport, title_start: str) -> mr.Table:
    (found,) = [t for t in report.tables if t.title.startswith(title_start)]
    return found


@pytest.mark.django_db
def test_verdicts_of_really_trained_recommenders(shop, settings):  # noqa: F811 - fixture
    first = recommender_training.train_recommender("vbpr")
    second = recommender_training.train_recommender("bpr")
    settings.VISREC = {**settings.VISREC, "GUARD_MIN_SHOPPERS": 10_000}
    third = recommender_training.train_recommender("bpr")
    shoppers = first.metrics["guard"]["shoppers"]

    said = mr.verdict(first)  # nothing served before: promoted without a comparison
    assert (said.status, said.headline, said.tone) == ("promoted", "Promoted", "good")
    assert said.sentence == (f"Recall@20 {first.metrics['guard']['candidate']:.3f} on {shoppers} shoppers' last "
                             "baskets; nothing was served to compare with, so it was served.")

    said, guard = mr.verdict(second), second.metrics["guard"]
    assert second.is_active and said.status == "promoted"
    low, high = guard["ci95"]
    expected = (f"Recall@20 {guard['candidate']:.3f} vs the served {guard['served']:.3f} (difference "
                f"{guard['difference']:+.3f}, 95% CI {low:+.3f} to {high:+.3f}) on {shoppers} shoppers' last baskets")
    assert said.sentence.endswith(expected.replace("-", MINUS) + ".")
    word = "significantly better" if low > 0 else "no significant difference"
    assert said.sentence.startswith(word + ": ")

    said = mr.verdict(third)
    assert not third.is_active
    assert (said.status, said.headline) == ("not_enough_evidence", "Not enough evidence")
    assert said.sentence.startswith(f"{shoppers} test shoppers, at least 10,000 needed; kept out, the served "
                                    "model stays. Recall@20")

    report = mr.model_report(second)
    lists = table(report, "Lists measured")
    assert lists.columns == ["List", "Recall@20", "Shoppers"]
    labels = [row[0] for row in lists.rows]
    assert labels == ["Trained model alone", "Blend as served (this version)",
                      "Served version, retrained on the same split", "Blend on the validation slice"]
    assert lists.rows[1][1] == f"{second.metrics['blend_recall@20']:.3f}"
    blend = table(report, "Blend weights")
    assert {row[0] for row in blend.rows} == {"Trained model", "Item-kNN (co-interactions)", "Session", "Popularity"}
    assert [p.kind for p in report.plots][:2] == ["bars", "interval"]
    bars = report.plots[0]
    assert [b[0] for b in bars.bars] == ["Model alone", "Blend (this)", "Served version"]
    assert bars.bars[1][4] is True  # the blend highlighted
    assert ("Test shoppers", str(shoppers)) in report.facts


@pytest.mark.django_db
def test_a_significantly_worse_candidate_is_kept_out_in_words(shop, settings, monkeypatch):  # noqa: F811
    from visrec.recommenders import MODELS
    from visrec.recommenders.popularity import PopularityRecommender

    class LeastPopularFirst(PopularityRecommender):
        def fit(self, interactions, features=None, progress=None):
            super().fit(interactions, features, progress)
            self._items = -self._items
            return self

    first = recommender_training.train_recommender("vbpr")
    settings.VISREC = {**settings.VISREC, "RECOMMENDER_NEW_PRODUCT_SHARE": 0}
    monkeypatch.setitem(MODELS, "worst", LeastPopularFirst)
    monkeypatch.setattr(recommender_training, "select_blend", lambda *a, **k: {
        "weights": {"model": 1.0, "itemknn": 0.0, "session": 0.0}, "validation_recall@20": None,
        "validation_shoppers": 0, "params": {}, "params_tried": []})
    worse = recommender_training.train_recommender("worst")
    said = mr.verdict(worse)
    assert (said.status, said.headline, said.tone) == ("kept_out", "Kept out", "bad")
    assert said.sentence.startswith("significantly worse: Recall@20 ")
    assert re.search(rf"difference {MINUS}0\.\d{{3}}, 95% CI {MINUS}0\.\d{{3}} to {MINUS}0\.\d{{3}}\)", said.sentence)
    assert first.name not in said.sentence  # the served name is on the page, not in the verdict
    svg = charts.interval_chart("d", worse.metrics["guard"]["difference"], *worse.metrics["guard"]["ci95"])
    assert "below zero (worse)" in svg


def test_verdict_of_a_fine_tuned_embedder_from_its_stored_metrics():
    """The shape :func:`visrec.services.catalogue.finetuning.train_embedder` stores (read off a real run)."""
    metrics = {
        "backbone": "efficientnet_lite0", "base_version": "effnet@1",
        "fusion": {"bins": 8, "colour": 0.4, "category": 0.3, "selection_products": 18,
                   "selection_precision": {"0.0,0.0": 0.4556, "0.4,0.3": 0.4556, "0.4,0.0": 0.4389}},
        "training": {"images": 42, "epochs_run": 3, "final_loss": 5.858, "supervised": True, "viewed_images": 60,
                     "held_out_images": 18, "config": {"lr": 0.002}},
        "evaluation": {"new": 0.5, "old": 0.4555, "metric": "held-out precision@10 (same category)",
                       "old_version": "effnet@1", "held_out_products": 18},
        "hnsw": {"ef_search": 80, "target": 0.98, "reached": True, "recall": {"40": 0.95, "80": 0.99, "160": 1.0},
                 "recall_low": {"40": 0.93, "80": 0.98, "160": 1.0}, "sample": 60, "products": 60, "hnsw_m": 16,
                 "hnsw_ef_construction": 128, "nn_similarity": {"p05": 0.66, "p50": 0.99}},
    }
    version = ModelVersion(kind=ModelKind.EMBEDDER, name="effnet@1+ft1", metrics=metrics,
                           notes="promoted: held-out precision@10 (same category) 0.5000 >= 0.4555 of effnet@1")
    said = mr.verdict(version)
    assert (said.status, said.headline) == ("promoted", "Promoted")
    assert said.sentence == ("better: held-out precision@10 (same category) 0.500 vs 0.456 of effnet@1 on 18 "
                             "held-out products.")
    report = mr.model_report(version)
    before_after = table(report, "Before and after")
    assert before_after.rows == [["Before: effnet@1", "0.456"], ["After: effnet@1+ft1", "0.500"]]
    grid = table(report, "Precision@10 of the fusions tried")
    assert grid.columns == ["Colour \\ category", "0.0", "0.3"]
    assert grid.rows[1] == ["0.4", "0.439", "0.456 ✓"]
    calibration = table(report, "HNSW calibration")
    assert [row[0] for row in calibration.rows] == ["40", "80", "160"] and calibration.rows[1][3] == "chosen"
    curve = next(p for p in report.plots if p.kind == "line")
    assert curve.points == [(40, 0.95), (80, 0.99), (160, 1.0)] and curve.highlight_x == 80 and curve.target == 0.98
    worse = ModelVersion(kind=ModelKind.EMBEDDER, name="effnet@1+ft2",
                         metrics={**metrics, "evaluation": {**metrics["evaluation"], "new": 0.2}})
    assert mr.verdict(worse).status == "kept_out" and "worse: " in mr.verdict(worse).sentence


def test_pretrained_failed_and_switched_versions():
    pretrained = ModelVersion(kind=ModelKind.EMBEDDER, name="effnet@1", notes="catalogue complete: {...}",
                              metrics={"backbone": "efficientnet_lite0", "base_version": "effnet@1"})
    assert mr.verdict(pretrained).status == "pretrained"
    assert "(efficientnet_lite0)" in mr.verdict(pretrained).sentence
    failed = ModelVersion(kind=ModelKind.RECOMMENDER, name="bpr-1", metrics={"guard": {"candidate": 0.2}},
                          notes="training failed; the previous model keeps serving")
    assert (mr.verdict(failed).status, mr.verdict(failed).tone) == ("failed", "bad")
    switched = ModelVersion(kind=ModelKind.RECOMMENDER, name="bpr-2", notes="switched in the admin by admin",
                            metrics={"guard": {"candidate": 0.2, "served": None, "shoppers": 5}})
    report = mr.model_report(switched)
    assert report.verdict.status == "promoted"  # the verdict is read from the metrics, not the overwritten notes
    assert report.switch_note == "switched in the admin by admin"


ODD_METRICS = [
    None, {}, [], "text", 3, {"guard": None}, {"guard": "promoted"}, {"guard": []},
    {"guard": {"candidate": "0.2", "served": {}, "ci95": "wide"}}, {"guard": {"candidate": float("nan")}},
    {"guard": {"candidate": 0.2, "served": 0.1, "ci95": [None, 0.3], "difference": "x"}},
    {"guard": {"candidate": 0.2, "served": 0.1, "ci95": [0.1], "shoppers": "many"}},
    {"recall@20": "high", "blend_recall@20": None, "active_recall@20": True, "ndcg@10": 0.3},
    {"blend": [0.5, 0.5], "params_tried": "all", "params": None},
    {"blend": {"model": "half"}, "params_tried": [None, 3, {"params": "x"}, {"params": {"a": 1}, "recall@20": "?"}]},
    {"dp": True, "epsilon": None}, {"evaluation": {"old": None, "new": 0.3}}, {"evaluation": "done"},
    {"fusion": {"selection_precision": {"bad": 1, "0.1": 2, "0.1,x": 3, "0.2,0.1": "y"}}}, {"fusion": 7},
    {"training": {"loss_history": [1.0, None, "x", 0.5], "final_loss": "low"}}, {"training": []},
    {"hnsw": {"recall": {"forty": 1.0, "80": "x", "-5": 0.2}, "ef_search": "eighty"}}, {"hnsw": {"recall": [1, 2]}},
    {"hnsw": {"skipped": "5 products (fewer than 50): not calibrated"}}, {"hnsw": "calibrated"},
    {"validation": "basket", "holdout_days": "seven", "window_end": None, "test_shoppers": -1},
    {"weird": {"nested": [1, {"deeper": None}]}, "count": 12, "ratio": 0.5, "flag": True},
]


@pytest.mark.parametrize("kind", [ModelKind.RECOMMENDER, ModelKind.EMBEDDER, "imported"])
@pytest.mark.parametrize("metrics", ODD_METRICS, ids=range(len(ODD_METRICS)))
def test_old_odd_and_missing_metrics_never_raise(kind, metrics):
    for notes in ("", None, "kept x: y", "pretrained backbone"):
        report = mr.model_report(ModelVersion(kind=kind, name="odd@1", metrics=metrics, notes=notes))
        assert report.verdict.headline and isinstance(report.verdict.sentence, str)
        for plot in report.plots:  # whatever is drawn, draws
            svg = _draw(plot)
            assert svg.startswith("<svg") and svg.endswith("</svg>")
        for t in report.tables:
            assert all(isinstance(cell, str) for row in t.rows for cell in row)


def test_scrambled_real_metrics_never_raise():
    """Every value of real metrics replaced, one at a time, by something odd."""
    real = {"model": "vbpr", "recall@20": 0.3, "active_recall@20": 0.28, "test_shoppers": 31,
            "guard": {"shoppers": 31, "candidate": 0.31, "metric": "recall@20", "served": 0.28, "difference": 0.03,
                      "ci95": [-0.01, 0.07], "promote": True, "verdict": "no significant difference: ..."},
            "validation": "basket", "blend": {"model": 0.7, "session": 0.3}, "blend_recall@20": 0.31,
            "params": {"reg_bias": 0.01}, "params_tried": [{"params": {"reg_bias": 0.01}, "recall@20": 0.3}],
            "hnsw": {"ef_search": 40, "recall": {"40": 1.0}}, "evaluation": {"old": 0.1, "new": 0.2}}
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((*path, key))
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                paths.append((*path, i))
                walk(value, (*path, i))

    walk(real, ())
    for path in paths:
        for odd in (None, "x", [], {}, float("inf"), -1, True):
            metrics = copy.deepcopy(real)
            node = metrics
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = odd
            for kind in (ModelKind.RECOMMENDER, ModelKind.EMBEDDER):
                report = mr.model_report(ModelVersion(kind=kind, name="x", metrics=metrics))
                for plot in report.plots:
                    _draw(plot)


def _draw(plot: mr.Plot) -> str:
    from visrec.admin.versions import plot_svg

    return plot_svg(plot)


def test_numbers_are_written_with_a_real_minus_and_a_sign():
    assert mr.signed(-0.004) == f"{MINUS}0.004" and mr.signed(0.016) == "+0.016"
    assert mr.fmt(None) == "—" and mr.fmt(1234) == "1,234" and mr.fmt(float("nan")) == "—"
