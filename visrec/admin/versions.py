"""Model versions: what was trained, the guardrail's verdict in words, metrics as tables and
small charts, and serving a version (promote / roll back) in one click."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .. import charts
from ..models import ModelVersion
from ..services.model_report import Plot, model_report, verdict
from ..services.serving.switching import NotServable, serve_version
from ..services.serving.versions import active_version


def plot_svg(plot: Plot) -> str:
    """The inline SVG of one of the report's plots (:mod:`visrec.charts`)."""
    if plot.kind == "bars":
        return charts.bar_chart(plot.title, [charts.Bar(*bar) for bar in plot.bars], y_label=plot.y_label)
    if plot.kind == "line":
        return charts.line_chart(plot.title, plot.points, x_label=plot.x_label, y_label=plot.y_label,
                                 target=plot.target, highlight_x=plot.highlight_x, log_x=plot.log_x)
    if plot.kind == "interval":
        return charts.interval_chart(plot.title, plot.value, plot.low, plot.high, label=plot.x_label or "difference")
    return ""


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "is_active", "verdict_text", "created_at", "activated_at", "hnsw_ef_search"]
    list_filter = ["kind", "is_active"]
    fields = ["name", "kind", "is_active", "created_at", "activated_at", "dimensions", "artefact", "notes"]
    readonly_fields = fields
    actions = ["promote"]
    change_form_template = "admin/visrec/modelversion/change_form.html"
    change_list_template = "admin/visrec/modelversion/change_list.html"

    @admin.display(description=_("verdict"))
    def verdict_text(self, obj) -> str:
        """The guardrail's decision in words (the raw notes are on the version's page)."""
        said = verdict(obj)
        return format_html('<span class="visrec-verdict visrec-verdict-{}" title="{}"><strong>{}</strong>: {}</span>',
                           said.tone, said.sentence, said.headline, _shorten(said.sentence, 140))

    @admin.display(description=_("HNSW ef_search (recall@10)"))
    def hnsw_ef_search(self, obj) -> str:
        """The calibrated ``hnsw.ef_search`` and the recall it measured (visrec_calibrate)."""
        hnsw = (obj.metrics or {}).get("hnsw") if isinstance(obj.metrics, dict) else None
        if not isinstance(hnsw, dict) or not hnsw.get("ef_search"):
            return "—"
        recall = (hnsw.get("recall") or {}).get(str(hnsw["ef_search"])) if isinstance(hnsw.get("recall"), dict) else None
        flag = "" if hnsw.get("reached") else " ✗"
        return f"{hnsw['ef_search']} ({recall:.3f}{flag})" if isinstance(recall, (int, float)) else str(hnsw["ef_search"])

    @admin.action(description=_("Serve this version (promote / roll back)"), permissions=["change"])
    def promote(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, _("Choose exactly one version."), messages.ERROR)
            return
        self.serve(request, queryset.get())

    def serve(self, request, version: ModelVersion) -> bool:
        """Serves ``version`` (the action and the page's button), saying what happened; False if refused."""
        try:
            serve_version(version, note=f"switched in the admin by {request.user}")
        except NotServable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return False
        self.message_user(request, _("%s is now served.") % version.name, messages.SUCCESS)
        return True

    def get_urls(self):
        from django.urls import path

        info = self.opts.app_label, self.opts.model_name
        return [path("<path:object_id>/serve/", self.admin_site.admin_view(self.serve_view),
                     name="{}_{}_serve".format(*info)), *super().get_urls()]

    def serve_view(self, request, object_id):
        """POST only (with the CSRF token, checked by ``admin_view``): serves the version, back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        version = self.get_object(request, object_id)
        if version is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, version):
            raise PermissionDenied
        self.serve(request, version)
        return HttpResponseRedirect(reverse("admin:visrec_modelversion_change", args=[version.pk],
                                            current_app=self.admin_site.name))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if version is not None:
            report = model_report(version)
            served = active_version(version.kind)
            context.update(
                report=report, charts=[(plot, mark_safe(plot_svg(plot))) for plot in report.plots],  # visrec.charts escapes all text
                raw_metrics=json.dumps(version.metrics, indent=2, sort_keys=True, default=str),
                served_now=served, can_serve=self.has_change_permission(request, version) and not version.is_active,
                rollback=served is not None and served.created_at > version.created_at,
                serve_url=reverse("admin:visrec_modelversion_serve", args=[version.pk],
                                  current_app=self.admin_site.name),
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        """A served version cannot be deleted (serve another first); one an A/B test uses is protected too."""
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)


def _shorten(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 1].rstrip() + "…"
