"""Recording what shoppers do: views, clicks on recommendations, carts, purchases, photo searches.

The stored subject is a keyed pseudonym (:func:`visrec.pseudonyms.subject_key`) of the
logged-in user or, for an anonymous shopper, of a random token visrec keeps in their session
(``visrec_anon``); events carry no IP address and no user agent. Nothing in the session or
the cache is a pseudonym: turning the user id or the token into one takes the secret. When a
shopper logs in, their anonymous events move to their account's pseudonym and the token
leaves the session. A read ("for you", widgets) never creates a session.

Trust: an event counts toward what is released to everyone (trending, shop statistics)
only from an *established* shopper (:func:`is_established`): a logged-in one, or an anonymous
one whose session is ``ESTABLISHED_AFTER_SECONDS`` old and who viewed
``ESTABLISHED_MIN_VIEWS`` distinct products, so fresh cookieless requests cannot stuff a
public list. Every event still serves its own shopper.
"""
from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone

from ...conf import get_product_model, visrec_settings
from ...models import CategoryReport, EventType, InteractionEvent
from ...pseudonyms import subject_key
from ..catalogue import products

#: Session key of an anonymous shopper's token (the seed of their pseudonym, not a pseudonym).
SESSION_KEY = "visrec_anon"
#: Session key of when visrec first saw the anonymous shopper (unix seconds).
SINCE_KEY = "visrec_since"
#: Keys visrec may have written into sessions (the first one by versions before 0.2).
SESSION_KEYS = (SESSION_KEY, SINCE_KEY, "visrec_subject")
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


class SessionUnavailable(RuntimeError):
    """The session store (say the cache of ``cached_db`` sessions) cannot be read or written."""


def subject_for_request(request, *, create: bool = True) -> str | None:
    """The pseudonym of the shopper making a request.

    An anonymous shopper gets a token in their session on their first event (``create``);
    a read passes ``create=False`` and gets ``None`` for a shopper visrec has not seen, so no
    session is created by it.

    Raises:
        SessionUnavailable: the session store failed (reads may then serve no one in particular).
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return subject_key("user", user.pk)
    session = getattr(request, "session", None)
    if session is None:
        return None
    try:
        token = session.get(SESSION_KEY)
        if token is None:
            if not create:
                return None
            token = secrets.token_hex(16)
            session[SESSION_KEY] = token
            session[SINCE_KEY] = int(time.time())
    except Exception as exc:  # noqa: BLE001 - any session backend's outage
        raise SessionUnavailable(f"the session store is unavailable: {exc.__class__.__name__}") from exc
    return subject_key("anon", token)


def reading_subject(request) -> str | None:
    """:func:`subject_for_request` for reads: ``None`` for an unseen shopper or a session store
    that is down (the list is then everyone's, not a 500)."""
    try:
        return subject_for_request(request, create=False)
    except SessionUnavailable:
        return None


def is_established(request, subject: str) -> bool:
    """Whether the shopper's events count toward public releases (see the module's note)."""
    user = getattr(request, "user", None) if request is not None else None
    if request is None or (user is not None and user.is_authenticated):
        return True  # the host's server (imports, its own calls) or a logged-in customer
    session = getattr(request, "session", None)
    since = session.get(SINCE_KEY) if session is not None else None
    if since is None or time.time() - since < visrec_settings.ESTABLISHED_AFTER_SECONDS:
        return False
    views = (InteractionEvent.objects.filter(subject_key=subject, event_type=EventType.VIEW)
             .values("product_id").distinct().count())
    return views >= visrec_settings.ESTABLISHED_MIN_VIEWS


def adopt_session_history(request, user) -> int:
    """Moves the anonymous shopper's events to the user's pseudonym; returns how many moved.

    Connected to ``user_logged_in``: the session survives the session-key rotation of
    ``login()``; the anonymous token then leaves it (the account's pseudonym needs none).
    """
    session = getattr(request, "session", None)
    if session is None:
        return 0
    token = session.get(SESSION_KEY)
    current = subject_key("user", user.pk)
    moved = 0
    if token:
        previous = subject_key("anon", token)
        moved = InteractionEvent.objects.filter(subject_key=previous).update(subject_key=current)
        CategoryReport.objects.filter(subject_key=previous).update(subject_key=current)
    for key in SESSION_KEYS:
        session.pop(key, None)
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
    from ..experiments.assignment import stamp as stamp_experiment
    from .network import network_allows
    from .shopper_data import bound_contributions, count_dropped, has_consent

    rows = validate_events(events)
    if not subject:
        raise TrackingError({"subject": "no shopper: pass a request with a session or a logged-in user"})
    if not has_consent(request):
        return 0
    if request is not None and not network_allows(request, len(rows)):
        count_dropped(len(rows))
        return 0
    public = is_established(request, subject)
    for row in rows:
        row.subject_key = subject
        row.public = public
    rows, _ = bound_contributions(subject, rows)
    stamp_experiment(subject, rows)
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
