"""``path("api/visrec/", include("visrec.api.urls"))`` in the host's urls.py."""
from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

app_name = "visrec"

urlpatterns = [
    path("products/<int:product_id>/similar/", views.SimilarProductsView.as_view(), name="similar-products"),
    path("search/", views.PhotoSearchView.as_view(), name="photo-search"),
    path("events/", views.EventBatchView.as_view(), name="events"),
    path("for-you/", views.ForYouView.as_view(), name="for-you"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="visrec:schema"), name="docs"),
]
