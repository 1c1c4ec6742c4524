"""Admin: visrec's own models, and a mixin a host adds to its product admin.

In the host's admin.py::

    from visrec.admin import VisuallySimilarAdminMixin

    @admin.register(Product)
    class ProductAdmin(VisuallySimilarAdminMixin, admin.ModelAdmin):
        readonly_fields = ["visrec_embedding_status", "visrec_similar_products"]
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import EmbeddingStatus, ImageEmbedding, InteractionEvent, ModelKind, ModelVersion, PrivacyRelease
from .services.catalogue.embedders import activate_embedder, active_embedder_version
from .services.serving import presentation, similar


class VisuallySimilarAdminMixin:
    """Read-only fields for a host product admin: embedding status and look-alike thumbnails."""

    visrec_similar_limit = 8

    @admin.display(description=_("image embeddings"))
    def visrec_embedding_status(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "—"
        version = active_embedder_version()
        if version is None:
            return _("no embedder served yet (run visrec_index)")
        rows = ImageEmbedding.objects.filter(product_id=obj.pk, model_version=version.name)
        counts = rows.aggregate(done=Count("pk", filter=Q(status=EmbeddingStatus.DONE)),
                                failed=Count("pk", filter=Q(status=EmbeddingStatus.FAILED)))
        errors = list(rows.filter(status=EmbeddingStatus.FAILED).values_list("image_id", "error")[:5])
        parts = format_html("{} done, {} failed under <code>{}</code>", counts["done"], counts["failed"], version.name)
        if errors:
            parts += format_html("<ul>{}</ul>", format_html_join("", "<li>image {}: {}</li>", errors))
        return parts

    @admin.display(description=_("visually similar"))
    def visrec_similar_products(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "—"
        try:
            ranked = similar.similar_products(obj.pk, self.visrec_similar_limit,
                                              similar.SimilarFilters(in_stock=False))
        except similar.NotEmbedded:
            return _("not embedded yet")
        cards = presentation.product_cards(ranked)
        return format_html(
            '<div style="display:flex;flex-wrap:wrap;gap:8px">{}</div>',
            format_html_join("", '<figure style="margin:0;width:96px;text-align:center">'
                                 '<img src="{}" alt="{}" width="96" height="96" style="object-fit:cover">'
                                 '<figcaption style="font-size:11px">{} ({})</figcaption></figure>',
                             ((c["image_url"], c["alt"], c["name"], f"{c['score']:.2f}") for c in cards)),
        )


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["image_id", "product_id", "model_version", "status", "short_error", "updated_at"]
    list_filter = ["status", "model_version"]
    search_fields = ["error", "content_hash"]
    readonly_fields = [f.name for f in ImageEmbedding._meta.fields if f.name != "vector"]
    exclude = ["vector"]
    actions = ["requeue"]

    @admin.display(description=_("error"))
    def short_error(self, obj) -> str:
        return (obj.error[:80] + "…") if len(obj.error) > 80 else obj.error

    @admin.action(description=_("Re-queue for embedding"))
    def requeue(self, request, queryset) -> None:
        from .tasks import embed_images

        ids = list(queryset.values_list("image_id", flat=True).distinct())
        embed_images.delay(ids, force=True)
        self.message_user(request, ngettext("%d image queued.", "%d images queued.", len(ids)) % len(ids))

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "is_active", "created_at", "activated_at", "hnsw_ef_search", "notes"]
    list_filter = ["kind", "is_active"]
    readonly_fields = ["kind", "name", "created_at", "metrics", "artefact", "dimensions", "is_active", "activated_at",
                       "hnsw_ef_search"]
    actions = ["promote"]

    @admin.display(description=_("HNSW ef_search (recall@10)"))
    def hnsw_ef_search(self, obj) -> str:
        """The calibrated ``hnsw.ef_search`` and the recall it measured (visrec_calibrate)."""
        hnsw = (obj.metrics or {}).get("hnsw") or {}
        if not hnsw.get("ef_search"):
            return "—"
        recall = (hnsw.get("recall") or {}).get(str(hnsw["ef_search"]))
        flag = "" if hnsw.get("reached") else " ✗"
        return f"{hnsw['ef_search']} ({recall:.3f}{flag})" if recall is not None else str(hnsw["ef_search"])

    @admin.action(description=_("Serve this version (promote / roll back)"))
    def promote(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, _("Choose exactly one version."), messages.ERROR)
            return
        version = queryset.get()
        note = f"switched in the admin by {request.user}"
        if version.kind == ModelKind.RECOMMENDER:
            from .models import RecommenderItemVector
            from .services.serving.versions import activate_version

            if not RecommenderItemVector.objects.filter(model_version=version.name).exists():
                self.message_user(request, _("%s was never published (kept out by its guardrail or failed).")
                                  % version.name, messages.ERROR)
                return
            activate_version(version, note=note)
            self.message_user(request, _("%s is now served.") % version.name)
            return
        from .services.catalogue.extraction import coverage

        state = coverage(version)
        if state["done"] + state["failed"] < state["images"]:
            self.message_user(request, _("%(name)s covers %(done)d of %(images)d images; index it first.")
                              % {"name": version.name, **state}, messages.ERROR)
            return
        activate_embedder(version, note=note)
        self.message_user(request, _("%s is now served.") % version.name)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(InteractionEvent)
class InteractionEventAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "event_type", "product_id", "source", "position"]
    list_filter = ["event_type"]
    date_hierarchy = "occurred_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PrivacyRelease)
class PrivacyReleaseAdmin(admin.ModelAdmin):
    """The privacy budget ledger, and the shop statistics released through it.

    ``statistics/`` shows per-product view/cart/purchase counts and per-category shares
    from the window's differentially private release (:mod:`visrec.services.privacy.dp_statistics`);
    ``statistics/csv/`` exports that same release. Neither reads the events directly.
    """

    list_display = ["created_at", "kind", "epsilon", "noise_scale", "plus_minus_95", "period_start"]
    list_filter = ["kind", "period_start"]
    readonly_fields = [f.name for f in PrivacyRelease._meta.fields]
    change_list_template = "admin/visrec/privacyrelease/change_list.html"

    # The ledger is append-only (a database trigger refuses UPDATE and DELETE too): deleting
    # a release would refund budget that was spent.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

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

        from .services.privacy.dp_statistics import current_statistics

        if not self.has_view_permission(request):
            raise PermissionDenied
        return current_statistics()

    def statistics_view(self, request):
        """Shop statistics, every number noisy with its 95% interval; spends budget once per window."""
        from django.template.response import TemplateResponse

        from .conf import visrec_settings
        from .services.privacy.dp_releases import BudgetExceeded, period_start, remaining

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

        from .services.privacy.dp_releases import BudgetExceeded
        from .services.privacy.dp_statistics import write_statistics_csv

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
        from .services.privacy.dp_releases import noise_margin

        return f"± {noise_margin(obj.noise_scale):.0f}"

    def changelist_view(self, request, extra_context=None):
        from .conf import visrec_settings
        from .services.privacy.dp_releases import period_start, remaining

        self.message_user(request, _(
            "Privacy budget: epsilon %(left).2f of %(total).2f left in the period starting %(start)s. "
            "Every count released from shoppers' events is noisy (discrete Laplace); the ± column is a 95%% interval."
        ) % {"left": remaining(), "total": visrec_settings.PRIVACY_BUDGET_EPSILON, "start": period_start()},
            messages.INFO)
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
