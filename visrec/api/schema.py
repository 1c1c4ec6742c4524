"""visrec's OpenAPI schema and its Swagger page, independent of the host's REST settings.

The schema describes visrec's endpoints only, at the prefix where the host mounted them,
and every visrec view carries drf-spectacular's schema class itself, so neither depends on
``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` (without it the host's own ``/schema/`` views
would fail). The Swagger page's scripts and styles come from this site, out of the
``drf-spectacular-sidecar`` package, whether or not the host installed it as an app: no
CDN is asked for anything.
"""
from __future__ import annotations

from pathlib import Path

from django.urls import include, path, reverse
from django.views.static import serve
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .. import __version__

#: What the schema says of itself (the host's SPECTACULAR_SETTINGS are for the host's API).
SCHEMA_SETTINGS = {
    "TITLE": "visrec API",
    "DESCRIPTION": "Visual product recommendations: similar products, search by photo, shopper events and "
                   "\"for you\".",
    "VERSION": __version__,
}


class VisrecAutoSchema(AutoSchema):
    """drf-spectacular's schema class, set on every visrec view (``schema = VisrecAutoSchema()``);
    a ``product_id`` in a path has the type of the host's product primary key.

    visrec's views are annotated with ``@extend_schema`` on the class, not on the method: a
    method's annotation is built on the host's ``DEFAULT_SCHEMA_CLASS`` (DRF's own without
    drf-spectacular's setting), which drf-spectacular cannot combine with a view's class.
    """

    def _resolve_path_parameters(self, variables):
        from ..conf import get_product_model

        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["name"] == "product_id":
                pk = get_product_model()._meta.pk
                schema = self._map_model_field(pk, direction=None)
                schema.pop("readOnly", None)
                parameter["schema"] = schema
                parameter["description"] = "the product's primary key"
        return parameters


@extend_schema(exclude=True)
class VisrecSchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema of visrec's endpoints, mounted wherever the host included them."""

    schema = VisrecAutoSchema()
    custom_settings = SCHEMA_SETTINGS

    def get(self, request, *args, **kwargs):
        from . import urls

        mount = request.path_info.removesuffix("schema/")  # where the host included visrec.api.urls
        self.patterns = [path(mount.lstrip("/"), include((urls.api_urlpatterns, urls.app_name)))]
        return super().get(request, *args, **kwargs)


def swagger_dist() -> Path:
    """The folder of Swagger UI's files in the drf-spectacular-sidecar package."""
    import drf_spectacular_sidecar

    return Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar" / "swagger-ui-dist"


@extend_schema(exclude=True)
class VisrecDocsView(SpectacularSwaggerView):
    """Swagger UI for visrec's schema, its assets served by :func:`docs_asset`."""

    schema = VisrecAutoSchema()
    url_name = "visrec:schema"
    title = SCHEMA_SETTINGS["TITLE"]

    def _swagger_ui_resource(self, filename: str) -> str:  # noqa: D102 - drf-spectacular's hook
        return reverse("visrec:docs-asset", args=[filename])

    def _swagger_ui_favicon(self) -> str:  # noqa: D102
        return reverse("visrec:docs-asset", args=["favicon-32x32.png"])


def docs_asset(request, filename: str):
    """One file of Swagger UI (a 404 for anything else: no path leaves the folder)."""
    return serve(request, filename, document_root=str(swagger_dist()))
