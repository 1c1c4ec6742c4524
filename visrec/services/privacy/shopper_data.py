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
  stored shopper vectors and category reports at once; the next training no longer sees
  them. A user is found under the current pseudonym secret and every fallback.
* **Secret rotation**: :func:`rekey_user_pseudonyms` (``visrec_rotate_pseudonyms``) moves
  what is stored under a user's pseudonyms of the fallback secrets to the current one.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from ...conf import visrec_settings
from ...models import CategoryReport, EventType, InteractionEvent, ShopperVector
from ...pseudonyms import subject_key, subject_keys
from ..db.cache_guard import cache
from ..foryou.recommend import forget_shoppers

#: Everything visrec stores keyed by a subject's pseudonym.
SUBJECT_MODELS = (InteractionEvent, ShopperVector, CategoryReport)

DROPPED_KEY = "visrec:dropped-events:{day}"
#: ``source`` of events loaded from a shop's records by an import (kept by retention by default).
IMPORT_SOURCE = "import"


def has_consent(request) -> bool:
    """The host's consent check for this request (``True`` when none is configured)."""
    check = visrec_settings.hook("CONSENT_CHECK")
    if check is None or request is None:
        return True
    return bool(check(request))


def bound_contributions(subject: str, events: list[InteractionEvent]) -> tuple[list[InteractionEvent], int]:
    """Keeps the events within the subject's daily bounds; returns (kept, dropped count)."""
    if not events:
        return [], 0
    days = {e.occurred_at.astimezone(dt.timezone.utc).date() for e in events}
    start = dt.datetime.combine(min(days), dt.time.min, tzinfo=dt.timezone.utc)
    end = dt.datetime.combine(max(days), dt.time.max, tzinfo=dt.timezone.utc)
    stored = InteractionEvent.objects.filter(subject_key=subject, occurred_at__range=(start, end))
    # Impressions have bounds of their own: a page of widgets must not use up a shopper's day.
    per_day: Counter = Counter()
    per_product: Counter = Counter()
    for row in stored.values("occurred_at__date", "product_id", "event_type").annotate(n=Count("pk")):
        shown = row["event_type"] == EventType.IMPRESSION
        per_day[(row["occurred_at__date"], shown)] += row["n"]
        per_product[(row["occurred_at__date"], shown, row["product_id"])] += row["n"]
    kept, dropped = [], 0
    for event in events:
        day = event.occurred_at.astimezone(dt.timezone.utc).date()
        shown = event.event_type == EventType.IMPRESSION
        if per_day[(day, shown)] >= visrec_settings.MAX_EVENTS_PER_DAY or (
                event.product_id is not None
                and per_product[(day, shown, event.product_id)] >= visrec_settings.MAX_EVENTS_PER_PRODUCT_PER_DAY):
            dropped += 1
            continue
        per_day[(day, shown)] += 1
        per_product[(day, shown, event.product_id)] += 1
        kept.append(event)
    count_dropped(dropped)
    return kept, dropped


def count_dropped(dropped: int) -> None:
    """Adds to today's count of events the bounds dropped (in the cache; lost if it is down)."""
    if not dropped:
        return
    key = DROPPED_KEY.format(day=timezone.now().date().isoformat())
    cache.add(key, 0, 60 * 60 * 24 * 40)
    try:
        cache.incr(key, dropped)
    except ValueError:  # the cache is down (add did nothing) or evicted it
        pass


def dropped_events(day: dt.date | None = None) -> int:
    """How many events the bounds dropped on a day (today by default)."""
    return int(cache.get(DROPPED_KEY.format(day=(day or timezone.now().date()).isoformat()), 0))


def purge_expired_events(*, days: int | None = None, batch_size: int = 5000, now: dt.datetime | None = None) -> int:
    """Deletes events (and category reports) older than ``RETENTION_DAYS`` in batches.

    Retention is about what the site collects: it counts back from now, and imported history
    (events whose ``source`` is ``IMPORT_SOURCE``, written by an import, kept for training and
    evaluation as the shop's own records) is left alone unless ``RETENTION_INCLUDES_IMPORTS``.
    ``RETENTION_DAYS`` ``None`` turns retention off. Each batch is its own transaction.
    Returns how many events were deleted.
    """
    days = visrec_settings.RETENTION_DAYS if days is None else days
    if days is None:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    totals = {}
    for model in (InteractionEvent, CategoryReport):
        totals[model] = 0
        expired = model.objects.filter(occurred_at__lt=cutoff)
        if model is InteractionEvent and not visrec_settings.RETENTION_INCLUDES_IMPORTS:
            expired = expired.exclude(source=IMPORT_SOURCE)
        while True:
            with transaction.atomic():
                ids = list(expired.order_by("pk").values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                totals[model] += model.objects.filter(pk__in=ids).delete()[0]
    return totals[InteractionEvent]


def export_subject(subject: str | list[str]) -> dict:
    """Every stored event and category report of one subject (one or several pseudonyms), JSON-ready."""
    subjects = [subject] if isinstance(subject, str) else list(subject)
    events = (InteractionEvent.objects.filter(subject_key__in=subjects).select_related("experiment")
              .order_by("occurred_at", "pk"))
    reports = CategoryReport.objects.filter(subject_key__in=subjects).order_by("occurred_at", "pk")
    return {
        "subject": subjects[0],
        "pseudonyms": subjects,
        "events": [
            {"type": e.event_type, "product": e.product_id, "timestamp": e.occurred_at.isoformat(),
             "source": e.source, "position": e.position,
             **({"experiment": e.experiment.name, "arm": e.arm} if e.experiment_id else {})}
            for e in events
        ],
        "category_reports": [
            {"category": r.category, "timestamp": r.occurred_at.isoformat(), "randomised": True}
            for r in reports
        ],
    }


def erase_subject(subject: str | list[str]) -> dict[str, int]:
    """Deletes one subject's events, stored shopper vectors and category reports at once."""
    subjects = [subject] if isinstance(subject, str) else list(subject)
    with transaction.atomic():
        events = InteractionEvent.objects.filter(subject_key__in=subjects).delete()[0]
        vectors = ShopperVector.objects.filter(subject_key__in=subjects).delete()[0]
        reports = CategoryReport.objects.filter(subject_key__in=subjects).delete()[0]
    _forget_now_and_on_commit(subjects)  # their cached "for you" model lists
    return {"events": events, "shopper_vectors": vectors, "category_reports": reports}


def _forget_now_and_on_commit(subjects: list[str]) -> None:
    """Drops the subjects' cached "for you" lists now and again once the transaction commits
    (a request served between the two, from rows not yet deleted, may have cached them again)."""
    forget_shoppers(subjects)
    transaction.on_commit(lambda: forget_shoppers(subjects))


def user_subject(user) -> str:
    """The user's pseudonym under the current secret (what new events are stored under)."""
    return subject_key("user", user.pk)


def user_subjects(user) -> list[str]:
    """The user's pseudonyms under the current secret and every fallback secret."""
    return subject_keys("user", user.pk)


def erase_user(user) -> dict[str, int]:
    """For the host's account-deletion flow: erase everything visrec holds about a user,
    including what visrec wrote into the user's sessions."""
    erased = erase_subject(user_subjects(user))
    erased["sessions"] = forget_user_sessions(user)
    return erased


def forget_user_sessions(user) -> int:
    """Removes visrec's keys from the user's stored sessions (database-backed session engines:
    ``db``, ``cached_db``, ``visrec.sessions``; the cached copy is rewritten by the save).
    Returns how many changed."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore as DBStore
    from django.contrib.sessions.models import Session

    from .tracking import SESSION_KEYS

    engine = import_module(settings.SESSION_ENGINE)
    if not issubclass(engine.SessionStore, DBStore):
        return 0  # signed-cookie or cache-only sessions: nothing visrec can reach server side
    changed = 0
    for key in Session.objects.filter(expire_date__gt=timezone.now()).values_list("session_key", flat=True).iterator():
        store = engine.SessionStore(session_key=key)
        data = store.load()
        if str(data.get("_auth_user_id")) != str(user.pk) or not any(k in data for k in SESSION_KEYS):
            continue
        for name in SESSION_KEYS:
            store.pop(name, None)
        store.save()
        changed += 1
    return changed


def export_user(user) -> dict:
    """For the host's data-export flow: the user's events."""
    return export_subject(user_subjects(user))


def rekey_user_pseudonyms(*, chunk_size: int = 1000, progress=None) -> dict[str, int]:
    """Moves every user's data from their fallback-secret pseudonyms to the current one.

    Events, shopper vectors and category reports are re-keyed; a shopper vector whose
    model version already has one under the current pseudonym is dropped instead. Only
    the host's user accounts can be re-keyed: an anonymous session's key is not kept, so
    its data stays under the old pseudonym, unlinkable once the old secret is dropped,
    until retention deletes it.

    Args:
        chunk_size: users per transaction.
        progress: optional callable(n) told how many users each chunk covered (a tqdm's ``update``).

    Returns:
        Rows re-keyed per table (``events``, ``shopper_vectors``, ``category_reports``).
    """
    from django.contrib.auth import get_user_model

    counts = {"events": 0, "shopper_vectors": 0, "category_reports": 0}
    users = get_user_model()._default_manager.order_by("pk").values_list("pk", flat=True)
    pks = list(users.iterator(chunk_size=chunk_size))
    for offset in range(0, len(pks), chunk_size):
        chunk = pks[offset:offset + chunk_size]
        moves: dict[str, str] = {}
        for pk in chunk:
            current, *old = subject_keys("user", pk)
            moves.update((key, current) for key in old)
        with transaction.atomic():
            for old_key, new_key in _stored_moves(moves).items():
                counts["events"] += InteractionEvent.objects.filter(subject_key=old_key).update(subject_key=new_key)
                counts["category_reports"] += CategoryReport.objects.filter(subject_key=old_key).update(
                    subject_key=new_key)
                taken = ShopperVector.objects.filter(subject_key=new_key).values_list("model_version", flat=True)
                ShopperVector.objects.filter(subject_key=old_key, model_version__in=list(taken)).delete()
                counts["shopper_vectors"] += ShopperVector.objects.filter(subject_key=old_key).update(
                    subject_key=new_key)
                _forget_now_and_on_commit([old_key, new_key])
        if progress is not None:
            progress(len(chunk))
    return counts


def _stored_moves(moves: dict[str, str]) -> dict[str, str]:
    """The entries of ``moves`` whose old pseudonym has anything stored."""
    if not moves:
        return {}
    stored: set[str] = set()
    for model in SUBJECT_MODELS:
        stored.update(model.objects.filter(subject_key__in=list(moves)).values_list("subject_key", flat=True).distinct())
    return {old: new for old, new in moves.items() if old in stored}
