from __future__ import annotations

from django.apps import AppConfig


class VisrecOscarConfig(AppConfig):
    """Listed after ``"visrec"`` in INSTALLED_APPS; connects the receivers of oscar's signals."""

    name = "visrec.contrib.oscar"
    label = "visrec_oscar"
    verbose_name = "visrec for django-oscar"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()
