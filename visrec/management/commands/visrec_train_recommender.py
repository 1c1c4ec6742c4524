"""``python manage.py visrec_train_recommender [--model vbpr]``: train "for you" now (guarded)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visrec.recommenders import MODELS
from visrec.services.foryou import training as recommender_training


class Command(BaseCommand):
    help = "Trains the 'for you' model on recent events; switches to it only if Recall@20 is not worse."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", choices=[m for m in MODELS if m != "itemknn"], default=None)

    def handle(self, *args, model, **options) -> None:
        bar = tqdm(desc="training", unit="epoch", disable=options["verbosity"] == 0)
        try:
            version = recommender_training.train_recommender(model, progress=lambda *a: bar.update(1))
        except recommender_training.NothingToLearn as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        self.stdout.write(f"{version.name}: {version.notes}")
