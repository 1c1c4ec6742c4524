"""Embedding follows the host's images: saved or deleted image -> outbox row -> on_commit -> Celery task.

Also: a deleted product invalidates cached "similar" lists (it may be one's query or
result); a saved or deleted product or image forgets the product's cached card; and a
saved or deleted model version drops this process's memo of served versions. Deferred cache
writes (:mod:`~visrec.services.db.cache_writes`) go out after each response and Celery task.
"""
from __future__ import annotations

import logging

from celery.signals import task_postrun
from django.contrib.auth.signals import user_logged_in
from django.core.signals import request_finished
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .conf import get_image_model, get_product_model, visrec_settings
from .models import WorkKind
from .services.catalogue import outbox, products
from .services.db import cache_writes

logger = logging.getLogger(__name__)


def post_save_image(sender, instance, created: bool = False, raw: bool = False, **kwargs) -> None:
    """Records the saved image's embedding in the outbox, in the caller's transaction; it is sent
    to Celery once that commits (fixtures are skipped). A broker outage never raises here."""
    if raw or not visrec_settings.AUTO_INDEX:
        return
    outbox.record(WorkKind.EMBED, [instance.pk])


def post_delete_image(sender, instance, **kwargs) -> None:
    """Records a refresh of the product's vector without the deleted image (its parent's, for a variant)."""
    if not visrec_settings.AUTO_INDEX:
        return
    product_id = getattr(instance, sender._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD).attname)
    outbox.record(WorkKind.REFRESH, [products.canonical_id(product_id)])


def post_delete_product(sender, instance, **kwargs) -> None:
    """Cached "similar" lists go stale once the deletion commits (the deleted product may be in them).

    One bump per transaction however many products it deletes: the connection remembers where
    the bump was queued (its list of pending callbacks, which Django replaces on commit and on
    any rollback, and the savepoints open then) rather than searching every pending callback
    per deletion (quadratic when a deletion cascades to many images, each queueing a refresh).
    """
    from .services.serving.generation import bump_embeddings_generation

    connection = transaction.get_connection()
    queued = getattr(connection, "_visrec_bump_queued", None)
    if (connection.in_atomic_block and queued is not None and queued[0] is connection.run_on_commit
            and queued[1] == connection.savepoint_ids):
        return
    connection._visrec_bump_queued = (connection.run_on_commit, list(connection.savepoint_ids))
    transaction.on_commit(bump_embeddings_generation)


def product_changed(sender, instance, **kwargs) -> None:
    """A saved or deleted product's cached card is forgotten once the transaction commits."""
    _forget_card_on_commit(instance.pk)


def image_changed(sender, instance, **kwargs) -> None:
    """A saved or deleted image's product's cached card (its parent's, for a variant) is
    forgotten once the transaction commits."""
    product_id = getattr(instance, sender._meta.get_field(visrec_settings.IMAGE_PRODUCT_FIELD).attname)
    _forget_card_on_commit(product_id)
    if visrec_settings.PARENT_FIELD and product_id is not None:
        parent = products.canonical_id(product_id)
        if parent != product_id:
            _forget_card_on_commit(parent)


class ForgetCards:
    """The ``on_commit`` callback that forgets the cards of the products changed in one transaction.

    ``hooks`` and ``savepoints`` record where it was registered: the connection's list of
    pending callbacks (Django replaces that list on commit and on any rollback) and the
    savepoints open then.
    """

    def __init__(self, product_id, hooks: list, savepoints: list) -> None:
        self.product_ids = [product_id]
        self.hooks, self.savepoints = hooks, savepoints
        self.done = False

    def __call__(self) -> None:
        from .services.serving.presentation import forget_cards

        self.done = True
        try:
            forget_cards(self.product_ids)
        except Exception:  # noqa: BLE001 - a cache outage must not fail the host's save (cards expire)
            logger.warning("visrec: could not forget %d cached cards (cache unreachable); they expire "
                           "within CARD_CACHE_SECONDS", len(self.product_ids), exc_info=True)


def _forget_card_on_commit(product_id) -> None:
    """One :class:`ForgetCards` per transaction (and savepoint) however many products change.

    The pending callback is kept on the connection, not searched for among all pending
    callbacks: a transaction that saves 100,000 images also queues 100,000 extraction
    callbacks, and a search per save would be quadratic.
    """
    if product_id is None:
        return
    connection = transaction.get_connection()
    pending = getattr(connection, "_visrec_forget_cards", None)
    if (pending is not None and not pending.done and pending.hooks is connection.run_on_commit
            and pending.savepoints == connection.savepoint_ids):
        pending.product_ids.append(product_id)
        return
    callback = ForgetCards(product_id, connection.run_on_commit, list(connection.savepoint_ids))
    connection._visrec_forget_cards = callback
    transaction.on_commit(callback)


def user_logged_in_handler(sender, request, user, **kwargs) -> None:
    """A shopper who logs in mid-session keeps the session's history."""
    if request is None:
        return
    from .services.privacy.tracking import adopt_session_history

    adopt_session_history(request, user)


def register_signal_handlers() -> None:
    """Connects the handlers to the host's image and product models and visrec's versions
    (called from ``VisrecConfig.ready``)."""
    from .models import Experiment, ModelVersion
    from .services.experiments.assignment import forget as forget_experiments
    from .services.serving.versions import forget_served_versions

    image_model = get_image_model()
    post_save.connect(post_save_image, sender=image_model, dispatch_uid="visrec_post_save_image")
    post_delete.connect(post_delete_image, sender=image_model, dispatch_uid="visrec_post_delete_image")
    post_delete.connect(post_delete_product, sender=get_product_model(), dispatch_uid="visrec_post_delete_product")
    for signal, name in ((post_save, "save"), (post_delete, "delete")):
        signal.connect(product_changed, sender=get_product_model(), dispatch_uid=f"visrec_card_product_{name}")
        signal.connect(image_changed, sender=image_model, dispatch_uid=f"visrec_card_image_{name}")
    post_save.connect(forget_served_versions, sender=ModelVersion, dispatch_uid="visrec_forget_served_on_save")
    post_delete.connect(forget_served_versions, sender=ModelVersion, dispatch_uid="visrec_forget_served_on_delete")
    post_save.connect(forget_experiments, sender=Experiment, dispatch_uid="visrec_forget_experiment_on_save")
    post_delete.connect(forget_experiments, sender=Experiment, dispatch_uid="visrec_forget_experiment_on_delete")
    user_logged_in.connect(user_logged_in_handler, dispatch_uid="visrec_user_logged_in")
    # Deferred cache writes go out after each response and each Celery task.
    request_finished.connect(cache_writes.flush, dispatch_uid="visrec_flush_cache_writes")
    task_postrun.connect(cache_writes.flush, dispatch_uid="visrec_flush_cache_writes", weak=False)
