"""``python manage.py visrec_rotate_pseudonyms [--chunk-size N]``: re-key users' data to the new secret.

Rotation, step by step: set ``VISREC["PSEUDONYM_SECRET"]`` to a new secret and put the
old one first in ``VISREC["PSEUDONYM_SECRET_FALLBACKS"]``; deploy; run this command;
then remove the old secret from the fallbacks.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visrec.pseudonyms import pseudonym_secrets
from visrec.services.privacy.shopper_data import rekey_user_pseudonyms


class Command(BaseCommand):
    help = ("Moves every user account's events, shopper vectors and category reports from their pseudonyms "
            "under PSEUDONYM_SECRET_FALLBACKS to the current PSEUDONYM_SECRET.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chunk-size", type=int, default=1000, help="users per transaction")

    def handle(self, *args, chunk_size, **options) -> None:
        if chunk_size <= 0:
            raise CommandError("--chunk-size must be positive")
        if len(pseudonym_secrets()) < 2:
            raise CommandError(
                'no fallback secret to re-key from: set VISREC["PSEUDONYM_SECRET"] to the new secret and list '
                'the old one in VISREC["PSEUDONYM_SECRET_FALLBACKS"] first')
        total = get_user_model()._default_manager.count()
        with tqdm(total=total, unit="user", disable=options["verbosity"] == 0) as bar:
            counts = rekey_user_pseudonyms(chunk_size=chunk_size, progress=bar.update)
        self.stdout.write(
            f"re-keyed {counts['events']} events, {counts['shopper_vectors']} shopper vectors and "
            f"{counts['category_reports']} category reports of {total} users; anonymous sessions' data keeps its "
            "old pseudonyms until retention deletes it. Remove the old secret from PSEUDONYM_SECRET_FALLBACKS now.")
