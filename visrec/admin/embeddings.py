"""Image embeddings: status and errors per image, re-queue in bulk."""
from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import ImageEmbedding


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
        from ..tasks import embed_images

        ids = list(queryset.values_list("image_id", flat=True).distinct())
        embed_images.delay(ids, force=True)
        self.message_user(request, ngettext("%d image queued.", "%d images queued.", len(ids)) % len(ids))

    def has_add_permission(self, request) -> bool:
        return False
