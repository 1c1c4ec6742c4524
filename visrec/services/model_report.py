"""A model version's metrics read for a merchant: the guardrail's verdict in words, tables, plot data.

Reads only ``ModelVersion.metrics`` and ``notes`` (no other query), as nightly training
writes them:

* a recommender (:func:`visrec.services.foryou.training.train_recommender`): ``guard`` (the
  paired comparison with the served configuration: ``candidate``, ``served``,
  ``difference``, ``ci95``, ``shoppers``, ``promote``, ``verdict``), ``recall@20`` (the
  trained model alone), ``blend_recall@20`` (the blend as served), ``active_recall@20``,
  ``blend`` (weights), ``params``/``params_tried``, the DP accounting when trained with DP;
* an embedder (:func:`visrec.services.catalogue.finetuning.train_embedder`): ``evaluation``
  (old and new score of the held-out products), ``fusion``, ``training``; any served one
  ``hnsw`` (the calibration: recall@10 for each ``ef_search`` tried).

Versions made by an older visrec, imported weights and hand-made rows have some of these,
none, or odd values: whatever is missing or unreadable is left out; :func:`model_report`
never raises on a version's contents.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..models import ModelKind, ModelVersion

logger = logging.getLogger(__name__)

#: Words for the parts of the "for you" blend.
PART_NAMES = {"model": "Trained model", "itemknn": "Item-kNN (co-interactions)", "session": "Session",
              "popularity": "Popularity"}
#: Row names of the list-level metric keys ``<prefix><metric>@<k>``.
LIST_NAMES = {"": "Trained model alone", "blend_": "Blend as served (this version)",
              "active_": "Served version, retrained on the same split",
              "blend_validation_": "Blend on the validation slice"}
#: The same, short enough for a chart's axis.
BAR_NAMES = {"": "Model alone", "blend_": "Blend (this)", "active_": "Served version"}
METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision", "hit_rate": "Hit rate",
                "mrr": "MRR", "map": "MAP"}
LIST_METRIC = re.compile(r"^(blend_validation_|blend_|active_|)(recall|ndcg|precision|hit_rate|mrr|map)@(\d+)$")
#: Metric keys the report reads itself (not repeated under "Other numbers").
KNOWN_KEYS = {"model", "embedder", "test_shoppers", "guard", "validation", "train_events", "holdout_days",
              "window_end", "blend", "blend_validation_shoppers", "params", "params_tried", "backbone",
              "base_version", "fusion", "training", "evaluation", "hnsw", "nn_similarity", "dp", "epsilon", "delta",
              "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "shoppers", "accountant",
              "guardrail_epsilon"}
MINUS = "\u2212"


@dataclass
class Verdict:
    """Why the version is or is not served, in words.

    ``status``: ``promoted``, ``kept_out``, ``not_enough_evidence``, ``failed``, ``pretrained``
    or ``no_record``; ``tone``: ``good``, ``bad`` or ``neutral`` (for styling, never the only cue).
    """

    status: str
    headline: str
    sentence: str
    tone: str = "neutral"

    @property
    def text(self) -> str:
        """Headline and sentence in one line (the changelist column, the health page)."""
        return f"{self.headline}: {self.sentence}" if self.sentence else self.headline


@dataclass
class Table:
    """A table: ``rows`` of cells (strings), the first cell of each row its label."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Plot:
    """Data for one small chart (drawn by :mod:`visrec.charts`).

    ``kind``: ``bars`` (``bars``: ``(label, value, low, high, highlight)``), ``line``
    (``points``: ``(x, y)``, ``target``, ``highlight_x``, ``log_x``) or ``interval``
    (``value``, ``low``, ``high``).
    """

    kind: str
    title: str
    y_label: str = ""
    x_label: str = ""
    bars: list[tuple[str, float, float | None, float | None, bool]] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    target: float | None = None
    highlight_x: float | None = None
    log_x: bool = False
    value: float | None = None
    low: float | None = None
    high: float | None = None
    note: str = ""


@dataclass
class ModelReport:
    """Everything the version page shows besides the raw JSON."""

    name: str
    kind: str
    is_served: bool
    verdict: Verdict
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    switch_note: str = ""


# --- reading odd values safely ------------------------------------------------------------------

def _num(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools, strings, NaN and the like are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals and a real minus sign; anything else as text, "—" for None."""
    number = _num(value)
    if number is None:
        return "—" if value is None or isinstance(value, float) else str(value)
    if isinstance(value, int):
        return f"{value:,}".replace("-", MINUS)
    return f"{number:.{digits}f}".replace("-", MINUS)


def signed(value: float, digits: int = 3) -> str:
    """``+0.016`` / ``−0.004``."""
    return f"{value:+.{digits}f}".replace("-", MINUS)


def _metrics(version: ModelVersion) -> dict:
    return _dict(getattr(version, "metrics", None))


# --- the verdict ------------------------------------------------------------------------------

def _evidence(metrics: dict, shoppers: int | None) -> str:
    """What the comparison was measured on, e.g. "812 shoppers' last baskets"."""
    if shoppers is None:
        return "the held-out shoppers"
    who = f"{shoppers:,} shopper{'s' if shoppers != 1 else ''}'"
    validation = metrics.get("validation")
    if validation == "basket":
        return f"{who} last baskets"
    days = _int(metrics.get("holdout_days"))
    if validation == "days" and days:
        return f"{who} purchases in the last {days} days"
    return f"{shoppers:,} held-out shopper{'s' if shoppers != 1 else ''}"


def recommender_verdict(metrics: dict, notes: str = "") -> Verdict:
    """The guardrail's decision on a "for you" version, in words (see :func:`~visrec.services.
    foryou.training.guard_verdict` for the rule: promoted unless significantly worse; with too
    few test shoppers nothing is decided and the served model stays)."""
    notes = notes if isinstance(notes, str) else ""
    guard = _dict(metrics.get("guard"))
    if notes.startswith("training failed"):
        return Verdict("failed", "Failed", "training failed before this version could be served; "
                       "the previous model kept serving.", "bad")
    metric = str(guard.get("metric") or "recall@20")
    name = METRIC_NAMES.get(metric.split("@")[0], metric.split("@")[0].title()) + (
        "@" + metric.split("@")[1] if "@" in metric else "")
    candidate, served = _num(guard.get("candidate")), _num(guard.get("served"))
    shoppers = _int(guard.get("shoppers"))
    evidence = _evidence(metrics, shoppers)
    if candidate is None:
        if notes:
            return Verdict("no_record", "No guardrail record", notes)
        return Verdict("no_record", "No guardrail record", "this version carries no comparison with the served "
                       "model (made by an older visrec, imported, or created by hand).")
    if served is None:
        return Verdict("promoted", "Promoted", f"{name} {fmt(candidate)} on {evidence}; nothing was served to "
                       "compare with, so it was served.", "good")
    comparison = f"{name} {fmt(candidate)} vs the served {fmt(served)}"
    difference = _num(guard.get("difference"))
    ci = guard.get("ci95")
    low = high = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        low, high = _num(ci[0]), _num(ci[1])
    if difference is not None:
        comparison += f" (difference {signed(difference)}"
        comparison += f", 95% CI {signed(low)} to {signed(high)})" if low is not None and high is not None else ")"
    comparison += f" on {evidence}"
    said = str(guard.get("verdict") or "")
    promote = guard.get("promote")
    if said.startswith("not enough evidence"):
        needed = re.search(r"GUARD_MIN_SHOPPERS = (\d+)", said)
        need = f", at least {int(needed.group(1)):,} needed" if needed else ""
        count = f"{shoppers:,} test shoppers{need}" if shoppers is not None else "too few test shoppers"
        return Verdict("not_enough_evidence", "Not enough evidence",
                       f"{count}; kept out, the served model stays. {comparison}.", "neutral")
    if promote is False or said.startswith("significantly worse") or (high is not None and high < 0):
        return Verdict("kept_out", "Kept out", f"significantly worse: {comparison}.", "bad")
    word = ("significantly better" if said.startswith("significantly better") or (low is not None and low > 0)
            else "no significant difference")
    return Verdict("promoted", "Promoted", f"{word}: {comparison}.", "good")


def embedder_verdict(metrics: dict, notes: str = "", name: str = "") -> Verdict:
    """Fine-tuning's decision on an embedder version in words: served only if its held-out
    score is at least the served version's (:func:`~visrec.services.catalogue.finetuning.train_embedder`)."""
    notes = notes if isinstance(notes, str) else ""
    if notes.startswith("training failed"):
        return Verdict("failed", "Failed", "fine-tuning failed; the previous version kept serving.", "bad")
    evaluation = _dict(metrics.get("evaluation"))
    old, new = _num(evaluation.get("old")), _num(evaluation.get("new"))
    if old is not None and new is not None:
        metric = str(evaluation.get("metric") or "held-out score")
        against = evaluation.get("old_version")
        products = _int(evaluation.get("held_out_products"))
        on = f" on {products:,} held-out products" if products is not None else ""
        comparison = f"{metric} {fmt(new)} vs {fmt(old)} of {against or 'the served version'}{on}"
        if new >= old:
            better = "better" if new > old else "as good"
            return Verdict("promoted", "Promoted", f"{better}: {comparison}.", "good")
        return Verdict("kept_out", "Kept out", f"worse: {comparison}.", "bad")
    base = metrics.get("base_version")
    if notes == "pretrained backbone" or (name and base == name):
        backbone = metrics.get("backbone")
        what = f" ({backbone})" if isinstance(backbone, str) and backbone else ""
        return Verdict("pretrained", "Pretrained backbone", f"the backbone as published{what}, not fine-tuned on this "
                       "shop: there was nothing to compare it with. It is served once every image has a vector.")
    if notes:
        return Verdict("no_record", "No evaluation record", notes)
    return Verdict("no_record", "No evaluation record", "this version carries no before/after scores "
                   "(made by an older visrec or imported).")


def verdict(version: ModelVersion) -> Verdict:
    """:func:`recommender_verdict` or :func:`embedder_verdict` of a version; never raises."""
    try:
        metrics, notes = _metrics(version), getattr(version, "notes", "") or ""
        if getattr(version, "kind", None) == ModelKind.RECOMMENDER:
            return recommender_verdict(metrics, notes)
        return embedder_verdict(metrics, notes, str(getattr(version, "name", "")))
    except Exception:
        logger.exception("visrec: could not read the verdict of %s", getattr(version, "name", "?"))
        return Verdict("no_record", "No readable record", "the version's metrics could not be read.")


# --- tables and plots ---------------------------------------------------------------------------

def _list_metrics(metrics: dict) -> tuple[Table | None, Plot | None]:
    """Rows: the lists (trained model alone, blend, served version, validation); columns: metric@k."""
    found: dict[str, dict[str, float]] = {}
    columns: list[tuple[str, int]] = []
    for key, value in metrics.items():
        match = LIST_METRIC.match(str(key))
        number = _num(value)
        if match is None or number is None:
            continue
        prefix, metric, k = match.group(1), match.group(2), int(match.group(3))
        column = (metric, k)
        if column not in columns:
            columns.append(column)
        found.setdefault(prefix, {})[f"{metric}@{k}"] = number
    if not found:
        return None, None
    columns.sort(key=lambda c: (list(METRIC_NAMES).index(c[0]), c[1]))
    headers = [f"{METRIC_NAMES[m]}@{k}" for m, k in columns]
    guard = _dict(metrics.get("guard"))
    shoppers = {"": _int(metrics.get("test_shoppers")), "blend_": _int(guard.get("shoppers")),
                "active_": _int(guard.get("shoppers")),
                "blend_validation_": _int(metrics.get("blend_validation_shoppers"))}
    rows = []
    for prefix, label in LIST_NAMES.items():
        if prefix not in found:
            continue
        values = found[prefix]
        rows.append([label, *(fmt(values.get(f"{m}@{k}")) for m, k in columns),
                     fmt(shoppers.get(prefix))])
    table = Table("Lists measured on the held-out shoppers", ["List", *headers, "Shoppers"], rows,
                  "The blend is what shoppers see; the guardrail compares it with the served version's configuration "
                  "retrained on the same events (like with like).")
    first = f"{columns[0][0]}@{columns[0][1]}"
    bars = [(BAR_NAMES[p], found[p][first], None, None, p == "blend_")
            for p in ("", "blend_", "active_") if first in found.get(p, {})]
    plot = Plot("bars", f"{METRIC_NAMES[columns[0][0]]}@{columns[0][1]} of each list", y_label=headers[0],
                bars=bars) if bars else None
    return table, plot


def _guard_interval(metrics: dict) -> Plot | None:
    guard = _dict(metrics.get("guard"))
    difference, ci = _num(guard.get("difference")), guard.get("ci95")
    if difference is None or not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    low, high = _num(ci[0]), _num(ci[1])
    if low is None or high is None:
        return None
    metric = str(guard.get("metric") or "recall@20")
    return Plot("interval", f"This version minus the served one ({metric}, 95% CI)", value=difference, low=low,
                high=high, x_label=metric,
                note="Paired bootstrap over the same shoppers: an interval wholly left of zero keeps the version out.")


def _blend_table(metrics: dict) -> Table | None:
    weights = _dict(metrics.get("blend"))
    rows = [[PART_NAMES.get(str(part), str(part)), fmt(_num(weight), 2)] for part, weight in weights.items()
            if _num(weight) is not None]
    if not rows:
        return None
    model = metrics.get("model")
    note = f"Trained model: {model}." if isinstance(model, str) else ""
    return Table("Blend weights (chosen on validation)", ["Part", "Weight"], rows, note)


def _params_table(metrics: dict) -> tuple[Table | None, Plot | None]:
    tried = metrics.get("params_tried")
    if not isinstance(tried, list):
        return None, None
    chosen = _dict(metrics.get("params"))
    rows, bars = [], []
    for entry in tried:
        entry = _dict(entry)
        params = _dict(entry.get("params"))
        score_key = next((k for k in entry if LIST_METRIC.match(str(k))), None)
        score = _num(entry.get(score_key)) if score_key else None
        label = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        picked = params == chosen
        rows.append([label, fmt(score), "chosen" if picked else ""])
        if score is not None:
            bars.append((label, score, None, None, picked))
    if not rows:
        return None, None
    table = Table("Hyper-parameters tried", ["Parameters", "Validation score", ""], rows,
                  "Each candidate's score on the validation slice, before the held-out baskets.")
    plot = Plot("bars", "Validation score of each hyper-parameter candidate", y_label="validation", bars=bars) \
        if len(bars) > 1 else None
    return table, plot


def _data_facts(metrics: dict) -> list[tuple[str, str]]:
    facts = []
    for key, label in (("model", "Model"), ("embedder", "Image vectors of"), ("train_events", "Training events"),
                       ("test_shoppers", "Test shoppers"), ("validation", "Held out"),
                       ("holdout_days", "Held-out days"), ("window_end", "Events up to"),
                       ("backbone", "Backbone"), ("base_version", "Base version")):
        value = metrics.get(key)
        if value is None or isinstance(value, (dict, list)):
            continue
        if key == "holdout_days" and metrics.get("validation") == "basket":
            continue  # the held-out days do not apply to the basket split
        if key == "validation":
            value = {"basket": "each returning shopper's last basket",
                     "days": "the last days' purchases"}.get(value, value)
        facts.append((label, fmt(value) if _num(value) is not None else str(value)))
    return facts


def _privacy_table(metrics: dict) -> Table | None:
    if not metrics.get("dp"):
        return None
    rows = [[label, fmt(metrics.get(key), 4)] for key, label in (
        ("epsilon", "ε of the published model"), ("guardrail_epsilon", "ε of the guardrail's candidate"),
        ("delta", "δ"), ("noise_multiplier", "Noise multiplier"), ("max_grad_norm", "Clipping norm"),
        ("sample_rate", "Sampling rate"), ("steps", "Steps"), ("shoppers", "Shoppers"), ("accountant", "Accountant"))
        if metrics.get(key) is not None]
    return Table("Differential privacy (DP-SGD)", ["", "Value"], rows,
                 "A shopper's privacy loss over the night's run is at most the sum of the two epsilons.")


def _other_numbers(metrics: dict) -> Table | None:
    rows = [[str(key), fmt(value)] for key, value in metrics.items()
            if key not in KNOWN_KEYS and not LIST_METRIC.match(str(key)) and _num(value) is not None]
    return Table("Other numbers", ["Key", "Value"], rows) if rows else None


def _evaluation(metrics: dict, name: str) -> tuple[Table | None, Plot | None]:
    evaluation = _dict(metrics.get("evaluation"))
    old, new = _num(evaluation.get("old")), _num(evaluation.get("new"))
    if old is None and new is None:
        return None, None
    metric = str(evaluation.get("metric") or "score")
    against = str(evaluation.get("old_version") or "served version")
    rows = [[f"Before: {against}", fmt(old)], [f"After: {name}", fmt(new)]]
    note = (f"Measured on {fmt(evaluation.get('held_out_products'))} held-out products that did not choose the "
            "fusion weights." if evaluation.get("held_out_products") is not None else "")
    plot = Plot("bars", f"Before and after fine-tuning ({metric})", y_label=metric.split(" ")[1]
                if metric.startswith("held-out ") and " " in metric else metric,
                bars=[(label, value, None, None, i == 1) for i, (label, value) in
                      enumerate((("before", old), ("after", new))) if value is not None])
    return Table(f"Before and after fine-tuning: {metric}", ["Version", metric], rows, note), plot


def _fusion(metrics: dict) -> list[Table]:
    fusion = _dict(metrics.get("fusion"))
    tables = []
    rows = [[label, fmt(fusion.get(key), 2) if key != "bins" else fmt(fusion.get(key))]
            for key, label in (("colour", "Colour weight"), ("category", "Category affinity weight"),
                               ("bins", "Colour bins per channel"), ("selection_products", "Products choosing them"))
            if fusion.get(key) is not None]
    if rows:
        tables.append(Table("Fusion with colour and category", ["", "Value"], rows))
    trials = _dict(fusion.get("selection_precision"))
    grid: dict[float, dict[float, float]] = {}
    for key, value in trials.items():
        parts = str(key).split(",")
        try:
            colour, category = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            continue
        if _num(value) is not None:
            grid.setdefault(colour, {})[category] = float(value)
    if grid:
        categories = sorted({c for row in grid.values() for c in row})
        chosen = (_num(fusion.get("colour")), _num(fusion.get("category")))
        rows = [[fmt(colour, 1), *(fmt(grid[colour].get(c)) + (" ✓" if (colour, c) == chosen else "")
                                   if c in grid[colour] else "" for c in categories)]
                for colour in sorted(grid)]
        tables.append(Table("Precision@10 of the fusions tried", ["Colour \\ category",
                            *(fmt(c, 1) for c in categories)], rows,
                            "✓ marks the fusion chosen: the most colour that costs no same-category precision."))
    return tables


def _training(metrics: dict) -> tuple[Table | None, Plot | None]:
    training = _dict(metrics.get("training"))
    rows = [[label, fmt(training.get(key), 4) if key == "final_loss" else
             ("yes" if training.get(key) else "no") if key == "supervised" else fmt(training.get(key))]
            for key, label in (("images", "Training images"), ("held_out_images", "Held-out images"),
                               ("viewed_images", "Images viewed through the CNN"), ("epochs_run", "Epochs run"),
                               ("supervised", "Supervised by the shop's categories"), ("final_loss", "Final loss"))
            if training.get(key) is not None]
    history = next((training.get(k) for k in ("loss_history", "history", "losses")
                    if isinstance(training.get(k), list)), None)
    plot = None
    if history:
        points = [(i + 1, loss) for i, loss in enumerate(history) if _num(loss) is not None]
        if len(points) > 1:
            plot = Plot("line", "Training loss by epoch", x_label="epoch", y_label="loss", points=points)
    return (Table("Training", ["", "Value"], rows) if rows else None), plot


def _hnsw(metrics: dict) -> tuple[list[Table], Plot | None]:
    hnsw = _dict(metrics.get("hnsw"))
    tables: list[Table] = []
    if hnsw.get("skipped"):
        tables.append(Table("HNSW calibration", ["", "Value"], [["Not calibrated", str(hnsw["skipped"])]]))
        return tables, None
    recall, low = _dict(hnsw.get("recall")), _dict(hnsw.get("recall_low"))
    points = []
    for key, value in recall.items():
        try:
            ef = int(key)
        except (TypeError, ValueError):
            continue
        if _num(value) is not None:
            points.append((ef, float(value)))
    points.sort()
    chosen, target = _int(hnsw.get("ef_search")), _num(hnsw.get("target"))
    if points:
        rows = [[str(ef), fmt(value), fmt(_num(low.get(str(ef)))), "chosen" if ef == chosen else ""]
                for ef, value in points]
        reached = hnsw.get("reached")
        note = (f"Target recall@10 {fmt(target)}" + ("" if reached is None else
                (": reached." if reached else ": not reached, rebuild the index with larger HNSW_M / "
                 "HNSW_EF_CONSTRUCTION.")) if target is not None else "")
        tables.append(Table("HNSW calibration: recall@10 by ef_search", ["ef_search", "Recall@10",
                            "Lower 95% bound", ""], rows, note))
    facts = [[label, fmt(hnsw.get(key)) if _num(hnsw.get(key)) is not None else str(hnsw.get(key))]
             for key, label in (("sample", "Products queried"), ("products", "Products in the index"),
                                ("hnsw_m", "HNSW m"), ("hnsw_ef_construction", "HNSW ef_construction"),
                                ("seconds", "Seconds taken"), ("calibrated", "Calibrated"))
             if hnsw.get(key) is not None and not isinstance(hnsw.get(key), (dict, list))]
    similarity = _dict(hnsw.get("nn_similarity") or metrics.get("nn_similarity"))
    for key, label in (("p05", "Nearest-neighbour similarity, 5th percentile"),
                       ("p50", "Nearest-neighbour similarity, median")):
        if _num(similarity.get(key)) is not None:
            facts.append([label, fmt(similarity[key])])
    if facts:
        tables.append(Table("HNSW index", ["", "Value"], facts))
    plot = (Plot("line", "HNSW recall@10 by ef_search", x_label="ef_search", y_label="recall@10", points=points,
                 target=target, highlight_x=chosen, log_x=all(ef > 0 for ef, _ in points)) if points else None)
    return tables, plot


def _switch_note(notes: str) -> str:
    """The note of a switch by hand (the admin or visrec_versions overwrite ``notes``)."""
    if isinstance(notes, str) and notes.startswith("switched"):
        return notes
    return ""


def model_report(version: ModelVersion) -> ModelReport:
    """The report of one version: verdict, facts, tables and plot data; never raises."""
    metrics = _metrics(version)
    name = str(getattr(version, "name", ""))
    kind = str(getattr(version, "kind", ""))
    report = ModelReport(name=name, kind=kind, is_served=bool(getattr(version, "is_active", False)),
                         verdict=verdict(version))
    sections = (_recommender_sections if kind == ModelKind.RECOMMENDER else _embedder_sections)
    try:
        sections(report, metrics, name)
    except Exception:
        logger.exception("visrec: could not read the metrics of %s", name)
    try:
        report.switch_note = _switch_note(getattr(version, "notes", ""))
        other = _other_numbers(metrics)
        if other:
            report.tables.append(other)
    except Exception:
        logger.exception("visrec: could not read the metrics of %s", name)
    return report


def _recommender_sections(report: ModelReport, metrics: dict, name: str) -> None:
    report.facts = _data_facts(metrics)
    table, plot = _list_metrics(metrics)
    if table:
        report.tables.append(table)
    if plot:
        report.plots.append(plot)
    interval = _guard_interval(metrics)
    if interval:
        report.plots.append(interval)
    for part in (_blend_table(metrics), _privacy_table(metrics)):
        if part:
            report.tables.append(part)
    table, plot = _params_table(metrics)
    if table:
        report.tables.append(table)
    if plot:
        report.plots.append(plot)


def _embedder_sections(report: ModelReport, metrics: dict, name: str) -> None:
    report.facts = _data_facts(metrics)
    table, plot = _evaluation(metrics, name)
    if table:
        report.tables.append(table)
    if plot:
        report.plots.append(plot)
    report.tables.extend(_fusion(metrics))
    table, plot = _training(metrics)
    if table:
        report.tables.append(table)
    if plot:
        report.plots.append(plot)
    tables, plot = _hnsw(metrics)
    report.tables.extend(tables)
    if plot:
        report.plots.append(plot)
