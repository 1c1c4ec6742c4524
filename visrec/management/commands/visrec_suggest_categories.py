"""``python manage.py visrec_suggest_categories [--evaluate] [--accept] [--min-confidence 0.7]``."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visrec.evaluation.embeddings import markdown_table, results_table
from visrec.models import ProductEmbedding
from visrec.services.catalogue import intelligence
from visrec.services.catalogue.categories import category_labels


class Command(BaseCommand):
    help = ("Category suggestions for uncategorised and likely mis-categorised products from their "
            "look-alikes' categories (recomputes and caches the neighbour lists the admin pages read); "
            "--evaluate measures their precision with a share of the catalogue's labels withheld.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--kind", choices=[intelligence.UNCATEGORISED, intelligence.MISCATEGORISED],
                            action="append", dest="kinds", help="only these suggestions (repeatable; default both)")
        parser.add_argument("--min-confidence", type=float, default=0.0, help="leave out less confident suggestions")
        parser.add_argument("--limit", type=int, default=50, help="suggestions printed (default 50; 0 = all)")
        parser.add_argument("--accept", action="store_true",
                            help="write every suggestion shown into the products' category field")
        parser.add_argument("--evaluate", action="store_true",
                            help="measure precision of accepted suggestions with labels withheld (writes nothing)")
        parser.add_argument("--fraction", type=float, default=0.2, help="share of labels withheld (default 0.2)")
        parser.add_argument("--seed", type=int, default=0, help="random seed of the withheld share (default 0)")
        parser.add_argument("--thresholds", default="0,0.5,0.7,0.9", help="confidence thresholds (default 0,0.5,0.7,0.9)")
        parser.add_argument("--plant", type=float, default=0.05,
                            help="share of the other labels made wrong to test the mis-categorised rule (default 0.05; 0 = skip)")
        parser.add_argument("--model-version", default=None,
                            help="evaluate this embedder version instead of the served one")
        parser.add_argument("--markdown", type=Path, default=None, help="also write the evaluation's tables here")

    def handle(self, *args, kinds, min_confidence, limit, accept, evaluate, fraction, seed, thresholds, plant,
               model_version, markdown, **options) -> None:
        try:
            version = intelligence.served_version(model_version)
        except intelligence.NothingEmbedded as exc:
            raise CommandError(str(exc)) from exc
        total = min(ProductEmbedding.objects.filter(model_version=version.name).count(),
                    intelligence.visrec_settings.CATALOGUE_MAX_PRODUCTS)
        with tqdm(total=total, desc="neighbours", unit="product", disable=options["verbosity"] == 0) as bar:
            neighbourhood = intelligence.catalogue_neighbours(refresh=True, progress=bar.update, version=version.name)
        if evaluate:
            self._evaluate(neighbourhood, fraction, seed, thresholds, plant, markdown)
            return
        try:
            suggestions = intelligence.suggest_categories(kinds=kinds or (intelligence.UNCATEGORISED,
                                                                          intelligence.MISCATEGORISED),
                                                          min_confidence=min_confidence, neighbourhood=neighbourhood)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        shown = suggestions[:limit] if limit else suggestions
        labels = category_labels({s.suggested for s in shown} | {s.current for s in shown if s.current})
        rows = [{"product": s.product_id, "current": labels.get(s.current, "") if s.current else "",
                 "suggested": labels[s.suggested], "confidence": s.confidence, "reason": s.reason} for s in shown]
        self.stdout.write(f"{len(suggestions)} suggestions for {neighbourhood.queried} products under {version.name}"
                          + (f" (showing {len(shown)})" if len(shown) < len(suggestions) else ""))
        if rows:
            self.stdout.write(results_table(rows, ["product", "current", "suggested", "confidence", "reason"]))
        if accept:
            changed = intelligence.accept_suggestions((s.product_id, s.current, s.suggested) for s in shown)
            self.stdout.write(f"accepted: {changed} products changed")

    def _evaluate(self, neighbourhood, fraction, seed, thresholds, plant, markdown) -> None:
        try:
            levels = [float(t) for t in thresholds.split(",") if t.strip()]
        except ValueError as exc:
            raise CommandError(f"--thresholds must be numbers separated by commas, got {thresholds!r}") from exc
        try:
            report = intelligence.evaluate_suggestions(fraction=fraction, seed=seed, thresholds=levels, plant=plant,
                                                       neighbourhood=neighbourhood)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        head = (f"{report.version}: {report.labelled} labelled products in {report.categories} categories, "
                f"{report.withheld} labels withheld (seed {seed}), k={report.k}")
        self.stdout.write(head)
        self.stdout.write(results_table(report.rows, intelligence.EVALUATION_COLUMNS))
        if report.miscategorised:
            self.stdout.write("\nlikely mis-categorised, on planted wrong labels:")
            self.stdout.write(results_table(report.miscategorised, intelligence.MISCATEGORISED_COLUMNS))
        if markdown:
            text = head + "\n\n" + markdown_table(report.rows, intelligence.EVALUATION_COLUMNS) + "\n"
            if report.miscategorised:
                text += "\n" + markdown_table(report.miscategorised, intelligence.MISCATEGORISED_COLUMNS) + "\n"
            markdown.parent.mkdir(parents=True, exist_ok=True)
            markdown.write_text(text)
            self.stdout.write(f"written: {markdown}")
