"""What every visrec endpoint does the same way: one error shape, throttles per network,
bounded JSON, and 503 instead of 500 when PostgreSQL or the session store is down.

Error bodies are ``{"detail": "<what went wrong>", "errors": {<field or index>: [...]}}``
(``errors`` only for invalid input), for every 4xx and 5xx visrec answers itself.
"""
from __future__ import annotations

import json
import logging

from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from ..conf import visrec_settings
from ..services.privacy.network import network_key
from ..services.privacy.tracking import SessionUnavailable

logger = logging.getLogger(__name__)

#: Seconds a client is told to wait when a backing service is down.
RETRY_AFTER_SECONDS = 10
#: Largest JSON body the events endpoint reads (100 events need about 20 KB).
MAX_JSON_BYTES = 64 * 1024


def error_response(status_code: int, detail: str, errors=None, headers: dict | None = None) -> Response:
    body = {"detail": detail}
    if errors:
        body["errors"] = errors
    return Response(body, status=status_code, headers=headers)


def handle_exception(view, exc, default) -> Response:
    """The response to an exception raised by a visrec view (see the module's note);
    ``default``: DRF's own handling, for the rest."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("visrec: database unavailable for %s: %s", view.__class__.__name__, exc)
        return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable; try again shortly",
                              headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, SessionUnavailable):
        logger.warning("visrec: %s for %s", exc, view.__class__.__name__)
        return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, "sessions are unavailable; try again shortly",
                              headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, exceptions.ValidationError):
        return error_response(status.HTTP_400_BAD_REQUEST, "invalid request: " + _summary(exc.detail),
                              errors=exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail})
    response = default(exc)
    data = response.data
    if isinstance(data, dict) and set(data) <= {"detail"}:
        return response
    response.data = {"detail": _summary(data), "errors": data}
    return response


def _summary(detail) -> str:
    """The first message of a DRF error detail, with its field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return f"{key}: {_summary(value)}"
        return "invalid"
    if isinstance(detail, list):
        return _summary(detail[0]) if detail else "invalid"
    return str(detail)


class NetworkRateThrottle(SimpleRateThrottle):
    """A DRF throttle per client network (IPv4 /24, IPv6 /64) under a keyed hash of it: no
    address in the cache (DRF's own throttles key on the address). Rates from
    ``VISREC["THROTTLE_RATES"][scope]``; with the cache down, requests pass."""

    def __init__(self):  # the rate is read per request: settings may change (tests)
        pass

    def allow_request(self, request, view) -> bool:
        self.rate = visrec_settings.THROTTLE_RATES.get(self.scope)
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        from ..services.db.cache_guard import cache

        self.cache = cache
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        return network_key(request, f"throttle:{self.scope}").rsplit(":", 1)[0]


class EventsThrottle(NetworkRateThrottle):
    scope = "events"


class PhotoSearchThrottle(NetworkRateThrottle):
    scope = "photo_search"


class BoundedJSONParser(JSONParser):
    """JSON of at most ``MAX_JSON_BYTES``; deeply nested or broken JSON is a 400, never a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read(MAX_JSON_BYTES + 1) if stream is not None else b""
        if len(data) > MAX_JSON_BYTES:
            raise exceptions.ParseError(f"the body is over {MAX_JSON_BYTES} bytes")
        try:
            return json.loads(data.decode((parser_context or {}).get("encoding") or "utf-8"))
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error: {exc.__class__.__name__}") from exc
