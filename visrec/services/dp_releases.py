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
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from ..conf import visrec_settings
from ..models import InteractionEvent, PrivacyRelease

#: Two-sided 95% bound of discrete Laplace noise with scale b is about b·ln(1/0.05).
CONFIDENCE = 0.95


class BudgetExceeded(RuntimeError):
    """The release would spend more epsilon than the period has left."""


@dataclass
class NoisyCounts:
    release: PrivacyRelease
    counts: dict[int, int]   # product id -> noisy count (clamped at 0)

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
    """Per product, distinct shoppers in the window, each counting for ≤ ``per_shopper`` products."""
    table = InteractionEvent._meta.db_table
    type_filter = "AND event_type = %s" if event_type else ""
    params: list = [start, end] + ([event_type] if event_type else []) + [per_shopper]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT product_id, count(*) FROM (
                SELECT subject_key, product_id,
                       row_number() OVER (PARTITION BY subject_key ORDER BY max(occurred_at) DESC, product_id) AS rank
                FROM {table}
                WHERE occurred_at >= %s AND occurred_at < %s AND product_id IS NOT NULL {type_filter}
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
    import opendp.prelude as dp

    dp.enable_features("contrib")
    measurement = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)
    return list(measurement([int(v) for v in values]))


def release_counts(kind: str, *, epsilon: float, window_days: int = 7, event_type: str | None = None,
                   product_ids: list[int] | None = None, now: dt.datetime | None = None) -> NoisyCounts:
    """Makes one DP release of per-product distinct-shopper counts and records it in the ledger.

    Args:
        kind: the ledger label (``trending``, ``admin-counts``, ``export``...).
        epsilon: the privacy loss of this release.
        product_ids: the products released (default: every product with an event in the
            window — fixed by the catalogue, not by who the shoppers are, when given).

    Raises:
        BudgetExceeded: the period has less than ``epsilon`` left.
    """
    if epsilon <= 0:
        raise ValueError("epsilon must be positive")
    now = now or timezone.now()
    start = now - dt.timedelta(days=window_days)
    per_shopper = visrec_settings.RELEASE_MAX_PRODUCTS_PER_SHOPPER
    scale = per_shopper / epsilon
    with transaction.atomic():
        period = period_start(now.date())
        # Serialise spending: concurrent releases cannot both pass the check.
        list(PrivacyRelease.objects.select_for_update().filter(period_start=period))
        left = visrec_settings.PRIVACY_BUDGET_EPSILON - spent(period)
        if epsilon > left + 1e-12:
            raise BudgetExceeded(
                f"releasing {kind} needs epsilon {epsilon:g} but only {max(left, 0):g} of "
                f"{visrec_settings.PRIVACY_BUDGET_EPSILON:g} is left in the period starting {period}; "
                f"it renews on {period + dt.timedelta(days=visrec_settings.PRIVACY_PERIOD_DAYS)}"
            )
        exact = exact_distinct_counts(start, now, event_type, per_shopper)
        if product_ids is None:
            from ..conf import get_product_model

            product_ids = list(get_product_model()._default_manager.order_by("pk").values_list("pk", flat=True))
        noisy = laplace_vector([exact.get(p, 0) for p in product_ids], scale)
        counts = {int(p): max(0, int(v)) for p, v in zip(product_ids, noisy)}
        release = PrivacyRelease.objects.create(
            kind=kind, period_start=period, epsilon=epsilon, delta=0.0, mechanism="OpenDP discrete Laplace",
            noise_scale=scale, sensitivity=per_shopper, window_start=start, window_end=now,
            payload={"event_type": event_type, "counts": {str(k): v for k, v in counts.items() if v > 0}},
        )
    return NoisyCounts(release, counts)


def latest_release(kind: str, max_age: dt.timedelta) -> NoisyCounts | None:
    """The newest release of a kind younger than ``max_age`` (reusing it costs no budget)."""
    release = PrivacyRelease.objects.filter(kind=kind, created_at__gte=timezone.now() - max_age).first()
    if release is None:
        return None
    return NoisyCounts(release, {int(k): int(v) for k, v in release.payload.get("counts", {}).items()})


def dp_trending(k: int, candidates: set[int] | None = None) -> list[tuple[int, float]]:
    """The trending list shown to everyone: today's DP release, made once a day.

    Returns ``[(product_id, noisy distinct shoppers)]``; [] when the budget is spent.
    """
    noisy = latest_release("trending", dt.timedelta(days=1))
    if noisy is None:
        try:
            noisy = release_counts("trending", epsilon=visrec_settings.TRENDING_EPSILON)
        except BudgetExceeded:
            return []
    ranked = sorted(((p, c) for p, c in noisy.counts.items() if c > 0 and (candidates is None or p in candidates)),
                    key=lambda t: (-t[1], t[0]))
    return [(p, float(c)) for p, c in ranked[:k]]
