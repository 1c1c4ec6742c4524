"""The privacy budget ledger and the shop statistics released through it."""
from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from ..models import PrivacyRelease
from .base import ViewOnlyAdmin


@admin.register(PrivacyRelease)
class PrivacyReleaseAdmin(ViewOnlyAdmin):
    """The privacy budget ledger, and the shop statistics released through it.

    ``statistics/`` shows per-product view/cart/purchase counts and per-category shares
    from the window's differentially private release (:mod:`visrec.services.privacy.dp_statistics`);
    ``statistics/csv/`` exports that same release. Neither reads the events directly.
    """

    list_display = ["created_at", "kind", "epsilon", "noise_scale", "plus_minus_95", "period_start"]
    list_filter = ["kind", "period_start"]
    readonly_fields = [f.name for f in PrivacyRelease._meta.fields]
    change_list_template = "admin/visrec/privacyrelease/change_list.html"

    # View-only: the ledger is append-only (a database trigger refuses UPDATE and DELETE
    # too): deleting a release would refund budget that was spent.

    def get_urls(self):
        from django.urls import path

        view = self.admin_site.admin_view
        return [
            path("statistics/", view(self.statistics_view), name="visrec_privacyrelease_statistics"),
            path("statistics/csv/", view(self.statistics_csv_view), name="visrec_privacyrelease_statistics_csv"),
            *super().get_urls(),
        ]

    def _statistics(self, request):
        from django.core.exceptions import PermissionDenied

        from ..services.privacy.dp_statistics import current_statistics

        if not self.has_view_permission(request):
            raise PermissionDenied
        return current_statistics()

    def statistics_view(self, request):
        """Shop statistics, every number noisy with its 95% interval; spends budget once per window."""
        from django.template.response import TemplateResponse

        from ..conf import visrec_settings
        from ..services.privacy.dp_releases import (
            BudgetExceeded,
            period_start,
            remaining,
        )

        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": _("Shop statistics (differentially private)"), "stats": None,
                   "budget_left": remaining(), "budget_total": visrec_settings.PRIVACY_BUDGET_EPSILON,
                   "period_start": period_start(), "local_dp_epsilon": visrec_settings.LOCAL_DP_EPSILON}
        try:
            stats = self._statistics(request)
        except BudgetExceeded as exc:
            self.message_user(request, _("No statistics released: %s.") % exc, messages.ERROR)
        else:
            context["stats"] = stats
            context["budget_left"] = remaining()
            if stats.refused:
                self.message_user(request, _("Showing the release of %(date)s: a new one was refused: %(why)s.")
                                  % {"date": f"{stats.release.created_at:%Y-%m-%d}", "why": stats.refused},
                                  messages.WARNING)
        return TemplateResponse(request, "admin/visrec/privacyrelease/statistics.html", context)

    def statistics_csv_view(self, request):
        """The statistics page's release as CSV (noisy numbers only, nothing recomputed)."""
        from django.http import HttpResponse
        from django.shortcuts import redirect

        from ..services.privacy.dp_releases import BudgetExceeded
        from ..services.privacy.dp_statistics import write_statistics_csv

        try:
            stats = self._statistics(request)
        except BudgetExceeded as exc:
            self.message_user(request, _("No statistics released: %s.") % exc, messages.ERROR)
            return redirect("admin:visrec_privacyrelease_statistics")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="visrec-dp-statistics-{stats.release.pk}.csv"'
        write_statistics_csv(stats, response)
        return response

    @admin.display(description=_("noise (95%)"))
    def plus_minus_95(self, obj) -> str:
        from ..services.privacy.dp_releases import noise_margin

        return f"± {noise_margin(obj.noise_scale):.0f}"

    def changelist_view(self, request, extra_context=None):
        from ..conf import visrec_settings
        from ..services.privacy.dp_releases import period_start, remaining

        self.message_user(request, _(
            "Privacy budget: epsilon %(left).2f of %(total).2f left in the period starting %(start)s. "
            "Every count released from shoppers' events is noisy (discrete Laplace); the ± column is a 95%% interval."
        ) % {"left": remaining(), "total": visrec_settings.PRIVACY_BUDGET_EPSILON, "start": period_start()},
            messages.INFO)
        return super().changelist_view(request, extra_context)
