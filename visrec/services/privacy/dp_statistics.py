"""Shop statistics for the admin and CSV export, released only through differential privacy.

One release (ledger kind ``admin-statistics``) holds, for the last
``STATISTICS_WINDOW_DAYS``:

* per product of the catalogue, the number of distinct shoppers who viewed it, added it
  to the cart and bought it — each shopper counting for at most
  ``RELEASE_MAX_PRODUCTS_PER_SHOPPER`` (L) products per event type;
* per category of the catalogue, the number of distinct shoppers interested in it (each
  counting for at most L categories), from which the shares are computed — unless local
  DP is on, when the shares come from the randomised category reports instead
  (:mod:`visrec.services.privacy.local_dp`, no central budget needed) and the release leaves
  the categories out.

Adding or removing one shopper changes these histograms by at most 3L (+ L for the
categories) in L1, so OpenDP's discrete Laplace with scale 3L/ε (or 4L/ε) makes the
release ε-DP with ε = ``STATISTICS_EPSILON``. The release is made at most once per
window, on the first request after the previous one expired, and every page view and
CSV export until then reuses it: showing a release again costs nothing.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from ...conf import get_product_model, visrec_settings
from ...models import EventType, InteractionEvent, PrivacyRelease
from ..catalogue.categories import catalogue_categories, category_labels
from ..catalogue.products import primary_category_sql
from . import local_dp
from .dp_releases import BudgetExceeded, catalogue_product_ids, exact_distinct_counts, noise_margin, release_vectors

KIND = "admin-statistics"
#: Released event types and their names in the CSV.
EVENT_COLUMNS = {EventType.VIEW: "distinct_viewers", EventType.CART: "distinct_carters",
                 EventType.PURCHASE: "distinct_buyers"}
CATEGORY_VECTOR = "category"


def exact_category_counts(start: dt.datetime, end: dt.datetime, per_shopper: int) -> dict[str, int]:
    """Per category key, distinct shoppers with an event on its products (≤ ``per_shopper`` categories each)."""
    category = primary_category_sql("p")
    product_model = get_product_model()
    products, pk = product_model._meta.db_table, product_model._meta.pk.column
    events = InteractionEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT category, count(*) FROM (
                SELECT e.subject_key, {category} AS category,
                       row_number() OVER (PARTITION BY e.subject_key ORDER BY max(e.occurred_at) DESC, {category})
                           AS rank
                FROM {events} e JOIN {products} p ON p.{pk} = e.product_id
                WHERE e.occurred_at >= %s AND e.occurred_at < %s AND {category} IS NOT NULL
                      AND e.event_type <> 'impression' AND e.public
                GROUP BY e.subject_key, {category}
            ) bounded
            WHERE rank <= %s
            GROUP BY category
            """,
            [start, end, per_shopper],
        )
        return {str(k): n for k, n in cursor.fetchall()}


def release_statistics(now: dt.datetime | None = None) -> PrivacyRelease:
    """The window's statistics release: the one made within the window, or a new one.

    Raises:
        BudgetExceeded: no release in the window and the period has less than
            ``STATISTICS_EPSILON`` left.
    """
    now = now or timezone.now()
    window = dt.timedelta(days=visrec_settings.STATISTICS_WINDOW_DAYS)
    start = now - window
    per_shopper = visrec_settings.RELEASE_MAX_PRODUCTS_PER_SHOPPER
    with_categories = bool(visrec_settings.CATEGORY_FIELD) and not visrec_settings.LOCAL_DP
    category_keys = catalogue_categories() if with_categories else []

    def exact() -> dict[str, dict]:
        products = catalogue_product_ids()
        vectors: dict[str, dict] = {}
        for event_type in EVENT_COLUMNS:
            counts = exact_distinct_counts(start, now, event_type, per_shopper)
            vectors[event_type] = {p: counts.get(p, 0) for p in products}
        if with_categories:
            counts = exact_category_counts(start, now, per_shopper)
            vectors[CATEGORY_VECTOR] = {c: counts.get(c, 0) for c in category_keys}
        return vectors

    histograms = len(EVENT_COLUMNS) + int(with_categories)
    return release_vectors(
        KIND, epsilon=visrec_settings.STATISTICS_EPSILON, sensitivity=histograms * per_shopper, start=start,
        end=now, exact=exact, reuse_within=window,
        payload={"categories": "central" if with_categories else ("local" if visrec_settings.LOCAL_DP else "none"),
                 "category_keys": category_keys},
    )


@dataclass
class ProductStat:
    product_id: int
    name: str
    counts: dict[str, int]   # event type -> noisy distinct shoppers (clamped at 0)


@dataclass
class CategoryStat:
    key: str
    label: str
    share: float                     # of shoppers' category interest, 0..1 (noisy)
    margin: float                    # ± of a 95% interval around the share
    count: int | None = None         # noisy distinct shoppers (central release only)


@dataclass
class Statistics:
    """What the admin shows of one release; every number is noisy."""

    release: PrivacyRelease
    margin: float                         # ± of a 95% interval around every count
    products: list[ProductStat]           # the top products by noisy views, carts, purchases
    categories: list[CategoryStat]
    category_source: str                  # "central", "local" or "none"
    local_dp_reports: int = 0
    refused: str | None = None            # why no newer release could be made
    product_total: int = 0                # products in the catalogue


def _vectors(release: PrivacyRelease) -> dict[str, dict[str, int]]:
    return release.payload.get("vectors", {})


def _categories(release: PrivacyRelease, margin: float) -> tuple[list[CategoryStat], int]:
    source = release.payload.get("categories")
    if source == "central":
        counts = {k: int(v) for k, v in _vectors(release).get(CATEGORY_VECTOR, {}).items()}
        keys = sorted(set(release.payload.get("category_keys", [])) | set(counts))
        total = sum(counts.values())
        labels = category_labels(keys)
        rows = [CategoryStat(k, labels[k], counts.get(k, 0) / total if total else 0.0,
                             margin / total if total else math.nan, counts.get(k, 0)) for k in keys]
        return sorted(rows, key=lambda r: (-r.share, r.label)), 0
    if source == "local":
        shares = local_dp.category_shares(release.window_start, release.window_end)
        labels = category_labels(shares.shares)
        rows = [CategoryStat(k, labels[k], shares.shares[k], shares.margins[k]) for k in shares.shares]
        return sorted(rows, key=lambda r: (-r.share, r.label)), shares.reports
    return [], 0


def statistics_from_release(release: PrivacyRelease, *, limit: int = 100) -> Statistics:
    """The admin's view of a release: top ``limit`` products and the category shares."""
    vectors = _vectors(release)
    margin = noise_margin(release.noise_scale)
    ids = {int(p) for event_type in EVENT_COLUMNS for p in vectors.get(event_type, {})}

    def counts(pid: int) -> dict[str, int]:
        return {t: int(vectors.get(t, {}).get(str(pid), 0)) for t in EVENT_COLUMNS}

    ranked = sorted(ids, key=lambda p: (*(-c for c in counts(p).values()), p))[:limit]
    products = get_product_model()._default_manager.in_bulk(ranked)
    rows = [ProductStat(p, str(products[p]) if p in products else f"#{p} (deleted)", counts(p)) for p in ranked]
    categories, reports = _categories(release, margin)
    return Statistics(release, margin, rows, categories, release.payload.get("categories", "none"),
                      local_dp_reports=reports, product_total=get_product_model()._default_manager.count())


def current_statistics(*, limit: int = 100, now: dt.datetime | None = None) -> Statistics:
    """The statistics to show now: this window's release, made on first use.

    When the budget refuses a new release, the newest earlier one is shown with the
    refusal in ``refused``.

    Raises:
        BudgetExceeded: refused, and no earlier release exists.
    """
    try:
        return statistics_from_release(release_statistics(now), limit=limit)
    except BudgetExceeded as exc:
        older = PrivacyRelease.objects.filter(kind=KIND).first()
        if older is None:
            raise
        stats = statistics_from_release(older, limit=limit)
        stats.refused = str(exc)
        return stats


def write_statistics_csv(stats: Statistics, out) -> None:
    """Writes the release behind ``stats`` as CSV: every product, then every category.

    Long format, one noisy number a row: ``statistic, id, name, noisy_value,
    plus_minus_95`` and the release it came from. Nothing is recomputed from the events.
    """
    release = stats.release
    vectors = _vectors(release)
    tail = [release.pk, f"{release.epsilon:g}", release.window_start.isoformat(), release.window_end.isoformat()]
    writer = csv.writer(out)
    writer.writerow(["statistic", "id", "name", "noisy_value", "plus_minus_95", "release", "epsilon",
                     "window_start", "window_end"])
    margin = f"{stats.margin:.1f}"
    for product in get_product_model()._default_manager.order_by("pk").iterator(chunk_size=2000):
        for event_type, column in EVENT_COLUMNS.items():
            writer.writerow([column, product.pk, str(product), int(vectors.get(event_type, {}).get(str(product.pk), 0)),
                             margin, *tail])
    for row in stats.categories:
        if row.count is not None:
            writer.writerow(["category_distinct_shoppers", row.key, row.label, row.count, margin, *tail])
        writer.writerow([f"category_share_{stats.category_source}_dp", row.key, row.label, f"{row.share:.4f}",
                         f"{row.margin:.4f}", *tail])

