"""Request validation and response shapes of the REST API."""
from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import setting_changed
from rest_framework import serializers

from ..conf import visrec_settings
from ..models import EventType
from ..services.serving.similar import MAX_K, SimilarFilters


class FilterParamsSerializer(serializers.Serializer):
    """Query parameters shared by the "similar" and "search" endpoints."""

    limit = serializers.IntegerField(min_value=1, max_value=MAX_K, default=8)
    in_stock = serializers.BooleanField(default=True)
    category = serializers.ChoiceField(choices=["same", "other"], required=False, allow_null=True, default=None)
    min_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, default=None,
                                         coerce_to_string=False)
    max_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, default=None,
                                         coerce_to_string=False)
    exclude_near_duplicates = serializers.BooleanField(default=False)
    diversity = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)

    def validate(self, attrs):
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"min_price": "min_price must not exceed max_price."})
        if (low is not None or high is not None) and not visrec_settings.PRICE_FIELD:
            raise serializers.ValidationError({"min_price": "price filters are off: VISREC['PRICE_FIELD'] is empty."})
        return attrs

    def filters(self) -> SimilarFilters:
        data = dict(self.validated_data)
        data.pop("limit")
        data.pop("image", None)
        data.pop("predict_category", None)
        return SimilarFilters(**data)


#: Valid query strings' ``(limit, filters)`` (see :func:`filter_params`); emptied when settings change.
_FILTER_FIELDS = tuple(FilterParamsSerializer._declared_fields)
_PARSED: dict[tuple, tuple[int, SimilarFilters]] = {}
_PARSED_SIZE = 256


def filter_params(query_params) -> tuple[int, SimilarFilters]:
    """``limit`` and filters of a GET's query string, validated by :class:`FilterParamsSerializer`.

    A query string that passed once is not validated again (up to 256 of them per process,
    told apart by the serializer's own parameters only):
    storefronts send a handful of them, and building the serializer costs 0.35–0.5 ms of
    CPU here (timed ad hoc), a sixth of a cached "similar" answer. An invalid one raises
    ``ValidationError`` (a 400 with a message) every time.
    """
    # Only the serializer's own fields: tracking parameters (utm_*) and cache-busters are ignored by it.
    key = tuple((name, tuple(query_params.getlist(name))) for name in _FILTER_FIELDS if name in query_params)
    found = _PARSED.get(key)
    if found is None:
        refuse_empty(query_params, _FILTER_FIELDS)
    if found is None:
        params = FilterParamsSerializer(data=query_params)
        params.is_valid(raise_exception=True)
        if len(_PARSED) >= _PARSED_SIZE:
            _PARSED.clear()
        found = _PARSED[key] = (params.validated_data["limit"], params.filters())
    return found


def refuse_empty(query_params, names) -> None:
    """A parameter given with no value (``limit=``) is a 400, as the schema says (DRF would
    otherwise read it as absent and use the default)."""
    empty = {name: ["must not be empty; leave the parameter out for its default"]
             for name in names if name in query_params and any(v == "" for v in query_params.getlist(name))}
    if empty:
        raise serializers.ValidationError(empty)


def _forget_parsed(*, setting: str, **kwargs) -> None:
    if setting == "VISREC":  # PRICE_FIELD decides whether price filters are valid
        _PARSED.clear()


setting_changed.connect(_forget_parsed)


class LeaveOutParamsSerializer(serializers.Serializer):
    """What a page shows already, left out of its "for you" list."""

    product = serializers.CharField(required=False, help_text="the page's product (its primary key)")
    exclude = serializers.CharField(required=False, help_text="comma-separated primary keys the page shows "
                                                              f"already (at most {MAX_K})")

    def validate(self, attrs):
        from ..conf import get_product_model

        pk = get_product_model()._meta.pk
        keys = [attrs["product"]] if attrs.get("product") else []
        keys += [k for k in attrs.get("exclude", "").split(",") if k.strip()]
        if len(keys) > MAX_K + 1:
            raise serializers.ValidationError({"exclude": f"at most {MAX_K} products may be left out."})
        try:
            attrs["keys"] = [pk.to_python(k.strip()) for k in keys]
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"exclude": f"not a product key: {exc.messages[0]}"}) from exc
        return attrs


def leave_out_params(query_params) -> list:
    """The product keys a "for you" request asks to leave out (:class:`LeaveOutParamsSerializer`)."""
    if "product" not in query_params and "exclude" not in query_params:
        return []
    refuse_empty(query_params, ("product", "exclude"))
    params = LeaveOutParamsSerializer(data=query_params)
    params.is_valid(raise_exception=True)
    return params.validated_data["keys"]


class SearchRequestSerializer(FilterParamsSerializer):
    """A multipart upload: ``image`` plus the filters."""

    image = serializers.FileField(allow_empty_file=False)
    predict_category = serializers.BooleanField(default=False)
    category = None  # relative to the query product: meaningless for an upload

    def validate_image(self, upload):
        limit = visrec_settings.MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise serializers.ValidationError(f"The image is {upload.size} bytes; the limit is {limit}.")
        return upload


class ProductCardSerializer(serializers.Serializer):
    """A product card in a response (the schema; :func:`card_rows` writes the rows)."""

    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    url = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    price_display = serializers.CharField(help_text='the price as the shop shows it (VISREC["PRICE_FORMAT"]); "" without one')
    image_url = serializers.CharField()
    alt = serializers.CharField(help_text="the image's alt text")
    score = serializers.FloatField(help_text="cosine similarity to the query, 1 = identical")


CENT = Decimal("0.01")


def card_rows(cards: list[dict]) -> list[dict]:
    """Response rows of product cards, as :class:`ProductCardSerializer` documents them.

    Written out rather than through the serializer: it runs on every "similar" and "for you"
    request, where building a DRF serializer costs as much as reading the cards from the cache.
    """
    return [{"id": card["pk"], "name": card["name"], "url": card["url"],
             "price": None if card["price"] is None else str(Decimal(str(card["price"])).quantize(CENT)),
             "price_display": card["price_display"], "image_url": card["image_url"], "alt": card["alt"],
             "score": float(card["score"])} for card in cards]


class SimilarResponseSerializer(serializers.Serializer):
    product = serializers.IntegerField()
    model_version = serializers.CharField()
    results = ProductCardSerializer(many=True)


class SearchResponseSerializer(serializers.Serializer):
    model_version = serializers.CharField()
    predicted_category = serializers.CharField(allow_null=True)
    category_confidence = serializers.FloatField(allow_null=True)
    category_note = serializers.CharField(help_text="why no category is predicted (the photo looks like nothing "
                                                    "in the catalogue), else empty")
    results = ProductCardSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    """Every error visrec answers: what went wrong and, for invalid input, per field or index."""

    detail = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="the invalid fields (or batch indices) and why")


class EventSerializer(serializers.Serializer):
    """One event from storefront JavaScript."""

    type = serializers.ChoiceField(choices=EventType.values)
    product = serializers.IntegerField(required=False, allow_null=True, default=None)
    timestamp = serializers.DateTimeField(required=False, allow_null=True, default=None)
    source = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    position = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0, max_value=999)


class EventBatchSerializer(serializers.Serializer):
    events = EventSerializer(many=True, allow_empty=False)

    def validate_events(self, value):
        from ..services.privacy.tracking import MAX_BATCH

        if len(value) > MAX_BATCH:
            raise serializers.ValidationError(f"{len(value)} events in one batch; the limit is {MAX_BATCH}.")
        return value


class EventBatchResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()


class BecauseSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    url = serializers.CharField()
    image_url = serializers.CharField()
    alt = serializers.CharField()


class ReasonSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["session", "new", "model", "itemknn", "popularity", "trending"])
    text = serializers.CharField(help_text='e.g. "Because you looked at", "Popular in Shoes now"')
    because = BecauseSerializer(allow_null=True, help_text="the shopper's own product that caused it")


class ForYouCardSerializer(ProductCardSerializer):
    reason = ReasonSerializer(required=False, help_text="with explain=true: why this product is in the list")


class ForYouParamsSerializer(serializers.Serializer):
    explain = serializers.BooleanField(default=False, help_text="say why each product is in the list")


class ForYouResponseSerializer(serializers.Serializer):
    source = serializers.ChoiceField(choices=["blended", "model", "session", "popular", "trending"])
    results = ForYouCardSerializer(many=True)


def with_reasons(rows: list[dict], reasons: dict) -> list[dict]:
    """Card rows with their ``reason`` (:func:`visrec.services.foryou.explain.reason_fields`)."""
    out = []
    for row in rows:
        reason = reasons.get(row["id"])
        if reason is not None:
            because = reason["because"]
            row = {**row, "reason": {"kind": reason["kind"], "text": reason["text"], "because": None if because is None
                                     else {"id": because["pk"], "name": because["name"], "url": because["url"],
                                           "image_url": because["image_url"], "alt": because["alt"]}}}
        out.append(row)
    return out


def explain_param(query_params) -> bool:
    refuse_empty(query_params, ("explain",))
    if "explain" not in query_params:
        return False
    params = ForYouParamsSerializer(data=query_params)
    params.is_valid(raise_exception=True)
    return params.validated_data["explain"]
