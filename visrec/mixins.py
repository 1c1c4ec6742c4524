"""A view mixin for hosts that record product views on the server without writing code for it."""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class TrackProductViewMixin:
    """For a product ``DetailView``: each successful GET records a view of ``self.object``
    (``visrec.track``: consent, pseudonyms and bounds apply). Never breaks the page.

    ``class ProductDetail(TrackProductViewMixin, DetailView): model = Product``
    """

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        product = getattr(self, "object", None)
        if product is not None and response.status_code == 200:
            from .services.privacy.tracking import track

            try:
                track(request, "view", product)
            except Exception:  # noqa: BLE001 - tracking must never break the host's page
                logger.exception("visrec: could not record a view of %r", product)
        return response
