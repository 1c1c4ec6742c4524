"""Catalogue intelligence: category suggestions, near-duplicates, the catalogue map, embedding failures.

Hung on the product embeddings' admin (admin → Visrec → Product embeddings): its list is
replaced by an overview linking the pages, and it has no add, change or delete pages.
Every page needs view permission on product embeddings; accepting suggestions also needs
change permission on the host's product model. The computing is in
:mod:`visrec.services.catalogue.intelligence`.
"""
from __future__ import annotations

import colorsys
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.templatetags.admin_urls import admin_urlname
from django.contrib.admin.utils import quote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..conf import get_product_model, visrec_settings
from ..models import CatalogueIntelligence, EmbeddingStatus, ProductEmbedding
from ..services.catalogue import intelligence
from ..services.catalogue.categories import category_labels
from ..services.catalogue.embedders import active_embedder_version
from ..services.serving import presentation
from .base import ViewOnlyAdmin

PER_PAGE = 100
#: Map drawing area (SVG user units).
MAP_WIDTH, MAP_HEIGHT, MAP_MARGIN = 960, 640, 12


@admin.register(CatalogueIntelligence)
class CatalogueIntelligenceAdmin(ViewOnlyAdmin):
    """The catalogue intelligence pages (see the module's note)."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("", view(self.overview_view), name="visrec_catalogueintelligence_changelist"),
            path("suggestions/", view(self.suggestions_view), name="visrec_catalogue_suggestions"),
            path("duplicates/", view(self.duplicates_view), name="visrec_catalogue_duplicates"),
            path("map/", view(self.map_view), name="visrec_catalogue_map"),
        ]

    # ------------------------------------------------------------------ helpers

    def _context(self, request, title, page_name: str) -> dict:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
                "page_name": page_name,
                "version": active_embedder_version(), "nothing": "", "has_categories": bool(visrec_settings.CATEGORY_FIELD)}

    def _product_admin_url(self, pk) -> str:
        """The host product's admin change page, or "" when its model is not in this admin site."""
        model = get_product_model()
        if not self.admin_site.is_registered(model):
            return ""
        try:
            return reverse(admin_urlname(model._meta, "change"), args=[quote(pk)], current_app=self.admin_site.name)
        except NoReverseMatch:
            return ""

    def _cards(self, ids) -> dict:
        """``{pk: {"name", "image_url", "alt", "admin_url"}}``: visrec's cards, and for products not
        shown in the shop (hidden, say) their name only."""
        ids = list(dict.fromkeys(ids))
        cards = {card["pk"]: card for card in presentation.product_cards([(pid, 0.0) for pid in ids])}
        missing = [pid for pid in ids if pid not in cards]
        if missing:
            for pk, product in get_product_model()._base_manager.in_bulk(missing).items():
                cards[pk] = {"pk": pk, "name": str(product), "image_url": "", "alt": str(product)}
        return {pk: {**card, "admin_url": self._product_admin_url(pk)} for pk, card in cards.items()}

    def _can_change_products(self, request) -> bool:
        meta = get_product_model()._meta
        return request.user.has_perm(f"{meta.app_label}.{get_permission_codename('change', meta)}")

    def _neighbourhood(self, request, context):
        """The neighbour lists (computed when not cached, or asked to), or None with ``context["nothing"]`` set."""
        try:
            return intelligence.catalogue_neighbours(refresh=request.method == "POST" and "recompute" in request.POST)
        except intelligence.NothingEmbedded as exc:
            context["nothing"] = str(exc)
            return None

    # ------------------------------------------------------------------ pages

    def overview_view(self, request, extra_context=None):
        """Counts and links: suggestions (when the lists are computed), failures and their reasons."""
        context = self._context(request, _("Catalogue intelligence"), "overview")
        version = context["version"]
        failures = intelligence.embedding_failures()
        failed_url = reverse("admin:visrec_imageembedding_changelist", current_app=self.admin_site.name)
        query = {"status__exact": EmbeddingStatus.FAILED}
        if failures.version:
            query["model_version__exact"] = failures.version
        context.update(failures=failures, failed_url=f"{failed_url}?{urlencode(query)}", embedded=0, counts=None)
        if version is None:
            context["nothing"] = "nothing is embedded yet: run `python manage.py visrec_index`"
        else:
            context["embedded"] = ProductEmbedding.objects.filter(model_version=version.name).count()
            if not context["embedded"]:
                context["nothing"] = (f"no product has a vector under {version.name} yet: "
                                      "run `python manage.py visrec_index`")
            neighbourhood = intelligence.cached_neighbours()
            if neighbourhood is not None and context["has_categories"]:
                found = intelligence.suggest_categories(neighbourhood=neighbourhood)
                context["counts"] = {
                    "computed_at": neighbourhood.computed_at,
                    "uncategorised": sum(s.kind == intelligence.UNCATEGORISED for s in found),
                    "miscategorised": sum(s.kind == intelligence.MISCATEGORISED for s in found),
                    "duplicates": len(intelligence.near_duplicates(neighbourhood=neighbourhood)),
                }
        return TemplateResponse(request, "admin/visrec/catalogue/overview.html", context)

    def suggestions_view(self, request):
        """Category suggestions with filters; POST ``accept`` writes the ticked ones, ``recompute`` recomputes."""
        context = self._context(request, _("Category suggestions"), "suggestions")
        can_accept = self._can_change_products(request)
        if request.method == "POST" and "accept" in request.POST:
            if not can_accept:
                raise PermissionDenied
            return self._accept(request)
        kind = request.GET.get("kind", "")
        if kind not in ("", intelligence.UNCATEGORISED, intelligence.MISCATEGORISED):
            kind = ""
        try:
            min_confidence = min(max(float(request.GET.get("min_confidence") or 0), 0.0), 1.0)
        except ValueError:
            min_confidence = 0.0
        context.update(kind=kind, min_confidence=min_confidence, can_accept=can_accept, page=None,
                       threshold=visrec_settings.CATALOGUE_MISCATEGORISED_CONFIDENCE,
                       support=visrec_settings.CATALOGUE_CURRENT_SUPPORT_MAX, k=visrec_settings.CATALOGUE_NEIGHBOURS)
        if not context["has_categories"]:
            context["nothing"] = "CATEGORY_FIELD is not set: visrec does not know your products' categories"
            return TemplateResponse(request, "admin/visrec/catalogue/suggestions.html", context)
        neighbourhood = self._neighbourhood(request, context)
        if neighbourhood is not None:
            if request.method == "POST":
                self.message_user(request, _("Neighbour lists recomputed."))
                return redirect(request.get_full_path())
            found = intelligence.suggest_categories(kinds=(kind,) if kind else (intelligence.UNCATEGORISED,
                                                                                 intelligence.MISCATEGORISED),
                                                    min_confidence=min_confidence, neighbourhood=neighbourhood)
            page = Paginator(found, PER_PAGE).get_page(request.GET.get("p"))
            cards = self._cards(s.product_id for s in page)
            labels = category_labels({s.suggested for s in page} | {s.current for s in page if s.current})
            context.update(neighbourhood=neighbourhood, total=len(found), page=page, rows=[
                {"s": s, "card": cards.get(s.product_id, {"name": str(s.product_id)}),
                 "current": labels.get(s.current, s.current) if s.current else "",
                 "suggested": labels.get(s.suggested, s.suggested),
                 "value": f"{s.product_id}|{s.current or ''}|{s.suggested}"} for s in page])
            query = request.GET.copy()
            query.pop("p", None)
            context["query"] = query.urlencode()
        return TemplateResponse(request, "admin/visrec/catalogue/suggestions.html", context)

    def _accept(self, request):
        chosen = []
        for value in request.POST.getlist("selected"):
            parts = value.split("|")
            if len(parts) == 3 and parts[0] and parts[2]:
                chosen.append((parts[0], parts[1] or None, parts[2]))
        try:
            changed = intelligence.accept_suggestions(chosen)
        except (intelligence.CategoryNotFound, ValueError) as exc:
            self.message_user(request, _("Nothing changed: %s.") % exc, messages.ERROR)
        else:
            skipped = len(chosen) - changed
            message = ngettext("%(n)d product's category changed.", "%(n)d products' categories changed.",
                               changed) % {"n": changed}
            if skipped:
                message += " " + ngettext(
                    "%(n)d skipped: its category changed since the suggestion.",
                    "%(n)d skipped: their categories changed since the suggestion.", skipped) % {"n": skipped}
            self.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)
        return redirect(request.get_full_path())

    def duplicates_view(self, request):
        """Pairs of products whose pictures are (almost) the same, most similar first."""
        context = self._context(request, _("Near-duplicate products"), "duplicates")
        default = visrec_settings.CATALOGUE_DUPLICATE_SIMILARITY
        try:
            threshold = min(max(float(request.GET.get("threshold") or default), 0.0), 1.0)
        except ValueError:
            threshold = default
        context.update(threshold=threshold, page=None)
        neighbourhood = self._neighbourhood(request, context)
        if neighbourhood is not None:
            if request.method == "POST":
                self.message_user(request, _("Neighbour lists recomputed."))
                return redirect(request.get_full_path())
            pairs = intelligence.near_duplicates(threshold, neighbourhood=neighbourhood)
            page = Paginator(pairs, PER_PAGE).get_page(request.GET.get("p"))
            cards = self._cards([pid for pair in page for pid in (pair.first, pair.second)])
            unknown = {"name": "", "image_url": "", "admin_url": ""}
            context.update(neighbourhood=neighbourhood, total=len(pairs), page=page, rows=[
                {"pair": pair, "first": cards.get(pair.first, {**unknown, "name": str(pair.first)}),
                 "second": cards.get(pair.second, {**unknown, "name": str(pair.second)})} for pair in page])
            context["query"] = urlencode({"threshold": threshold})
        return TemplateResponse(request, "admin/visrec/catalogue/duplicates.html", context)

    def map_view(self, request):
        """The 2-D map as inline SVG: a point per product, coloured by category, each a link."""
        context = self._context(request, _("Catalogue map"), "map")
        try:
            found = intelligence.catalogue_map()
        except intelligence.NothingEmbedded as exc:
            context["nothing"] = str(exc)
            return TemplateResponse(request, "admin/visrec/catalogue/map.html", context)
        keys = sorted({p.category for p in found.points if p.category is not None})
        labels = category_labels(keys)
        colours = dict(zip(keys, palette(len(keys))))
        names = {pk: str(product) for pk, product in
                 get_product_model()._base_manager.in_bulk([p.product_id for p in found.points]).items()}
        width, height = MAP_WIDTH - 2 * MAP_MARGIN, MAP_HEIGHT - 2 * MAP_MARGIN
        points = []
        for p in found.points:
            label = labels.get(p.category, p.category) if p.category is not None else _("uncategorised")
            points.append({"pk": p.product_id, "cx": round(MAP_MARGIN + p.x * width, 1),
                           "cy": round(MAP_MARGIN + p.y * height, 1), "colour": colours.get(p.category, UNCATEGORISED),
                           "name": names.get(p.product_id, str(p.product_id)), "category": label,
                           "url": self._product_admin_url(p.product_id)})
        legend = [{"label": labels.get(k, k), "colour": colours[k],
                   "count": sum(p.category == k for p in found.points)} for k in keys]
        uncategorised = sum(p.category is None for p in found.points)
        if uncategorised:
            legend.append({"label": _("uncategorised"), "colour": UNCATEGORISED, "count": uncategorised})
        context.update(map=found, points=points, legend=legend, width=MAP_WIDTH, height=MAP_HEIGHT)
        return TemplateResponse(request, "admin/visrec/catalogue/map.html", context)


#: Colour of uncategorised products on the map.
UNCATEGORISED = "#8c8c8c"


def palette(n: int) -> list[str]:
    """``n`` distinct colours as ``#rrggbb``: hues around the wheel (golden angle), dark enough on white."""
    colours = []
    for i in range(n):
        hue = (i * 0.381966) % 1.0
        lightness = 0.38 if i % 2 else 0.48
        r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.75)
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colours
