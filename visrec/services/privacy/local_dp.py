"""Local differential privacy of category interest: randomized response before storing, debiasing after.

Under ``VISREC["LOCAL_DP"]`` each stored event may also yield a **category report**: the
category of the product, randomised by OpenDP's k-ary randomized response over the
host's categories (``make_randomized_response``) *before* it is written. With k
categories and ``LOCAL_DP_EPSILON`` = ε, the report is the true category with probability

    p = e^ε / (e^ε + k - 1)

and each other category with probability q = (1 - p) / (k - 1), so p / q = e^ε: whatever
the true category, every report is almost as likely, and one report is ε-differentially
private on its own (local DP: no trust in whoever stores it). At most
``LOCAL_DP_REPORTS_PER_DAY`` reports per shopper and UTC day are kept, so a shopper's
reports of one day cost at most that many times ε.

Aggregation inverts the channel: for n reports of which n_c name category c,

    share_c = (n_c / n - q) / (p - q),   Var = λ_c (1 - λ_c) / (n (p - q)²),  λ_c = n_c / n

which is unbiased; reports made under different domains (categories or ε changed) are
debiased separately and combined weighted by their counts. The shares are computed from
reports that are already private, so showing them spends no central budget.

The randomness is OpenDP's (the operating system's CSPRNG); it cannot be seeded.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Count

from ...conf import visrec_settings
from ...models import CategoryReport, EventType, InteractionEvent, RandomizedResponseDomain
from ..catalogue.categories import catalogue_categories, product_category_keys
from ..db.cache_guard import cache

#: z of a two-sided 95% normal interval.
Z95 = 1.959964
DOMAIN_CACHE_SECONDS = 600


def keep_probability(epsilon: float, k: int) -> float:
    """Probability that k-ary randomized response with privacy loss ``epsilon`` reports the truth."""
    if k < 2:
        raise ValueError("randomized response needs at least two categories")
    return math.exp(epsilon) / (math.exp(epsilon) + k - 1)


@functools.lru_cache(maxsize=8)
def _randomizer(categories: tuple[str, ...], prob: float):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.m.make_randomized_response(list(categories), prob, T=str)


def randomized_response_epsilon(categories: Sequence[str], prob: float) -> float:
    """The epsilon OpenDP's privacy map gives for one report (checks our formula)."""
    return float(_randomizer(tuple(categories), prob).map(1))


def randomize_category(true_category: str, categories: Sequence[str], prob: float) -> str:
    """One randomized-response report of ``true_category`` over ``categories`` (OpenDP)."""
    if true_category not in categories:
        raise ValueError(f"category {true_category!r} is not in the domain")
    return _randomizer(tuple(categories), prob)(true_category)


def current_domain() -> RandomizedResponseDomain | None:
    """The domain reports are drawn from now (``None`` with fewer than two categories)."""
    epsilon = float(visrec_settings.LOCAL_DP_EPSILON)
    cache_key = f"visrec:ldp-domain:{epsilon!r}"
    cached = cache.get(cache_key)
    if cached is not None:
        return RandomizedResponseDomain(pk=cached[0], categories=cached[1], epsilon=epsilon, keep_probability=cached[2])
    categories = catalogue_categories()
    if len(categories) < 2:
        return None
    digest = hashlib.sha256(json.dumps([categories, epsilon]).encode()).hexdigest()
    domain, _ = RandomizedResponseDomain.objects.get_or_create(
        digest=digest,
        defaults={"categories": categories, "epsilon": epsilon,
                  "keep_probability": keep_probability(epsilon, len(categories))},
    )
    cache.set(cache_key, (domain.pk, domain.categories, domain.keep_probability), DOMAIN_CACHE_SECONDS)
    return domain


def _utc_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.timezone.utc).date()


def record_category_reports(subject: str, events: Sequence[InteractionEvent]) -> int:
    """Stores randomised category reports of the first ``events`` of each UTC day, within the daily cap.

    Called by :func:`visrec.services.privacy.tracking.record_events` under ``LOCAL_DP`` with the
    events it stored; the true category never reaches the database.
    """
    events = [e for e in events if e.product_id is not None and e.event_type != EventType.IMPRESSION]
    if not events:
        return 0
    domain = current_domain()
    if domain is None:
        return 0
    categories = product_category_keys(e.product_id for e in events)
    days = {_utc_day(e.occurred_at) for e in events}
    stored = CategoryReport.objects.filter(
        subject_key=subject,
        occurred_at__gte=dt.datetime.combine(min(days), dt.time.min, tzinfo=dt.timezone.utc),
        occurred_at__lt=dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time.min, tzinfo=dt.timezone.utc))
    used = Counter(_utc_day(t) for t in stored.values_list("occurred_at", flat=True))
    reports = []
    for event in events:
        day = _utc_day(event.occurred_at)
        true = categories.get(event.product_id)
        if used[day] >= visrec_settings.LOCAL_DP_REPORTS_PER_DAY or true is None or true not in domain.categories:
            continue  # over the day's cap, no category, or one newer than the cached domain
        used[day] += 1
        reports.append(CategoryReport(subject_key=subject, domain_id=domain.pk, occurred_at=event.occurred_at,
                                      category=randomize_category(true, domain.categories, domain.keep_probability)))
    CategoryReport.objects.bulk_create(reports)
    return len(reports)


@dataclass
class DebiasedShares:
    """Estimated share of each category among the true categories of the reports."""

    shares: dict[str, float]    # unbiased, may fall slightly outside [0, 1]
    margins: dict[str, float]   # half-width of a 95% interval
    reports: int


def debias(counts: dict[str, int], categories: Sequence[str], prob: float) -> DebiasedShares:
    """Inverts randomized response: report counts over ``categories`` -> true shares."""
    n = sum(counts.get(c, 0) for c in categories)
    k = len(categories)
    if n == 0:
        return DebiasedShares({c: 0.0 for c in categories}, {c: math.nan for c in categories}, 0)
    q = (1.0 - prob) / (k - 1)
    shares, margins = {}, {}
    for c in categories:
        observed = counts.get(c, 0) / n
        shares[c] = (observed - q) / (prob - q)
        margins[c] = Z95 * math.sqrt(observed * (1 - observed) / n) / (prob - q)
    return DebiasedShares(shares, margins, n)


def combine(parts: Sequence[DebiasedShares]) -> DebiasedShares:
    """Shares of several groups of reports (e.g. domains), weighted by their report counts."""
    total = sum(p.reports for p in parts)
    keys = sorted({c for p in parts for c in p.shares})
    if total == 0:
        return DebiasedShares({c: 0.0 for c in keys}, {c: math.nan for c in keys}, 0)
    shares, variances = defaultdict(float), defaultdict(float)
    for part in parts:
        if not part.reports:
            continue
        weight = part.reports / total
        for c in keys:  # a category outside a group's domain did not exist then: share 0
            shares[c] += weight * part.shares.get(c, 0.0)
            variances[c] += (weight * part.margins.get(c, 0.0) / Z95) ** 2
    return DebiasedShares(dict(shares), {c: Z95 * math.sqrt(v) for c, v in variances.items()}, total)


def category_shares(since: dt.datetime | None = None, until: dt.datetime | None = None) -> DebiasedShares:
    """Debiased category shares of the reports made between ``since`` and ``until``."""
    reports = CategoryReport.objects.all()
    if since is not None:
        reports = reports.filter(occurred_at__gte=since)
    if until is not None:
        reports = reports.filter(occurred_at__lt=until)
    grouped: dict[int, Counter] = defaultdict(Counter)
    for row in reports.values("domain_id", "category").annotate(n=Count("pk")):
        grouped[row["domain_id"]][row["category"]] += row["n"]
    domains = RandomizedResponseDomain.objects.in_bulk(list(grouped))
    return combine([debias(grouped[pk], d.categories, d.keep_probability) for pk, d in domains.items()])
