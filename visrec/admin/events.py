"""Shoppers' events, read-only."""
from __future__ import annotations

from django.contrib import admin

from ..models import InteractionEvent


@admin.register(InteractionEvent)
class InteractionEventAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "event_type", "product_id", "source", "position"]
    list_filter = ["event_type"]
    date_hierarchy = "occurred_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
