"""From the event log to training data: index maps, weights, item features, time split."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ...conf import visrec_settings
from ...models import EventType, InteractionEvent, ProductEmbedding
from ...recommenders.base import Interactions


@dataclass
class Dataset:
    """Events of a time window in index space, with the maps back to keys and products.

    Attributes:
        subjects: subject_key of each user index.
        products: product pk of each item index (every product with an image vector).
        users, items, types, times: one entry per event (int64, int64, str, float64 unix s).
        features: float32 (n_items, D) served image vectors of the items.
    """

    subjects: np.ndarray
    products: np.ndarray
    users: np.ndarray
    items: np.ndarray
    types: np.ndarray
    times: np.ndarray
    features: np.ndarray

    @property
    def weights(self) -> np.ndarray:
        table = visrec_settings.EVENT_WEIGHTS
        return np.array([table.get(t, 0.0) for t in self.types], dtype=np.float32)

    def interactions(self, mask: np.ndarray | None = None) -> Interactions:
        """The events selected by ``mask`` (default all) with positive weight, as model input."""
        mask = np.ones(len(self.users), dtype=bool) if mask is None else mask
        mask = mask & (self.weights > 0)
        return Interactions(users=self.users[mask], items=self.items[mask], weights=self.weights[mask],
                            times=self.times[mask], n_users=len(self.subjects), n_items=len(self.products))


def reference_time(as_of: dt.datetime | None = None) -> dt.datetime:
    """The moment training windows and hold-outs count back from: ``as_of``, else the newest
    event's time (a shop whose history is old, an import, trains on its data, not on the
    empty weeks before today), else now."""
    from django.db.models import Max
    from django.utils import timezone

    if as_of is not None:
        return as_of
    newest = (InteractionEvent.objects.filter(product__isnull=False).exclude(event_type=EventType.IMPRESSION)
              .aggregate(newest=Max("occurred_at"))["newest"])
    return newest or timezone.now()


def load_dataset(version_name: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Dataset:
    """Events (with a product) between ``since`` and ``until`` and the served image vectors.

    Items are every product with a vector under ``version_name`` (so products nobody has
    touched can still be scored from their pictures); events on other products are dropped.
    """
    vectors = ProductEmbedding.objects.filter(model_version=version_name).order_by("product_id")
    rows = list(vectors.values_list("product_id", "vector"))
    products = np.array([r[0] for r in rows], dtype=np.int64)
    features = (np.stack([np.asarray(r[1], dtype=np.float32) for r in rows]) if rows
                else np.zeros((0, 1), dtype=np.float32))
    events = InteractionEvent.objects.filter(product__isnull=False).exclude(event_type=EventType.IMPRESSION)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    data = list(events.order_by("occurred_at", "pk").values_list("subject_key", "product_id", "event_type", "occurred_at"))
    item_index = {int(p): i for i, p in enumerate(products)}
    data = [d for d in data if d[1] in item_index]
    subjects, users = np.unique(np.array([d[0] for d in data], dtype=object), return_inverse=True) if data else (
        np.array([], dtype=object), np.array([], dtype=np.int64))
    return Dataset(
        subjects=subjects.astype(str) if len(subjects) else np.array([], dtype=str),
        products=products,
        users=np.asarray(users, dtype=np.int64),
        items=np.array([item_index[d[1]] for d in data], dtype=np.int64),
        types=np.array([d[2] for d in data], dtype=object),
        times=np.array([d[3].timestamp() for d in data], dtype=np.float64),
        features=features,
    )
