"""Differentially private releases from the event log, under a privacy budget.

Everything shown to an audience wider than the model (the trending list anonymous
shoppers see, per-product counts in the admin, CSV exports) goes through here.

* **Privacy unit**: one shopper (one pseudonym) over the release window.
* **Statistic**: per product, the number of distinct shoppers who interacted with it
  (optionally of one event type). Each shopper counts for at most
  ``RELEASE_MAX_PRODUCTS_PER_SHOPPER`` products (their most recent ones), so adding or
  removing one shopper changes the histogram by at most that much in L1.
* **Mechanism**: OpenDP's discrete Laplace on the integer vector (``make_laplace`` over
  ``l1_distance``), scale = sensitivity / epsilon: pure epsilon-DP, delta = 0.
* **Budget**: every release is written to :class:`~visrec.models.PrivacyRelease` with its
  epsilon; one that would take the period's total over ``PRIVACY_BUDGET_EPSILON`` is
  refused with :class:`BudgetExceeded`. Releases are reused (no new spending) while valid.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from ...conf import visrec_settings
from ...models import InteractionEvent, PrivacyRelease

#: Key of the PostgreSQL advisory lock that serialises spending from the budget.
LEDGER_LOCK = 0x76697372  # "visr"
#: Two-sided 95% bound of discrete Laplace noise with scale b is about b·ln(1/0.05).
CONFIDENCE = 0.95


class BudgetExceeded(RuntimeError):
    """The release would spend more epsilon than the period has left."""


@dataclass
class NoisyCounts:
    release: PrivacyRelease
    counts: dict[int, int]   # product id -> noisy count, positive ones only (absent = 0)

    @property
    def margin(self) -> float:
        """Half-width of a 95% interval around each noisy count."""
        return noise_margin(self.release.noise_scale)


def noise_margin(scale: float, confidence: float = CONFIDENCE) -> float:
    """|noise| stays below this with probability ``confidence`` (Laplace tail bound)."""
    return scale * math.log(1.0 / (1.0 - confidence))


def period_start(day: dt.date | None = None) -> dt.date:
    """First day of the budget period containing ``day`` (periods of PRIVACY_PERIOD_DAYS from 1970)."""
    day = day or timezone.now().date()
    days = visrec_settings.PRIVACY_PERIOD_DAYS
    return dt.date.fromordinal(day.toordinal() - (day.toordinal() - dt.date(1970, 1, 1).toordinal()) % days)


def spent(period: dt.date | None = None) -> float:
    """Epsilon spent in the period so far."""
    period = period or period_start()
    return float(PrivacyRelease.objects.filter(period_start=period).aggregate(total=Sum("epsilon"))["total"] or 0.0)


def remaining(period: dt.date | None = None) -> float:
    return max(0.0, visrec_settings.PRIVACY_BUDGET_EPSILON - spent(period))


def exact_distinct_counts(start: dt.datetime, end: dt.datetime, event_type: str | None, per_shopper: int
                          ) -> dict[int, int]:
    """Per product, distinct shoppers in the window, each counting for ≤ ``per_shopper`` products;
    only events of established shoppers (``public``, :func:`~visrec.services.privacy.tracking.is_established`)."""
    table = InteractionEvent._meta.db_table
    # Impressions say what visrec showed, not what shoppers chose: never counted as interest.
    type_filter = "AND event_type = %s" if event_type else "AND event_type <> 'impression'"
    params: list = [start, end] + ([event_type] if event_type else []) + [per_shopper]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT product_id, count(*) FROM (
                SELECT subject_key, product_id,
                       row_number() OVER (PARTITION BY subject_key ORDER BY max(occurred_at) DESC, product_id) AS rank
                FROM {table}
                WHERE occurred_at >= %s AND occurred_at < %s AND product_id IS NOT NULL AND public {type_filter}
                GROUP BY subject_key, product_id
            ) bounded
            WHERE rank <= %s
            GROUP BY product_id
            """,
            params,
        )
        return dict(cursor.fetchall())


def laplace_vector(values: list[int], scale: float) -> list[int]:
    """Discrete Laplace noise added to an integer vector by OpenDP."""
    return list(_laplace(float(scale))([int(v) for v in values]))


def _laplace(scale: float):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)


def _check_budget(kind: str, epsilon: float, period: dt.date) -> None:
    left = visrec_settings.PRIVACY_BUDGET_EPSILON - spent(period)
    if epsilon > left + 1e-12:
        raise BudgetExceeded(
            f"releasing {kind} needs epsilon {epsilon:g} but only {max(left, 0):g} of "
            f"{visrec_settings.PRIVACY_BUDGET_EPSILON:g} is left in the period starting {period}; "
            f"it renews on {period + dt.timedelta(days=visrec_settings.PRIVACY_PERIOD_DAYS)}"
        )


def release_vectors(kind: str, *, epsilon: float, sensitivity: int, start: dt.datetime, end: dt.datetime,
                    exact: Callable[[], dict[str, dict]], payload: dict | None = None,
                    reuse_within: dt.timedelta | None = None) -> PrivacyRelease:
    """Makes one DP release of several integer histograms and records it in the ledger.

    Args:
        kind: the ledger label (``trending``, ``admin-statistics``...).
        epsilon: the privacy loss of the whole release.
        sensitivity: the most the histograms together (L1) change when one shopper is
            added or removed: the noise scale is ``sensitivity / epsilon``, checked
            against OpenDP's privacy map.
        exact: called once the budget is granted; returns ``{name: {key: exact count}}``
            whose keys must not depend on the shoppers (catalogue products, categories).
        payload: extra JSON stored with the release.
        reuse_within: return the newest release of ``kind`` younger than this instead of
            making one (checked under the ledger lock, so concurrent callers spend once).

    Returns:
        The ledger row; ``payload["vectors"][name]`` holds each histogram's noisy counts,
        clamped at 0 and only the positive ones kept (absent keys are 0).

    Raises:
        BudgetExceeded: the period has less than ``epsilon`` left.
    """
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    scale = sensitivity / epsilon
    measurement = _laplace(scale)
    if measurement.map(sensitivity) > epsilon * (1 + 1e-9):
        raise ValueError(f"OpenDP gives epsilon {measurement.map(sensitivity)} for this release, not {epsilon}")
    with transaction.atomic():
        period = period_start(end.date())
        # Serialise spending: concurrent releases cannot both pass the check.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK])
        if reuse_within is not None:
            recent = PrivacyRelease.objects.filter(kind=kind, created_at__gte=timezone.now() - reuse_within).first()
            if recent is not None:
                return recent
        _check_budget(kind, epsilon, period)
        histograms = exact()
        flat = [(name, key, int(value)) for name, counts in histograms.items() for key, value in counts.items()]
        noisy = measurement([value for _, _, value in flat]) if flat else []
        vectors: dict[str, dict] = {name: {} for name in histograms}
        for (name, key, _), value in zip(flat, noisy):
            if value > 0:
                vectors[name][str(key)] = int(value)
        return PrivacyRelease.objects.create(
            kind=kind, period_start=period, epsilon=epsilon, delta=0.0, mechanism="OpenDP discrete Laplace",
            noise_scale=scale, sensitivity=sensitivity, window_start=start, window_end=end,
            payload={**(payload or {}), "vectors": vectors},
        )


def release_counts(kind: str, *, epsilon: float, window_days: int = 7, event_type: str | None = None,
                   product_ids: list[int] | None = None, now: dt.datetime | None = None,
                   reuse_within: dt.timedelta | None = None) -> NoisyCounts:
    """Makes one DP release of per-product distinct-shopper counts and records it in the ledger.

    Args:
        kind: the ledger label (``trending``, ``export``...).
        epsilon: the privacy loss of this release.
        product_ids: the products released (default: every product of the catalogue —
            fixed by the catalogue, not by who the shoppers are).

    Raises:
        BudgetExceeded: the period has less than ``epsilon`` left.
    """
    now = now or timezone.now()
    start = now - dt.timedelta(days=window_days)
    per_shopper = visrec_settings.RELEASE_MAX_PRODUCTS_PER_SHOPPER

    def exact() -> dict[str, dict]:
        counts = exact_distinct_counts(start, now, event_type, per_shopper)
        ids = catalogue_product_ids() if product_ids is None else product_ids
        return {"counts": {int(p): counts.get(p, 0) for p in ids}}

    release = release_vectors(kind, epsilon=epsilon, sensitivity=per_shopper, start=start, end=now, exact=exact,
                              payload={"event_type": event_type}, reuse_within=reuse_within)
    return _noisy_counts(release)


def catalogue_product_ids() -> list[int]:
    """Every product of the host's catalogue (the fixed keys of per-product releases)."""
    from ...conf import get_product_model

    return list(get_product_model()._default_manager.order_by("pk").values_list("pk", flat=True))


def _noisy_counts(release: PrivacyRelease) -> NoisyCounts:
    counts = release.payload.get("vectors", {}).get("counts", release.payload.get("counts", {}))
    return NoisyCounts(release, {int(k): int(v) for k, v in counts.items()})


def latest_release(kind: str, max_age: dt.timedelta) -> NoisyCounts | None:
    """The newest release of a kind younger than ``max_age`` (reusing it costs no budget)."""
    release = PrivacyRelease.objects.filter(kind=kind, created_at__gte=timezone.now() - max_age).first()
    if release is None:
        return None
    return _noisy_counts(release)


def dp_trending(k: int | None = None) -> list[tuple[int, float]]:
    """The trending list shown to everyone: today's DP release, made once a day.

    Returns ``[(product_id, noisy distinct shoppers)]``, best first, the first ``k`` (all
    with ``None``); [] when the budget is spent.
    """
    noisy = latest_release("trending", dt.timedelta(days=1))
    if noisy is None:
        try:
            noisy = release_counts("trending", epsilon=visrec_settings.TRENDING_EPSILON,
                                   reuse_within=dt.timedelta(days=1))
        except BudgetExceeded:
            return []
    ranked = sorted(((p, c) for p, c in noisy.counts.items() if c > 0), key=lambda t: (-t[1], t[0]))
    return [(p, float(c)) for p, c in ranked[:k]]
