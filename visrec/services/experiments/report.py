"""An experiment's report per arm, released through the privacy ledger like every statistic.

The unit is the shopper, the unit the split randomises. Per arm, four counts of shoppers:
``exposed`` (shown the "for you" widget at least once), ``clicked`` (clicked a product it
showed them), ``carted`` and ``bought`` (put in the basket or bought a product after the
widget showed it to them: attributed to the arm that showed it). One shopper is in one arm
and adds at most 1 to each of the four counts, so the release's L1 sensitivity is 4 and its
noise discrete Laplace of scale ``4 / EXPERIMENT_EPSILON`` (OpenDP,
:func:`visrec.services.privacy.dp_releases.release_vectors`).

Rates are noisy count / noisy exposed. Their 95% intervals add the sampling variance of a
proportion and the noise's (delta method), so a small experiment says "no clear
difference" rather than a winner; the difference B - A gets the same treatment.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from ...conf import visrec_settings
from ...models import Experiment, InteractionEvent, PrivacyRelease
from ..privacy.dp_releases import release_vectors

#: The widget the report attributes to (``data-visrec-widget`` of "for you" rows).
WIDGET = "foryou"
#: Shopper counts per arm; each shopper adds at most 1 to each.
COUNTS = ("exposed", "clicked", "carted", "bought")
SENSITIVITY = len(COUNTS)
Z95 = 1.959963984540054


def release_kind(experiment: Experiment) -> str:
    return f"experiment-{experiment.pk}"


def exact_counts(experiment: Experiment) -> dict[str, dict[str, int]]:
    """``{count: {arm: shoppers}}`` from the experiment's events (exact: only ever noised)."""
    table = InteractionEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH shown AS (
                SELECT subject_key, product_id, min(occurred_at) AS at FROM {table}
                WHERE experiment_id = %(e)s AND event_type = 'impression' AND source = %(w)s
                  AND product_id IS NOT NULL
                GROUP BY subject_key, product_id
            ), shoppers AS (  -- one arm per shopper, even if a login merged two sessions' events
                SELECT s.subject_key, min(e.arm) AS arm FROM (SELECT DISTINCT subject_key FROM shown) s
                JOIN {table} e ON e.subject_key = s.subject_key AND e.experiment_id = %(e)s
                GROUP BY s.subject_key
            ), hits AS (
                SELECT DISTINCT e.subject_key, e.event_type FROM {table} e
                JOIN shown s ON s.subject_key = e.subject_key AND s.product_id = e.product_id
                WHERE e.experiment_id = %(e)s AND e.occurred_at >= s.at
                  AND (e.event_type IN ('cart', 'purchase') OR (e.event_type = 'click' AND e.source = %(w)s))
            )
            SELECT x.arm, count(*),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM hits h WHERE h.subject_key = x.subject_key
                                                  AND h.event_type = 'click')),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM hits h WHERE h.subject_key = x.subject_key
                                                  AND h.event_type = 'cart')),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM hits h WHERE h.subject_key = x.subject_key
                                                  AND h.event_type = 'purchase'))
            FROM shoppers x GROUP BY x.arm
            """,
            {"e": experiment.pk, "w": WIDGET},
        )
        rows = cursor.fetchall()
    counts: dict[str, dict[str, int]] = {name: {"a": 0, "b": 0} for name in COUNTS}
    for arm, *values in rows:
        for name, value in zip(COUNTS, values):
            counts[name][arm] = int(value)
    return counts


@dataclass
class Rate:
    """A noisy rate with its 95% interval (sampling and noise), as shares in [0, 1]."""

    value: float | None
    low: float | None
    high: float | None

    def __str__(self) -> str:
        if self.value is None:
            return "—"
        return f"{self.value:.1%} ({self.low:.1%} to {self.high:.1%})"


@dataclass
class ArmReport:
    arm: str
    label: str
    counts: dict[str, int]  # noisy
    rates: dict[str, Rate] = field(default_factory=dict)  # click-through, cart, conversion


@dataclass
class Comparison:
    """B - A of one rate, its 95% interval, and the verdict in words."""

    metric: str
    difference: float | None
    low: float | None
    high: float | None
    verdict: str


@dataclass
class Report:
    experiment: Experiment
    release: PrivacyRelease
    arms: list[ArmReport]
    comparisons: list[Comparison]
    noise_scale: float


RATES = {"click-through": "clicked", "add to cart": "carted", "conversion": "bought"}


def noise_variance(scale: float) -> float:
    """Variance of discrete Laplace noise of ``scale`` (OpenDP's integer Laplace)."""
    if scale <= 0:
        return 0.0
    q = math.exp(-1.0 / scale)
    return 2 * q / (1 - q) ** 2


def rate(hits: int, exposed: int, scale: float) -> tuple[float | None, float]:
    """Noisy ``hits / exposed`` and its variance (binomial sampling + noise on both counts)."""
    if exposed <= 0:
        return None, math.inf
    p = min(max(hits / exposed, 0.0), 1.0)
    noise = noise_variance(scale)
    return p, p * (1 - p) / exposed + noise * (1 + p * p) / exposed ** 2


def build_report(experiment: Experiment, release: PrivacyRelease) -> Report:
    """The report of a release (post-processing only: no budget, no event read)."""
    scale = release.noise_scale
    vectors = release.payload.get("vectors", {})
    labels = release.payload.get("labels", {"a": "A", "b": "B"})
    arms, stats = [], {}
    for arm in ("a", "b"):
        counts = {name: int(vectors.get(name, {}).get(arm, 0)) for name in COUNTS}
        report = ArmReport(arm, labels.get(arm, arm.upper()), counts)
        for metric, name in RATES.items():
            p, var = rate(counts[name], counts["exposed"], scale)
            stats[(arm, metric)] = (p, var)
            half = Z95 * math.sqrt(var) if p is not None else None
            report.rates[metric] = Rate(p, max(0.0, p - half) if p is not None else None,
                                        min(1.0, p + half) if p is not None else None)
        arms.append(report)
    comparisons = []
    for metric in RATES:
        (pa, va), (pb, vb) = stats[("a", metric)], stats[("b", metric)]
        if pa is None or pb is None:
            comparisons.append(Comparison(metric, None, None, None, "no shoppers exposed in one arm yet"))
            continue
        diff, half = pb - pa, Z95 * math.sqrt(va + vb)
        low, high = diff - half, diff + half
        if low > 0:
            verdict = f"B is better: {metric} {diff:+.1%} (95% interval {low:+.1%} to {high:+.1%})"
        elif high < 0:
            verdict = f"A is better: {metric} {-diff:+.1%} for A (95% interval {-high:+.1%} to {-low:+.1%})"
        else:
            verdict = (f"no clear difference: {metric} {diff:+.1%} for B, the 95% interval "
                       f"({low:+.1%} to {high:+.1%}) includes 0")
        comparisons.append(Comparison(metric, diff, low, high, verdict))
    return Report(experiment, release, arms, comparisons, scale)


def arm_labels(experiment: Experiment) -> dict[str, str]:
    b = "the shop's own list" if experiment.b_is_shop_list else experiment.version_b.name
    return {"a": f"A: {experiment.version_a.name}", "b": f"B: {b}"}


def release_report(experiment: Experiment, *, epsilon: float | None = None,
                   now: dt.datetime | None = None) -> Report:
    """Releases the experiment's counts (spends ``EXPERIMENT_EPSILON``) and reports them.

    A release younger than ``EXPERIMENT_REPORT_REUSE_MINUTES`` is shown again instead (no
    budget spent); so is the last release of an ended experiment made after it ended.

    Raises:
        BudgetExceeded: the period has too little budget left.
    """
    now = now or timezone.now()
    kind = release_kind(experiment)
    latest = PrivacyRelease.objects.filter(kind=kind).first()
    if latest is not None and experiment.ended_at is not None and latest.window_end >= experiment.ended_at:
        return build_report(experiment, latest)  # final figures: nothing new can come
    end = min(now, experiment.ended_at) if experiment.ended_at else now
    release = release_vectors(
        kind, epsilon=epsilon or visrec_settings.EXPERIMENT_EPSILON, sensitivity=SENSITIVITY,
        start=experiment.started_at, end=end, exact=lambda: exact_counts(experiment),
        payload={"experiment": experiment.name, "labels": arm_labels(experiment)},
        reuse_within=dt.timedelta(minutes=visrec_settings.EXPERIMENT_REPORT_REUSE_MINUTES),
    )
    return build_report(experiment, release)


def latest_report(experiment: Experiment) -> Report | None:
    """The newest release's report, or ``None`` (reading costs no budget)."""
    release = PrivacyRelease.objects.filter(kind=release_kind(experiment)).first()
    return build_report(experiment, release) if release is not None else None
