"""REST views: thin over :mod:`visrec.services.serving.similar` and :mod:`visrec.services.serving.photo_search`."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..conf import get_product_model
from ..imaging import ImageRejected
from ..models import ModelKind
from ..services.privacy.tracking import EventIn, TrackingError, record_events, subject_for_request
from ..services.serving import presentation
from ..services.serving.photo_search import search_by_image
from ..services.serving.similar import NotEmbedded, fallback_products, similar_list
from ..services.serving.versions import served_version
from . import guards
from .schema import VisrecAutoSchema
from .serializers import (
    ErrorSerializer,
    EventBatchResponseSerializer,
    EventBatchSerializer,
    FilterParamsSerializer,
    ForYouParamsSerializer,
    ForYouResponseSerializer,
    LeaveOutParamsSerializer,
    SearchRequestSerializer,
    SearchResponseSerializer,
    SimilarResponseSerializer,
    card_rows,
    explain_param,
    filter_params,
    leave_out_params,
    with_reasons,
)


class VisrecView(APIView):
    """What every visrec endpoint shares: its own schema class (the host's
    ``DEFAULT_SCHEMA_CLASS`` does not matter) and error handling (:mod:`visrec.api.guards`)."""

    schema = VisrecAutoSchema()

    def handle_exception(self, exc):
        return guards.handle_exception(self, exc, super().handle_exception)


def product_pk(value: str):
    """The host product's primary key from a URL's text, or 404 (not a key of that type, or
    out of its range: an id of 2**63 is no product, not a database error)."""
    pk = get_product_model()._meta.pk
    try:
        key = pk.to_python(value)
        pk.run_validators(key)
    except ValidationError as exc:
        raise Http404("no such product") from exc
    return key


@extend_schema(
    parameters=[FilterParamsSerializer],
    responses={200: SimilarResponseSerializer, 400: ErrorSerializer, 404: ErrorSerializer, 503: ErrorSerializer},
    summary="Visually similar products",
    description="The products nearest to this one in the served embedding (cosine), never the product "
                "itself. Without a vector yet, same-category products with score 0.",
)
class SimilarProductsView(VisrecView):
    """Products that look like a product."""

    def get(self, request, product_id: str):
        product_id = product_pk(product_id)
        limit, filters = filter_params(request.query_params)
        try:
            # A product with a vector exists (vectors go with their product, and a deletion
            # makes cached lists stale), so only the fallback path asks whether it exists.
            found = similar_list(product_id, limit, filters)
            model_version, ranked = found.model_version, found.ranked
        except NotEmbedded:
            get_object_or_404(get_product_model()._default_manager.only("pk"), pk=product_id)
            version = served_version(ModelKind.EMBEDDER)
            model_version = version.name if version else ""
            ranked = fallback_products(product_id, limit, filters)
        return Response({
            "product": product_id,
            "model_version": model_version,
            "results": card_rows(presentation.product_cards(ranked)),
        })


@extend_schema(
    request={"multipart/form-data": SearchRequestSerializer},
    responses={200: SearchResponseSerializer, 400: ErrorSerializer, 429: ErrorSerializer, 503: ErrorSerializer},
    summary="Search by photo",
    description="Upload an image (multipart field `image`); size- and pixel-limited. Image URLs are "
                "not accepted: visrec never fetches a client-given address.",
)
class PhotoSearchView(VisrecView):
    """Products that look like an uploaded photo."""

    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [guards.PhotoSearchThrottle]

    def post(self, request):
        params = SearchRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["image"]
        try:
            result = search_by_image(upload.read(), params.validated_data["limit"], params.filters(),
                                     with_category=params.validated_data["predict_category"])
        except ImageRejected as exc:
            return guards.error_response(status.HTTP_400_BAD_REQUEST, f"image rejected: {exc.reason}")
        except NotEmbedded as exc:
            return guards.error_response(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc),
                                         headers={"Retry-After": str(guards.RETRY_AFTER_SECONDS)})
        category = result.predicted_category
        return Response({
            "model_version": result.model_version,
            "predicted_category": None if category is None else str(_category_label(category)),
            "category_confidence": result.category_confidence,
            "category_note": result.category_note,
            "results": card_rows(presentation.product_cards(result.ranked)),
        })


def _category_label(value):
    """A category's display name when the category field is a foreign key, else the value."""
    from ..conf import visrec_settings

    field = get_product_model()._meta.get_field(visrec_settings.CATEGORY_FIELD)
    if field.is_relation:
        obj = field.related_model._default_manager.filter(pk=value).first()
        return obj if obj is not None else value
    return value


@extend_schema(
    request=EventBatchSerializer,
    responses={202: EventBatchResponseSerializer, 400: ErrorSerializer, 429: ErrorSerializer, 503: ErrorSerializer},
    summary="Record shopper events",
    description="Up to 100 events (view, click, cart, search, impression; purchase only from a logged-in "
                "shopper: purchases are the shop server's to record) of the requesting shopper; all are "
                "validated before any is stored. The shopper is identified by their session or login only. "
                "Throttled per client network.",
)
class EventBatchView(VisrecView):
    """Events of the requesting shopper, batched by storefront JavaScript (``visrec.js``)."""

    parser_classes = [guards.BoundedJSONParser]
    throttle_classes = [guards.EventsThrottle]

    def post(self, request):
        batch = EventBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        events = [EventIn(event_type=e["type"], product=e["product"], occurred_at=e["timestamp"],
                          source=e["source"], position=e["position"]) for e in batch.validated_data["events"]]
        if not request.user.is_authenticated:
            refused = {str(i): ["purchases are recorded by the shop's server, not by an anonymous client"]
                       for i, e in enumerate(events) if e.event_type == "purchase"}
            if refused:
                return guards.error_response(status.HTTP_400_BAD_REQUEST, "no event was recorded", {"events": refused})
        from ..services.privacy.shopper_data import has_consent

        if not has_consent(request):
            return Response({"accepted": 0}, status=status.HTTP_202_ACCEPTED)
        try:
            accepted = record_events(subject_for_request(request), events, request)
        except TrackingError as exc:
            return guards.error_response(status.HTTP_400_BAD_REQUEST, "no event was recorded",
                                         {"events": {str(k): [v] for k, v in exc.errors.items()}})
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    parameters=[FilterParamsSerializer, LeaveOutParamsSerializer, ForYouParamsSerializer],
    responses={200: ForYouResponseSerializer, 400: ErrorSerializer, 503: ErrorSerializer},
    summary="Recommended for you",
    description="Products for the shopper making the request (their login or session): the trained "
                "model blended with their session, else their session alone, else trending. On a product "
                "page, pass `product` (and what the page shows already as `exclude`) to leave them out.",
)
class ForYouView(VisrecView):
    """The requesting shopper's "for you" list. No parameter selects another shopper."""

    def get(self, request):
        from ..services.foryou.explain import reason_fields
        from ..services.foryou.recommend import recommend_for_request

        limit, filters = filter_params(request.query_params)
        leave_out = leave_out_params(request.query_params)
        explain = explain_param(request.query_params)
        found = recommend_for_request(request, limit, filters, leave_out=leave_out)
        rows = card_rows(presentation.product_cards(found.ranked))
        if explain:
            rows = with_reasons(rows, reason_fields(found))
        return Response({"source": found.source, "results": rows})
