"""The mixin a host adds to its own product admin: embedding status and look-alikes.

In the host's admin.py::

    from visrec.admin import VisuallySimilarAdminMixin

    @admin.register(Product)
    class ProductAdmin(VisuallySimilarAdminMixin, admin.ModelAdmin):
        readonly_fields = ["visrec_embedding_status", "visrec_similar_products"]
"""
from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..models import EmbeddingStatus, ImageEmbedding
from ..services.catalogue.embedders import active_embedder_version
from ..services.serving import presentation, similar


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
