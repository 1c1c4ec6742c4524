"""``python manage.py visrec_evaluate [--holdout-days 7] [--output var/eval]``: every "for you" model."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from visrec.evaluation.embeddings import results_table
from visrec.services.embedders import active_embedder_version
from visrec.services.interactions import load_dataset
from visrec.services.recommender_evaluation import evaluate

COLUMNS = ["model", "recall@10", "recall@20", "ndcg@20", "hit_rate@20", "coverage@20", "novelty@20", "cold_recall@20"]


class Command(BaseCommand):
    help = ("Evaluates popularity, item-kNN, BPR, the visual hybrid (VBPR), the session model and the blend "
            "on a temporal split of the event log: recall, NDCG, hit rate, coverage, novelty, cold-start recall.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--holdout-days", type=float, default=None, help="the most recent days held out")
        parser.add_argument("--output", default=None, help="folder for results.json and recall_at_k.png")

    def handle(self, *args, holdout_days, output, **options) -> None:
        version = active_embedder_version()
        if version is None:
            raise CommandError("no image vectors yet: run visrec_index first")
        out = Path(output or Path(settings.BASE_DIR) / "var" / "eval")
        out.mkdir(parents=True, exist_ok=True)
        dataset = load_dataset(version.name)
        try:
            report = evaluate(dataset, holdout_days=holdout_days,
                              progress=lambda stage: self.stderr.write(f"  {stage}…"))
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        split = report["split"]
        when = dt.datetime.fromtimestamp(split["split_time"], tz=dt.timezone.utc)
        self.stdout.write(
            f"Temporal split: trained on {split['train_events']} events before {when:%Y-%m-%d %H:%M} UTC; "
            f"tested on the purchases of the following {split['holdout_days']:g} days by {split['test_shoppers']} "
            f"shoppers ({split['shoppers_with_cold_purchases']} bought cold products). Catalogue: {split['items']} "
            f"products, {split['cold_items']} cold. Image vectors: {version.name}.\n"
        )
        rows = [{"model": name, **metrics} for name, metrics in report["models"].items()]
        self.stdout.write(results_table(rows, COLUMNS))
        (out / "results.json").write_text(json.dumps({**report, "embedder": version.name}, indent=2))
        self._plot(report["curves"], out / "recall_at_k.png", split)
        self.stdout.write(f"\nnumbers: {out / 'results.json'}\nplot: {out / 'recall_at_k.png'}")

    def _plot(self, curves: dict, path: Path, split: dict) -> None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 5), dpi=120)
        axes = figure.add_subplot()
        for name, values in curves.items():
            axes.plot(range(1, len(values) + 1), values, label=name, linewidth=2.5 if name == "blended" else 1.5)
        axes.set_xlabel("K")
        axes.set_ylabel("Recall@K")
        axes.set_title(f"Recall@K on {split['test_shoppers']} shoppers' held-out purchases")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path)
