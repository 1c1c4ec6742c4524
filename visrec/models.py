"""visrec's own tables. None of them alters the host's tables.

Vectors are stored in dimension-free ``vector`` columns so that any backbone (512 to
2048 dimensions) fits the same schema. Each served model version gets its own HNSW
index, a partial expression index ``((vector::vector(N)) vector_cosine_ops) WHERE
model_version = '...'`` built by :mod:`visrec.services.db.vector_index` before the
version is switched on; this is how pgvector indexes columns of mixed dimensions,
and it lets a new version be fully indexed before readers see it.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


class ImageEmbedding(models.Model):
    """The vector of one host product image under one embedding model version."""

    image = models.ForeignKey(
        settings.VISREC_IMAGE_MODEL, on_delete=models.CASCADE, related_name="visrec_embeddings"
    )
    product = models.ForeignKey(
        settings.VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="visrec_image_embeddings"
    )
    model_version = models.CharField(max_length=100)
    content_hash = models.CharField(max_length=64, blank=True, help_text=_("SHA-256 of the image file"))
    status = models.CharField(
        max_length=10, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING
    )
    error = models.TextField(blank=True)
    vector = VectorField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="visrec_imageemb_unique_version"),
        ]
        indexes = [
            models.Index(fields=["model_version", "status"], name="visrec_imageemb_ver_status"),
        ]

    def __str__(self) -> str:
        return f"image {self.image_id} @ {self.model_version} ({self.status})"


class WorkKind(models.TextChoices):
    EMBED = "embed", _("embed the image")
    REFRESH = "refresh", _("refresh the product's vector")


class PendingWork(models.Model):
    """Image work not yet done: the outbox (:mod:`visrec.services.catalogue.outbox`).

    A row is written in the same transaction as the host's image save or delete, so the
    work is never lost when the Celery broker is unreachable; a periodic sweep queues
    rows that no worker has finished after a few minutes, and the work deletes its rows
    when done.
    """

    kind = models.CharField(max_length=10, choices=WorkKind.choices)
    image = models.ForeignKey(
        settings.VISREC_IMAGE_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # No database constraint: a refresh is recorded when an image is deleted, which may be
    # part of deleting its product (the refresh then finds nothing to do and deletes the row).
    product = models.ForeignKey(
        settings.VISREC_PRODUCT_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True, help_text=_("last time the sweep queued it"))
    attempts = models.PositiveSmallIntegerField(default=0, help_text=_("times the sweep queued it"))

    class Meta:
        verbose_name_plural = _("pending work")
        indexes = [models.Index(fields=["kind", "created_at"], name="visrec_pendingwork_kind_time")]

    def __str__(self) -> str:
        target = f"image {self.image_id}" if self.kind == WorkKind.EMBED else f"product {self.product_id}"
        return f"{self.kind} {target}"


class ProductEmbedding(models.Model):
    """The vector of one host product (normalised mean of its image vectors), used for search."""

    product = models.ForeignKey(
        settings.VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="visrec_embeddings"
    )
    model_version = models.CharField(max_length=100)
    vector = VectorField()
    image_count = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "model_version"], name="visrec_prodemb_unique_version"),
        ]
        indexes = [models.Index(fields=["model_version"], name="visrec_prodemb_version")]

    def __str__(self) -> str:
        return f"product {self.product_id} @ {self.model_version}"


class EventType(models.TextChoices):
    VIEW = "view", _("view")
    CLICK = "click", _("click on a recommendation")
    CART = "cart", _("add to cart")
    PURCHASE = "purchase", _("purchase")
    SEARCH = "search", _("photo search")
    IMPRESSION = "impression", _("shown in a visrec widget")


class ExperimentArm(models.TextChoices):
    A = "a", _("A")
    B = "b", _("B")


class InteractionEvent(models.Model):
    """One shopper interaction with a product.

    Designed for privacy: no foreign key to a user, no IP address, no user agent. The
    subject is a keyed pseudonym (HMAC) of the logged-in user or the session, made by
    :func:`visrec.pseudonyms.subject_key`; without the secret it cannot be linked back.
    """

    subject_key = models.CharField(max_length=64)
    product = models.ForeignKey(
        settings.VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="visrec_events",
        null=True, blank=True,
    )
    event_type = models.CharField(max_length=10, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    source = models.CharField(max_length=50, blank=True, help_text=_("widget a click came from"))
    position = models.PositiveSmallIntegerField(null=True, blank=True)
    public = models.BooleanField(  # a database default too: raw COPY/INSERT of imported history counts
        default=True, db_default=True, help_text=_("counts toward releases shown to everyone (trending, statistics): the shopper "
                                  "was established (logged in, or a session of some age and several views)")
    )
    experiment = models.ForeignKey("Experiment", on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="events", help_text=_("the A/B test the shopper was in"))
    arm = models.CharField(max_length=1, blank=True, choices=ExperimentArm.choices,  # raw COPY of history: ""
                           default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["experiment", "arm", "event_type"], name="visrec_event_experiment_arm"),
            models.Index(fields=["subject_key", "occurred_at"], name="visrec_event_subject_time"),
            models.Index(fields=["occurred_at"], name="visrec_event_time"),
            models.Index(fields=["product", "event_type"], name="visrec_event_product_type"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.product_id} by {self.subject_key[:8]}…"


class ModelKind(models.TextChoices):
    EMBEDDER = "embedder", _("image embedder")
    RECOMMENDER = "recommender", _("personal recommender")


class ModelVersion(models.Model):
    """A trained (or pretrained) model; at most one active per kind."""

    kind = models.CharField(max_length=20, choices=ModelKind.choices)
    name = models.CharField(max_length=100, unique=True, help_text=_("version string"))
    created_at = models.DateTimeField(auto_now_add=True)
    metrics = models.JSONField(default=dict, blank=True)
    artefact = models.FileField(upload_to="visrec/models/", blank=True)
    dimensions = models.PositiveIntegerField(null=True, blank=True, help_text=_("vector length (embedders)"))
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True, help_text=_("why it was or was not promoted"))

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"], condition=Q(is_active=True), name="visrec_modelversion_one_active_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}{' (active)' if self.is_active else ''}"


class RecommenderItemVector(models.Model):
    """A product's vector in a trained "for you" model: score = shopper vector · item vector."""

    product = models.ForeignKey(
        settings.VISREC_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="visrec_recommender_vectors"
    )
    model_version = models.CharField(max_length=100)
    vector = VectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "model_version"], name="visrec_recitem_unique_version"),
        ]
        indexes = [models.Index(fields=["model_version"], name="visrec_recitem_version")]


class ShopperVector(models.Model):
    """A shopper's taste in a trained "for you" model, keyed by their pseudonym."""

    subject_key = models.CharField(max_length=64)
    model_version = models.CharField(max_length=100)
    vector = VectorField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject_key", "model_version"], name="visrec_shopper_unique_version"),
        ]


class PrivacyRelease(models.Model):
    """The privacy budget ledger: one row per differentially private release from the events.

    ``payload`` keeps the noisy result itself, so showing it again costs no budget
    (post-processing of a DP release is free).
    """

    kind = models.CharField(max_length=50, help_text=_("what was released, e.g. trending"))
    period_start = models.DateField(help_text=_("the budget period this release counts against"))
    epsilon = models.FloatField()
    delta = models.FloatField(default=0.0)
    mechanism = models.CharField(max_length=100)
    noise_scale = models.FloatField()
    sensitivity = models.FloatField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["period_start", "kind"], name="visrec_release_period_kind")]

    def __str__(self) -> str:
        return f"{self.kind} ε={self.epsilon} ({self.created_at:%Y-%m-%d})"


class RandomizedResponseDomain(models.Model):
    """The categories and epsilon that category reports were randomised over.

    Debiasing a report needs the set it was drawn from and the probability of keeping the
    truth, so each report points at the domain in force when it was made (a new one is
    created when the host's categories or ``LOCAL_DP_EPSILON`` change).
    """

    digest = models.CharField(max_length=64, unique=True, help_text=_("SHA-256 of the categories and epsilon"))
    categories = models.JSONField(help_text=_("category keys, as strings"))
    epsilon = models.FloatField()
    keep_probability = models.FloatField(help_text=_("probability that a report is the true category"))
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{len(self.categories)} categories, ε={self.epsilon:g}"


class CategoryReport(models.Model):
    """One shopper's category interest, randomised (randomized response) before it was stored.

    Written only under ``VISREC["LOCAL_DP"]``; ``category`` is the reported category key,
    which is the true one only with probability ``domain.keep_probability``.
    """

    subject_key = models.CharField(max_length=64)
    domain = models.ForeignKey(RandomizedResponseDomain, on_delete=models.PROTECT, related_name="reports")
    category = models.CharField(max_length=100)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["subject_key", "occurred_at"], name="visrec_catreport_subject_time"),
            models.Index(fields=["occurred_at"], name="visrec_catreport_time"),
        ]

    def __str__(self) -> str:
        return f"category {self.category} by {self.subject_key[:8]}…"


class RunOutcome(models.TextChoices):
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    SKIPPED = "skipped", _("nothing done")
    FAILED = "failed", _("failed")


class TaskRun(models.Model):
    """One run of a scheduled job (nightly training, purge, indexing), for the health page.

    Written by :func:`visrec.services.runs.recorded_run`; a run that is still ``running``
    long after it started was killed (the worker died before it could say so).
    """

    task = models.CharField(max_length=50)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=RunOutcome.choices, default=RunOutcome.RUNNING)
    summary = models.TextField(blank=True, help_text=_("what the run did, or why it did nothing or failed"))
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("scheduled run")
        indexes = [models.Index(fields=["task", "started_at"], name="visrec_taskrun_task_time")]

    def __str__(self) -> str:
        return f"{self.task} {self.started_at:%Y-%m-%d %H:%M} {self.outcome}"


def _experiment_salt() -> str:
    import secrets

    return secrets.token_hex(16)


class Experiment(models.Model):
    """An online A/B test of the "for you" list: shoppers split deterministically between two arms.

    Arm A serves ``version_a``; arm B serves ``version_b``, or the shop's own list
    (``VISREC["SHOP_LIST"]``) when ``b_is_shop_list``. A shopper's arm is a keyed hash of
    their pseudonym and ``salt`` (:mod:`visrec.services.experiments`), the same on every
    request and worker without storing an assignment. Events of assigned shoppers carry
    ``experiment``/``arm``, and the report released from them goes through the privacy ledger.
    At most one experiment runs (has no ``ended_at``) per ``surface``.
    """

    name = models.CharField(max_length=100, unique=True)
    surface = models.CharField(max_length=20, default="for_you", editable=False)
    hypothesis = models.TextField(blank=True)
    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+",
                                  limit_choices_to={"kind": ModelKind.RECOMMENDER},
                                  help_text=_("the recommender version arm A serves"))
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+", null=True, blank=True,
                                  limit_choices_to={"kind": ModelKind.RECOMMENDER},
                                  help_text=_("the recommender version arm B serves (empty: the shop's own list)"))
    b_is_shop_list = models.BooleanField(default=False, help_text=_("arm B shows the shop's own list (SHOP_LIST)"))
    share_b = models.FloatField(default=0.5, help_text=_("the share of shoppers in arm B (0.01 to 0.99)"))
    salt = models.CharField(max_length=32, default=_experiment_salt, editable=False)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["surface"], condition=Q(ended_at__isnull=True),
                                    name="visrec_experiment_one_running"),
            models.CheckConstraint(condition=Q(version_b__isnull=False, b_is_shop_list=False)
                                   | Q(version_b__isnull=True, b_is_shop_list=True),
                                   name="visrec_experiment_b_is_version_or_shop"),
            models.CheckConstraint(condition=Q(share_b__gte=0.01, share_b__lte=0.99),
                                   name="visrec_experiment_share_b_range"),
        ]

    def __str__(self) -> str:
        return self.name


class CatalogueIntelligence(ProductEmbedding):
    """The admin's catalogue intelligence pages (category suggestions, near-duplicates, the
    map), read from the served product vectors: a proxy, no table of its own."""

    class Meta:
        proxy = True
        verbose_name = _("catalogue intelligence")
        verbose_name_plural = _("catalogue intelligence")
