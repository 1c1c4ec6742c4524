"""``python manage.py visrec_train_recommender [--model vbpr]``: train "for you" now (guarded)."""
from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from visrec.recommenders import MODELS
from visrec.services.foryou import training as recommender_training


class Command(BaseCommand):
    help = "Trains the 'for you' model on the events of the window ending at the newest one (or --as-of); switches to it only if Recall@20 is not worse."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", choices=[m for m in MODELS if m != "itemknn"], default=None)
        parser.add_argument("--as-of", default=None, help="end of the training window, ISO 8601 "
                                                           "(default: the newest event)")

    def handle(self, *args, model, as_of, **options) -> None:
        if as_of is not None:
            as_of = parse_datetime(as_of) or (parse_date(as_of) and dt.datetime.combine(
                parse_date(as_of), dt.time.max, tzinfo=dt.timezone.utc))
            if not as_of:
                raise CommandError("--as-of must be an ISO 8601 date or time, e.g. 2024-06-30")
            if timezone.is_naive(as_of):
                as_of = as_of.replace(tzinfo=dt.timezone.utc)
        bar = tqdm(desc="training", unit="epoch", disable=options["verbosity"] == 0)
        try:
            version = recommender_training.train_recommender(model, progress=lambda *a: bar.update(1),
                                                             as_of=as_of)
        except recommender_training.NothingToLearn as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        self.stdout.write(f"{version.name}: {version.notes}")
