"""``python manage.py visrec_train_embedder [--epochs N]``: fine-tune on the catalogue now."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visrec.services.catalogue import finetuning
from visrec.training.projection import TrainingConfig


class Command(BaseCommand):
    help = "Fine-tunes the image embedder on the catalogue and switches to it if it is not worse."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, epochs: int, seed: int, **options) -> None:
        if epochs <= 0:
            raise CommandError("--epochs must be positive")
        bars: dict[str, tqdm] = {}

        def progress(stage: str, n: int) -> None:
            if stage not in bars:
                bars[stage] = tqdm(desc=stage, unit="img" if stage == "augment" else "epoch",
                                   total=epochs if stage == "train" else None,
                                   disable=options["verbosity"] == 0)
            bars[stage].update(n)

        try:
            outcome = finetuning.train_embedder(TrainingConfig(epochs=epochs, seed=seed), progress=progress)
        except finetuning.NothingToTrain as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for bar in bars.values():
                bar.close()
        self.stdout.write(outcome.reason)
