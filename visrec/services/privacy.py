"""Shoppers' rights over their events: consent, contribution bounds, retention, export, erasure.

* **Consent**: events are recorded only when ``VISREC["CONSENT_CHECK"]`` (a dotted path to
  ``callable(request) -> bool``; default: always) says yes.
* **Contribution bounds**: per subject and UTC day at most ``MAX_EVENTS_PER_DAY`` events,
  and at most ``MAX_EVENTS_PER_PRODUCT_PER_DAY`` on one product; the rest are dropped and
  counted, so every statistic released from the log has a known sensitivity.
* **Retention**: events older than ``RETENTION_DAYS`` are purged in batches (nightly task,
  ``visrec_purge_events``).
* **Export and erasure** of one shopper's events (``visrec_shopper_data``, or
  :func:`erase_user` from the host's account-deletion flow), erasure also removing their
  stored shopper vectors at once; the next training no longer sees them.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string

from ..conf import visrec_settings
from ..models import InteractionEvent, ShopperVector
from ..pseudonyms import subject_key

DROPPED_KEY = "visrec:dropped-events:{day}"


def has_consent(request) -> bool:
    """The host's consent check for this request (``True`` when none is configured)."""
    path = visrec_settings.CONSENT_CHECK
    if not path or request is None:
        return True
    return bool(import_string(path)(request))


def bound_contributions(subject: str, events: list[InteractionEvent]) -> tuple[list[InteractionEvent], int]:
    """Keeps the events within the subject's daily bounds; returns (kept, dropped count)."""
    if not events:
        return [], 0
    days = {e.occurred_at.astimezone(dt.timezone.utc).date() for e in events}
    start = dt.datetime.combine(min(days), dt.time.min, tzinfo=dt.timezone.utc)
    end = dt.datetime.combine(max(days), dt.time.max, tzinfo=dt.timezone.utc)
    stored = InteractionEvent.objects.filter(subject_key=subject, occurred_at__range=(start, end))
    per_day: Counter = Counter()
    per_product: Counter = Counter()
    for row in stored.values("occurred_at__date", "product_id").annotate(n=Count("pk")):
        per_day[row["occurred_at__date"]] += row["n"]
        per_product[(row["occurred_at__date"], row["product_id"])] += row["n"]
    kept, dropped = [], 0
    for event in events:
        day = event.occurred_at.astimezone(dt.timezone.utc).date()
        if per_day[day] >= visrec_settings.MAX_EVENTS_PER_DAY or (
                event.product_id is not None
                and per_product[(day, event.product_id)] >= visrec_settings.MAX_EVENTS_PER_PRODUCT_PER_DAY):
            dropped += 1
            continue
        per_day[day] += 1
        per_product[(day, event.product_id)] += 1
        kept.append(event)
    if dropped:
        key = DROPPED_KEY.format(day=timezone.now().date().isoformat())
        cache.add(key, 0, 60 * 60 * 24 * 40)
        cache.incr(key, dropped)
    return kept, dropped


def dropped_events(day: dt.date | None = None) -> int:
    """How many events the bounds dropped on a day (today by default)."""
    return int(cache.get(DROPPED_KEY.format(day=(day or timezone.now().date()).isoformat()), 0))


def purge_expired_events(*, days: int | None = None, batch_size: int = 5000, now: dt.datetime | None = None) -> int:
    """Deletes events older than ``RETENTION_DAYS`` in batches (each its own transaction)."""
    days = visrec_settings.RETENTION_DAYS if days is None else days
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    total = 0
    while True:
        with transaction.atomic():
            ids = list(InteractionEvent.objects.filter(occurred_at__lt=cutoff).order_by("pk")
                       .values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            total += InteractionEvent.objects.filter(pk__in=ids).delete()[0]


def export_subject(subject: str) -> dict:
    """Every stored event of one subject, as JSON-ready data."""
    events = InteractionEvent.objects.filter(subject_key=subject).order_by("occurred_at", "pk")
    return {
        "subject": subject,
        "events": [
            {"type": e.event_type, "product": e.product_id, "timestamp": e.occurred_at.isoformat(),
             "source": e.source, "position": e.position}
            for e in events
        ],
    }


def erase_subject(subject: str) -> dict[str, int]:
    """Deletes one subject's events and stored shopper vectors at once."""
    with transaction.atomic():
        events = InteractionEvent.objects.filter(subject_key=subject).delete()[0]
        vectors = ShopperVector.objects.filter(subject_key=subject).delete()[0]
    return {"events": events, "shopper_vectors": vectors}


def user_subject(user) -> str:
    return subject_key("user", user.pk)


def erase_user(user) -> dict[str, int]:
    """For the host's account-deletion flow: erase everything visrec holds about a user."""
    return erase_subject(user_subject(user))


def export_user(user) -> dict:
    """For the host's data-export flow: the user's events."""
    return export_subject(user_subject(user))
