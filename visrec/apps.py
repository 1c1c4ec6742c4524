from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VisrecConfig(AppConfig):
    name = "visrec"
    verbose_name = _("Visual recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from . import checks  # noqa: F401 - registers the system checks
        from .signal_handlers import register_signal_handlers

        try:
            register_signal_handlers()
        except ImproperlyConfigured:
            pass  # reported by the system checks visrec.E001/E002 with a fix
