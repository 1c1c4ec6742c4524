"""Scheduled runs (view-only) and the health page: work waiting, queues, coverage, runs, served
versions, privacy budget.

The health page hangs on the task runs' admin (``taskrun/health/``, URL name
``admin:visrec_taskrun_health``): whoever may view the runs may view it. The runs'
list links to it; so does the model versions' list.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import RunOutcome, TaskRun
from ..services.health import health_report
from .base import ViewOnlyAdmin


@admin.register(TaskRun)
class TaskRunAdmin(ViewOnlyAdmin):
    """Every recorded run of a scheduled task, newest first; nobody edits them."""

    list_display = ["task", "started_at", "outcome_text", "duration", "summary"]
    list_filter = ["task", "outcome"]
    search_fields = ["summary"]
    date_hierarchy = "started_at"
    readonly_fields = ["task", "started_at", "finished_at", "outcome", "summary", "details"]
    change_list_template = "admin/visrec/taskrun/change_list.html"

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_text(self, obj) -> str:
        word = obj.get_outcome_display()
        tone = {RunOutcome.FAILED: "bad", RunOutcome.DONE: "good"}.get(obj.outcome, "")
        return format_html('<span class="visrec-state visrec-state-{}">{}</span>', tone, word)

    @admin.display(description=_("took"))
    def duration(self, obj) -> str:
        if obj.finished_at is None:
            return "—"
        seconds = (obj.finished_at - obj.started_at).total_seconds()
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

    def get_urls(self):
        from django.urls import path

        return [path("health/", self.admin_site.admin_view(self.health_view), name="visrec_taskrun_health"),
                *super().get_urls()]

    def health_view(self, request):
        """The health page (staff with the view permission on task runs)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        report = health_report()
        if report.problems:
            self.message_user(request, ngettext("%d thing needs attention (listed below).",
                                                "%d things need attention (listed below).", len(report.problems))
                              % len(report.problems), messages.WARNING)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": _("visrec health"),
                   "report": report, "links": self._links(request, report)}
        return TemplateResponse(request, "admin/visrec/health.html", context)

    def _links(self, request, report) -> dict:
        """Admin pages the health page links to, where this site has them and the user may view them."""
        links = {}
        name = self.admin_site.name

        def url(view: str, *args, query: str = "") -> str | None:
            try:
                return reverse(f"admin:{view}", args=args, current_app=name) + query
            except NoReverseMatch:
                return None

        from urllib.parse import urlencode

        from ..models import ImageEmbedding, ModelVersion

        def viewable(model) -> bool:
            model_admin = self.admin_site._registry.get(model)
            return model_admin is not None and model_admin.has_view_permission(request)

        if viewable(ImageEmbedding) and report.coverage and report.coverage.version:
            links["failed_images"] = url("visrec_imageembedding_changelist", query="?" + urlencode(
                {"status__exact": "failed", "model_version": report.coverage.version}))
        if viewable(ModelVersion):
            links["versions"] = url("visrec_modelversion_changelist")
            for served in report.served:
                if served.version is not None:
                    links[f"version_{served.kind}"] = url("visrec_modelversion_change", served.version.pk)
        links["runs"] = url("visrec_taskrun_changelist")
        return links
