"""``python manage.py visrec_calibrate [--version NAME] [--sample N] [--target R]``."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visrec.models import ModelKind, ModelVersion
from visrec.services.catalogue.embedders import active_embedder_version
from visrec.services.db.index_calibration import SAMPLE, calibrate_ef_search


class Command(BaseCommand):
    help = ("Measures recall@10 of an embedder version's HNSW index against exact search and stores the "
            "smallest hnsw.ef_search that reaches the target (the same self-check as switching a version on).")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs):
        # --version names a model version here, not Django's version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--version", "--model-version", dest="name", metavar="NAME", default=None,
                            help="embedder version (default: the served one)")
        parser.add_argument("--sample", type=int, default=SAMPLE, help="products measured")
        parser.add_argument("--target", type=float, default=None,
                            help='recall@10 to reach (default VISREC["HNSW_TARGET_RECALL"])')

    def handle(self, *args, name: str | None, sample: int, target: float | None, **options) -> None:
        if sample <= 0:
            raise CommandError("--sample must be positive")
        if target is not None and not 0 < target <= 1:
            raise CommandError("--target must be a recall in (0, 1]")
        if name:
            version = ModelVersion.objects.filter(kind=ModelKind.EMBEDDER, name=name).first()
            if version is None:
                raise CommandError(f"no embedder version named {name!r}")
        else:
            version = active_embedder_version()
            if version is None:
                raise CommandError("no embedder version is served yet; run visrec_index or name one with --version")
        bars: dict[str, tqdm] = {}

        def progress(stage: str, n: int) -> None:
            if stage not in bars:
                bars[stage] = tqdm(desc=stage, unit="vector" if stage == "exact" else "query",
                                   disable=options["verbosity"] == 0)
            bars[stage].update(n)

        try:
            result = calibrate_ef_search(version, sample=sample, target=target, progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
        if "skipped" in result:
            self.stdout.write(f"{version.name}: {result['skipped']}")
            return
        ef = result["ef_search"]
        tried = ", ".join(f"ef {e}: {r:.3f}" for e, r in result["recall"].items())
        self.stdout.write(
            f"{version.name}: ef_search {ef}, recall@10 {result['recall'][str(ef)]:.3f} "
            f"(95% lower bound {result['recall_low'][str(ef)]:.3f}, target {result['target']:.3f}"
            f"{'' if result['reached'] else ', NOT reached: rebuild with larger m'}) "
            f"on {result['sample']} of {result['products']} products in {result['seconds']:.1f}s; tried {tried}")
