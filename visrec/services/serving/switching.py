"""Serving a chosen model version by hand (promote or roll back), refused when it cannot serve.

The admin's "Serve this version" action and its one-click button on a version's page call
:func:`serve_version`; the checks are the ones a by-hand switch needs on top of
:func:`~visrec.services.serving.versions.activate_version`: a recommender must have been
published (its vectors written: one kept out by its guardrail or failed never was), and an
embedder must cover the catalogue (every image done or failed), else search would miss products.
"""
from __future__ import annotations

from django.utils.translation import gettext as _

from ...models import ModelKind, ModelVersion, RecommenderItemVector


class NotServable(ValueError):
    """The version cannot be served now; the message says why, in words for the admin."""


def published(version: ModelVersion) -> bool:
    """Whether a recommender version's vectors are in the database (it can be served)."""
    return RecommenderItemVector.objects.filter(model_version=version.name).exists()


def unpublished_message(version: ModelVersion) -> str:
    return _("%s was never published (kept out by its guardrail or failed).") % version.name


def serve_version(version: ModelVersion, *, note: str = "") -> None:
    """Makes ``version`` the served one of its kind, or raises :class:`NotServable`.

    An embedder's HNSW index is built and calibrated first when needed
    (:func:`~visrec.services.catalogue.embedders.activate_embedder`).
    """
    if version.kind == ModelKind.RECOMMENDER:
        from .versions import activate_version

        if not published(version):
            raise NotServable(unpublished_message(version))
        activate_version(version, note=note)
        return
    from ..catalogue.embedders import activate_embedder
    from ..catalogue.extraction import coverage

    state = coverage(version)
    if state["done"] + state["failed"] < state["images"]:
        raise NotServable(_("%(name)s covers %(done)d of %(images)d images; index it first.")
                          % {"name": version.name, **state})
    activate_embedder(version, note=note)
