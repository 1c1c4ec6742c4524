"""``python manage.py visrec_eval_embeddings [--ground-truth FILE] [--k 10] [--output DIR]``."""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from visrec.evaluation.embeddings import markdown_table, results_table
from visrec.services.catalogue.embedding_evaluation import evaluate_embeddings


class Command(BaseCommand):
    help = ("Precision@k of nearest neighbours on known labels for every embedder version and a "
            "colour-histogram baseline, with a 2-D map (PNG) of the catalogue per method.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--ground-truth", help="JSON of per-product attributes (the demo's var/demo/ground_truth.json)")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--output", default=None, help="folder for maps and results.json (default var/eval)")
        parser.add_argument("--max-products", type=int, default=None)
        parser.add_argument("--model-version", action="append", dest="versions", help="only these versions (repeatable)")

    def handle(self, *args, ground_truth, k, output, max_products, versions, **options) -> None:
        if k <= 0:
            raise CommandError("--k must be positive")
        if ground_truth and not Path(ground_truth).exists():
            raise CommandError(f"ground-truth file not found: {ground_truth}")
        out = Path(output or Path(getattr(settings, "BASE_DIR", ".")) / "var" / "eval")
        out.mkdir(parents=True, exist_ok=True)
        try:
            report = evaluate_embeddings(ground_truth=ground_truth, k=k, output_dir=out, versions=versions,
                                         max_products=max_products)
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{report.products} products, k={k}\n")
        self.stdout.write(results_table(report.rows, report.columns))
        (out / "embeddings.md").write_text(markdown_table(report.rows, report.columns) + "\n")
        (out / "embeddings.json").write_text(json.dumps({"k": k, "products": report.products, "rows": report.rows,
                                                         "maps": report.maps}, indent=2, default=str))
        for method, path in report.maps.items():
            self.stdout.write(f"map of {method}: {path}")
