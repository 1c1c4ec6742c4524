"""Model versions: what was trained, its metrics, promotion and rollback."""
from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from ..models import ModelKind, ModelVersion
from ..services.catalogue.embedders import activate_embedder


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
            from ..models import RecommenderItemVector
            from ..services.serving.versions import activate_version

            if not RecommenderItemVector.objects.filter(model_version=version.name).exists():
                self.message_user(request, _("%s was never published (kept out by its guardrail or failed).")
                                  % version.name, messages.ERROR)
                return
            activate_version(version, note=note)
            self.message_user(request, _("%s is now served.") % version.name)
            return
        from ..services.catalogue.extraction import coverage

        state = coverage(version)
        if state["done"] + state["failed"] < state["images"]:
            self.message_user(request, _("%(name)s covers %(done)d of %(images)d images; index it first.")
                              % {"name": version.name, **state}, messages.ERROR)
            return
        activate_embedder(version, note=note)
        self.message_user(request, _("%s is now served.") % version.name)

    def has_add_permission(self, request) -> bool:
        return False
