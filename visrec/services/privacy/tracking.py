"""Recording what shoppers do: views, clicks on recommendations, carts, purchases, photo searches.

The stored subject is a keyed pseudonym (:func:`visrec.pseudonyms.subject_key`) of the
logged-in user or, for anonymous shoppers, of the session; events carry no IP address and
no user agent. The pseudonym is kept in the session, so when a shopper logs in the events
of their anonymous session are moved to their account's pseudonym.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone

from ...conf import get_product_model, visrec_settings
from ...models import CategoryReport, EventType, InteractionEvent
from ...pseudonyms import subject_key
from ..catalogue import products

SESSION_KEY = "visrec_subject"
#: Timestamps may be this far in the future (clock skew between browser and server).
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
#: Events older than this are refused as stale.
MAX_EVENT_AGE = dt.timedelta(days=7)
MAX_BATCH = 100


class TrackingError(ValueError):
    """An event that cannot be recorded; ``errors`` maps a field (or batch index) to a message."""

    def __init__(self, errors: dict):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class EventIn:
    """One event as a caller gives it (validated by :func:`validate_events`)."""

    event_type: str
    product: object  # a product instance or its primary key
    occurred_at: dt.datetime | None = None
    source: str = ""
    position: int | None = None


def subject_for_request(request) -> str:
    """The pseudonym of the shopper making a request (creating their session if needed)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        key = subject_key("user", user.pk)
    else:
        session = request.session
        if session.session_key is None:
            session.save()
        # Recomputed, not read back: after a secret rotation new events use the new secret.
        key = subject_key("session", session.session_key)
    if request.session.get(SESSION_KEY) != key:
        request.session[SESSION_KEY] = key
    return key


def adopt_session_history(request, user) -> int:
    """Moves the anonymous session's events to the user's pseudonym; returns how many moved.

    Connected to ``user_logged_in``: the session (and the pseudonym stored in it) survives
    the session-key rotation of ``login()``.
    """
    previous = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    current = subject_key("user", user.pk)
    moved = 0
    if previous and previous != current:
        moved = InteractionEvent.objects.filter(subject_key=previous).update(subject_key=current)
        CategoryReport.objects.filter(subject_key=previous).update(subject_key=current)
    if hasattr(request, "session"):
        request.session[SESSION_KEY] = current
    return moved


def validate_events(events: Iterable[EventIn], *, now: dt.datetime | None = None) -> list[InteractionEvent]:
    """Unsaved events, or :class:`TrackingError` naming every problem (nothing is saved then)."""
    events = list(events)
    if not events:
        raise TrackingError({"events": "no events given"})
    if len(events) > MAX_BATCH:
        raise TrackingError({"events": f"{len(events)} events in one batch; the limit is {MAX_BATCH}"})
    now = now or timezone.now()
    Product = get_product_model()
    wanted = {getattr(e.product, "pk", e.product) for e in events}
    try:
        known = set(Product._default_manager.filter(pk__in=[p for p in wanted if p is not None]).values_list("pk", flat=True))
    except (TypeError, ValueError, ValidationError):
        known = set()
    owners = products.canonical_ids(known)  # an event on a variant is its parent's
    errors: dict = {}
    out: list[InteractionEvent] = []
    for index, event in enumerate(events):
        problems = []
        if event.event_type not in EventType.values:
            problems.append(f"unknown event type {event.event_type!r}; use one of {', '.join(EventType.values)}")
        product_id = getattr(event.product, "pk", event.product)
        if event.event_type != EventType.SEARCH or product_id is not None:
            if product_id not in known:
                problems.append(f"unknown product {product_id!r}")
        when = event.occurred_at or now
        if timezone.is_naive(when):
            problems.append("timestamp needs a time zone")
        elif when > now + MAX_CLOCK_SKEW:
            problems.append("timestamp is in the future")
        elif when < now - MAX_EVENT_AGE:
            problems.append(f"timestamp is older than {MAX_EVENT_AGE.days} days")
        if event.position is not None and not (0 <= int(event.position) < 1000):
            problems.append("position must be between 0 and 999")
        if problems:
            errors[index] = "; ".join(problems)
            continue
        out.append(InteractionEvent(product_id=owners.get(product_id), event_type=event.event_type, occurred_at=when,
                                    source=(event.source or "")[:50], position=event.position))
    if errors:
        raise TrackingError(errors)
    return out


def record_events(subject: str, events: Iterable[EventIn], request=None) -> int:
    """Validates and stores events of one subject in one insert; returns how many were stored.

    Nothing is stored without the shopper's consent (``CONSENT_CHECK``), and events beyond
    the per-day contribution bounds are dropped (see :mod:`visrec.services.privacy.shopper_data`).
    Under ``LOCAL_DP`` they also yield randomised category reports
    (:mod:`visrec.services.privacy.local_dp`).
    """
    from .shopper_data import bound_contributions, has_consent

    rows = validate_events(events)
    if not has_consent(request):
        return 0
    for row in rows:
        row.subject_key = subject
    rows, _ = bound_contributions(subject, rows)
    InteractionEvent.objects.bulk_create(rows)
    if visrec_settings.LOCAL_DP:
        from .local_dp import record_category_reports

        record_category_reports(subject, rows)
    return len(rows)


def track(request, event_type: str, product=None, *, source: str = "", position: int | None = None,
          occurred_at: dt.datetime | None = None) -> int:
    """Records one event of the requesting shopper: ``visrec.track(request, "view", product)``.

    Raises:
        TrackingError: unknown type or product, or a bad timestamp.
    """
    event = EventIn(event_type=event_type, product=product, occurred_at=occurred_at, source=source,
                    position=position)
    from .shopper_data import has_consent

    if not has_consent(request):
        validate_events([event])
        return 0
    return record_events(subject_for_request(request), [event], request)
