"""``python manage.py visrec_shopper_data (--user ID | --subject KEY) (--export FILE | --erase)``."""
from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from visrec.services.privacy.shopper_data import erase_subject, export_subject, user_subjects


class Command(BaseCommand):
    help = "Exports (JSON) or erases one shopper's events, stored vectors and category reports."

    def add_arguments(self, parser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="the host's user primary key")
        who.add_argument("--subject", help="a pseudonymous subject key (64 hex characters)")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--export", metavar="FILE", help="write the events as JSON ('-' for stdout)")
        what.add_argument("--erase", action="store_true")

    def handle(self, *args, user, subject, export, erase, **options) -> None:
        if user is not None:
            account = get_user_model()._default_manager.filter(pk=user).first()
            if account is None:
                raise CommandError(f"no user with primary key {user!r}")
            subject = user_subjects(account)  # current and fallback-secret pseudonyms
        elif len(subject) != 64:
            raise CommandError("--subject must be a 64-character pseudonym")
        if erase:
            counts = erase_subject(subject)
            self.stdout.write(f"erased {counts['events']} events, {counts['shopper_vectors']} shopper vectors "
                              f"and {counts['category_reports']} category reports")
            return
        data = json.dumps(export_subject(subject), indent=2)
        if export == "-":
            self.stdout.write(data)
        else:
            Path(export).write_text(data)
            self.stdout.write(f"wrote {export}")
