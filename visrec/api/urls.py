"""``path("api/visrec/", include("visrec.api.urls"))`` in the host's urls.py."""
from __future__ import annotations

from django.urls import path

from . import schema, views

app_name = "visrec"

#: The endpoints the schema describes.
api_urlpatterns = [
    path("products/<str:product_id>/similar/", views.SimilarProductsView.as_view(), name="similar-products"),
    path("search/", views.PhotoSearchView.as_view(), name="photo-search"),
    path("events/", views.EventBatchView.as_view(), name="events"),
    path("for-you/", views.ForYouView.as_view(), name="for-you"),
]

urlpatterns = [
    *api_urlpatterns,
    path("schema/", schema.VisrecSchemaView.as_view(), name="schema"),
    path("docs/", schema.VisrecDocsView.as_view(), name="docs"),
    path("docs/assets/<str:filename>", schema.docs_asset, name="docs-asset"),
]
