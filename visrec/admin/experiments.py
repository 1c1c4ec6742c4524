"""A/B tests of "for you": start one, end it, read its report (released through the ledger)."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import Experiment
from ..services.experiments import assignment, report

COUNT_LABELS = [("exposed", _("shoppers shown the widget")), ("clicked", _("… who clicked a product in it")),
                ("carted", _("… who put a shown product in the basket")), ("bought", _("… who bought a shown product"))]
FIELDS = ["name", "hypothesis", "version_a", "version_b", "b_is_shop_list", "share_b"]


class ExperimentForm(forms.ModelForm):
    class Meta:
        model = Experiment
        fields = FIELDS

    def clean(self):
        data = super().clean()
        if self.instance.pk is None:  # arms are fixed once an experiment has started
            candidate = Experiment(**{f: data.get(f) for f in FIELDS if f in data})
            try:
                assignment.validate(candidate)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    form = ExperimentForm
    list_display = ["name", "arm_a", "arm_b", "share_b", "started_at", "ended_at", "report_link"]
    list_filter = ["ended_at"]
    actions = ["end_experiments"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [f for f in FIELDS if f != "hypothesis"] + ["started_at", "ended_at"]

    @admin.display(description=_("arm A"))
    def arm_a(self, obj) -> str:
        return obj.version_a.name

    @admin.display(description=_("arm B"))
    def arm_b(self, obj) -> str:
        return _("the shop's own list") if obj.b_is_shop_list else obj.version_b.name

    @admin.display(description=_("report"))
    def report_link(self, obj) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:visrec_experiment_report", args=[obj.pk]),
                           _("report"))

    @admin.action(description=_("End the selected experiments"))
    def end_experiments(self, request, queryset) -> None:
        running = list(queryset.filter(ended_at__isnull=True))
        for experiment in running:
            assignment.end(experiment)
        self.message_user(request, ngettext("%d experiment ended.", "%d experiments ended.", len(running))
                          % len(running))

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<int:pk>/report/", view(self.report_view), name="visrec_experiment_report"),
                *super().get_urls()]

    def report_view(self, request, pk: int):
        """The latest released report (GET, free); POST releases new figures (spends epsilon)."""
        from ..conf import visrec_settings
        from ..services.privacy.dp_releases import (
            BudgetExceeded,
            noise_margin,
            remaining,
        )

        if not self.has_view_permission(request):
            raise PermissionDenied
        experiment = get_object_or_404(Experiment.objects.select_related("version_a", "version_b"), pk=pk)
        if request.method == "POST":
            if not self.has_change_permission(request, experiment):
                raise PermissionDenied
            try:
                report.release_report(experiment)
            except BudgetExceeded as exc:
                self.message_user(request, _("No figures released: %s.") % exc, messages.ERROR)
            return redirect("admin:visrec_experiment_report", pk=experiment.pk)
        found = report.latest_report(experiment)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "experiment": experiment,
            "title": _("Experiment %s") % experiment.name, "report": found,
            "margin": noise_margin(found.noise_scale) if found else None,
            "epsilon": visrec_settings.EXPERIMENT_EPSILON, "budget_left": remaining(),
            "count_rows": [], "rate_rows": [],
        }
        if found is not None:
            margin = f" ± {context['margin']:.0f}"
            context["count_rows"] = [(label, [f"{arm.counts[key]}{margin}" for arm in found.arms])
                                     for key, label in COUNT_LABELS]
            context["rate_rows"] = [(metric, [str(arm.rates[metric]) for arm in found.arms])
                                    for metric in report.RATES]
        return TemplateResponse(request, "admin/visrec/experiment/report.html", context)
