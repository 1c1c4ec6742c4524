"""visrec's settings: one ``VISREC = {...}`` dict with documented defaults.

The host's model pointers are top-level settings (``VISREC_PRODUCT_MODEL``,
``VISREC_IMAGE_MODEL``) because migrations read them at import time, like
``AUTH_USER_MODEL``. Everything else is read lazily through :data:`visrec_settings`,
which is reloaded when Django's ``setting_changed`` signal fires (tests use
``override_settings``).
"""
from __future__ import annotations

from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

#: Every key of ``settings.VISREC`` with its default and what it means.
DEFAULTS: dict[str, Any] = {
    # --- the host's models -------------------------------------------------------
    # Field on the image model that holds the file (an ImageField or FileField).
    "IMAGE_FIELD": "image",
    # Field on the image model pointing at its product (a ForeignKey).
    "IMAGE_PRODUCT_FIELD": "product",
    # Field on the image model giving the images' order within a product ("" = pk).
    "IMAGE_ORDER_FIELD": "position",
    # Field on the image model used as the card's alt text when it has one (else the product's name).
    "IMAGE_ALT_FIELD": "alt_text",
    # Field on the product model holding its category: a ForeignKey, a plain field, or a
    # ManyToManyField (primary category: the first assigned); "" = none.
    "CATEGORY_FIELD": "category",
    # Lookups (a dict, or a Q) selecting products in stock, on the product's fields or through
    # relations, e.g. {"stock__gt": 0} or {"stockrecords__num_in_stock__gt": 0}; {} = all in stock.
    "IN_STOCK_FILTER": {"stock__gt": 0},
    # Lookups (a dict, or a Q) selecting the products shoppers may see at all, whatever their
    # stock, e.g. {"is_public": True}; {} = every product.
    "VISIBILITY_FILTER": {},
    # The product's price: a field, an annotation added by PRODUCT_QUERYSET, or a lookup
    # through relations ("stockrecords__price": the lowest of the product's rows); "" = none.
    "PRICE_FIELD": "price",
    # Dotted path to callable(price) -> str showing a price on cards and in the API's
    # price_display (currency, locale); "" = the number as it is.
    "PRICE_FORMAT": "",
    # The product model's foreign key to its parent for variants ("" = no variants): children
    # are never recommended; their images, stock and events count for the parent.
    "PARENT_FIELD": "",
    # Dotted path to callable(queryset) -> queryset that every product queryset of visrec
    # starts from (the host's own narrowing or annotations, e.g. a price); "" = the manager's.
    "PRODUCT_QUERYSET": "",
    # --- embeddings ----------------------------------------------------------------
    # Backbone used when no fine-tuned model is active.
    "BACKBONE": "efficientnet_lite0",
    # Local weight files for torchvision backbones, {"resnet50": "/path/resnet50.pth"}.
    "BACKBONE_WEIGHTS": {},
    # Images per forward pass during extraction.
    "EXTRACTION_BATCH_SIZE": 32,
    # HNSW candidate list per query (pgvector's hnsw.ef_search): higher = better recall, slower.
    # None: each embedder version's own, chosen by the self-check run when it is switched on
    # (visrec.services.db.index_calibration; 100 for a version never calibrated); an integer
    # fixes it for every version. Either way at least 2 k and at most 1000 per query.
    "HNSW_EF_SEARCH": None,
    # recall@10 against exact search that the self-check picks the smallest ef_search for.
    "HNSW_TARGET_RECALL": 0.98,
    # HNSW graph of a new version's index: neighbours per node (m) and build candidate list.
    # pgvector's default ef_construction (64) leaves clusters of a catalogue (products of one
    # look) poorly linked; 128 costs about 1.5x the build time (bench/RESULTS.md).
    "HNSW_M": 16,
    "HNSW_EF_CONSTRUCTION": 128,
    # Threads that decode images while the model computes (0 = decode inline).
    "DECODE_WORKERS": 2,
    # Torch intra-op threads in a worker process (0 = leave torch's default).
    "TORCH_THREADS": 1,
    # Refuse image files bigger than this many bytes.
    "MAX_IMAGE_BYTES": 20 * 1024 * 1024,
    # Refuse images with more pixels than this (decompression bombs).
    "MAX_IMAGE_PIXELS": 40_000_000,
    # The same limits for photos shoppers upload to search by photo, lower: one request must
    # not hold a large share of a web worker's memory (8 MP: about 24 MB decoded).
    "MAX_UPLOAD_BYTES": 8 * 1024 * 1024,
    "MAX_UPLOAD_PIXELS": 8_000_000,
    # Optional preprocessing steps.
    "AUTOCONTRAST": False,
    "DENOISE": False,
    # The colour's share of a fine-tuned embedder's cosine: "auto" (chosen on held-out
    # products, see README) or a number from 0 (shape only) to below 1.
    "COLOUR_WEIGHT": "auto",
    # Fine-tuning: training images that get an augmented view through the CNN (a stable
    # sample when there are more; the CNN pass is most of the time on CPUs); 0 = all.
    "FINETUNE_MAX_VIEWS": 4000,
    # --- widgets and API responses ---------------------------------------------------------
    # Seconds a product's card (name, link, price, first image) stays in Django's cache.
    # Saving or deleting a product or image forgets its card; changes made without signals
    # (QuerySet.update, raw SQL) show after at most this long, or call
    # visrec.services.serving.presentation.forget_cards(ids). 0: cards are read from the database
    # on every request.
    "CARD_CACHE_SECONDS": 300,
    # Seconds a shopper's trained-model lists ("for you": the model's list and item-kNN's)
    # stay in Django's cache. Another served version, other filters or (with
    # EXCLUDE_PURCHASED) a new purchase miss the cache at once; catalogue changes (stock,
    # price band, deleted products) show after at most this long. Erasing or re-keying a
    # shopper forgets theirs. 0: off.
    "FOR_YOU_CACHE_SECONDS": 600,
    # Seconds each process reuses the compiled SQL of the candidate products (the shop's
    # filters on the product model) and of the product-card query before compiling it again. A product manager whose
    # filter depends on the time shows within this time; one that depends on the request
    # (a tenant) needs 0, and note that cached "similar" lists (10 minutes) are shared by
    # every request. 0: compiled for every query.
    "CANDIDATE_SQL_SECONDS": 60,
    # Threads per process that run the session list's query and item-kNN's list of a
    # shopper's first "for you" request while the request's thread runs the trained
    # model's query (several connections at once; each thread keeps one connection).
    # Only with persistent connections (CONN_MAX_AGE not 0), outside transactions and
    # with CANDIDATE_SQL_SECONDS not 0; otherwise one after the other. 0: off.
    "QUERY_THREADS": 2,
    # Run the nearest-neighbour queries as prepared statements of each database connection
    # (planned once per connection, not per query; outside transactions only). Correct
    # behind a pooler (a connection that lost its statements gets them again), but set
    # False with one in transaction mode: most queries would prepare again, and what a
    # server connection holds would not be bounded (deallocations land on other ones).
    "PREPARED_QUERIES": True,
    # --- Celery ---------------------------------------------------------------------
    # Queue names: extraction is meant for GPU workers when a shop has them.
    "EXTRACTION_QUEUE": "visrec_extraction",
    "TRAINING_QUEUE": "visrec_training",
    "DEFAULT_QUEUE": "visrec",
    # Embed images automatically when the host saves or deletes them.
    "AUTO_INDEX": True,
    # Image work not done this many seconds after it was recorded (broker down, worker
    # killed) is sent again by the sweep (every minute), the wait doubling after each send,
    # at most PENDING_WORK_MAX_ATTEMPTS times.
    "PENDING_WORK_RETRY_SECONDS": 300,
    "PENDING_WORK_MAX_ATTEMPTS": 8,
    # Crontab fields for the nightly training run (minute hour day_of_week).
    "TRAINING_SCHEDULE": {"minute": "30", "hour": "3"},
    # --- "for you" ---------------------------------------------------------------------
    # Weight of each event type in training and in the session model.
    "EVENT_WEIGHTS": {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0, "search": 0.0, "impression": 0.0},
    # The trained model: "vbpr" (visual, default), "bpr", "itemknn" or "popularity".
    "RECOMMENDER": "vbpr",
    # Days of events the nightly training learns from (back from the newest event).
    "TRAINING_WINDOW_DAYS": 120,
    # How training measures: "basket" (each returning shopper's last basket held out, and
    # the one before it for validation) or "days" (the last HOLDOUT_DAYS held out).
    "VALIDATION": "basket",
    "HOLDOUT_DAYS": 7,
    # The guardrail decides only with at least this many test shoppers (fewer: "not enough
    # evidence", and the served model keeps serving).
    "GUARD_MIN_SHOPPERS": 30,
    # Session model: the shopper's last N events, halving in weight every H hours.
    "SESSION_EVENTS": 20,
    "SESSION_HALF_LIFE_HOURS": 72.0,
    # Share of the session signal when blended with the trained model (0..1), used only
    # while the served model version has no blend weights chosen on validation.
    "SESSION_BLEND": 0.5,
    # Share of a "for you" list (its last places, lists of 10 or more) kept for products
    # without interactions in the training window, picked by the session model:
    # exploration, so that new products get the feedback a trained model needs. 0: off.
    "RECOMMENDER_NEW_PRODUCT_SHARE": 0.05,
    # Nightly training may raise that share, up to this, where the validation slice's
    # shoppers bought new products often enough for more places to lift Recall@20 (chosen
    # from 0.1 / 0.2 / 0.3, stored with the version). Equal to the share above: fixed.
    "RECOMMENDER_NEW_PRODUCT_SHARE_MAX": 0.3,
    # Triples one BPR/VBPR fit draws at most: on large shops fewer epochs, so that nightly
    # training (four fits: two candidates on the validation slice, the guarded candidate,
    # the refit) stays bounded. The demo's ~60k pairs x 40 epochs are far below. 0: no cap.
    "RECOMMENDER_MAX_TRIPLES": 6_000_000,
    # Leave out what the shopper already bought.
    "EXCLUDE_PURCHASED": True,
    # Crontab fields of the nightly "for you" training.
    "RECOMMENDER_SCHEDULE": {"minute": "0", "hour": "4"},
    # --- events and privacy -----------------------------------------------------------
    # Dotted path to callable(request) -> bool deciding whether to record events ("" = always).
    "CONSENT_CHECK": "",
    # Contribution bounds per shopper and UTC day (events beyond are dropped and counted).
    "MAX_EVENTS_PER_DAY": 500,
    "MAX_EVENTS_PER_PRODUCT_PER_DAY": 20,
    # Trust tiers: an anonymous shopper's events count toward public releases (trending,
    # statistics) once their session is this old and they viewed this many distinct products;
    # logged-in shoppers' and the server's own always do.
    "ESTABLISHED_AFTER_SECONDS": 300,
    "ESTABLISHED_MIN_VIEWS": 3,
    # Events stored per client network (IPv4 /24, IPv6 /64) and minute, counted under a keyed
    # hash of the network that expires (no address is stored); 0 = no budget.
    "EVENTS_PER_NETWORK_PER_MINUTE": 300,
    # DRF throttle rates of visrec's endpoints, per client network (same keyed hash).
    "THROTTLE_RATES": {"events": "120/min", "photo_search": "20/min"},
    # Raw events older than this (counted from now) are purged nightly; None = never. Imported
    # history (source "import") is kept unless RETENTION_INCLUDES_IMPORTS.
    "RETENTION_DAYS": 365,
    "RETENTION_INCLUDES_IMPORTS": False,
    "RETENTION_SCHEDULE": {"minute": "15", "hour": "2"},
    # Differential privacy of everything released from the events: total epsilon per period.
    "PRIVACY_BUDGET_EPSILON": 10.0,
    "PRIVACY_PERIOD_DAYS": 30,
    # Epsilon spent by one daily trending list, and the products one shopper may count for.
    "TRENDING_EPSILON": 0.25,
    "RELEASE_MAX_PRODUCTS_PER_SHOPPER": 10,
    # Admin statistics (per-product view/cart/purchase counts, per-category shares, CSV):
    # epsilon of one release, made at most once per window and covering the last window.
    "STATISTICS_EPSILON": 0.5,
    "STATISTICS_WINDOW_DAYS": 7,
    # Local DP: randomise category-interest reports (randomized response) before storing them.
    "LOCAL_DP": False,
    # Epsilon of one report, and reports kept per shopper and UTC day.
    "LOCAL_DP_EPSILON": 2.0,
    "LOCAL_DP_REPORTS_PER_DAY": 1,
    # A/B tests of "for you" (admin -> Experiments): epsilon of one release of an experiment's
    # report (exposed, clicking, carting and buying shoppers per arm), and how long a release
    # is shown again before a new one may be made.
    "EXPERIMENT_EPSILON": 0.5,
    "EXPERIMENT_REPORT_REUSE_MINUTES": 60,
    # Dotted path to callable(request, k, leave_out) -> product pks: the shop's own list, which
    # an experiment's arm B can serve against visrec ("" = none).
    "SHOP_LIST": "",
    # DP training of "for you" (PRIVACY.md, "DP training"): when ENABLED, the nightly model is
    # "dp_itembpr" trained with DP-SGD to at most EPSILON (DELTA None = 1 / shoppers^1.1),
    # one shopper's gradient clipped to MAX_GRAD_NORM.
    "RECOMMENDER_DP": {"ENABLED": False, "EPSILON": 8.0, "DELTA": None, "MAX_GRAD_NORM": 1.0},
    # Secret key behind subject pseudonyms ("" = derive from SECRET_KEY).
    "PSEUDONYM_SECRET": "",
    # Retired pseudonym secrets, newest first, still used to find a user's older data
    # (export, erasure, visrec_rotate_pseudonyms); "" = the one derived from SECRET_KEY.
    "PSEUDONYM_SECRET_FALLBACKS": [],
    # Where visrec keeps model artefacts (a path under MEDIA_ROOT's storage).
    "ARTEFACT_DIR": "visrec/models",
    # --- catalogue intelligence (admin: category suggestions, near-duplicates, the map) ---
    # Nearest products (cosine, served version) whose primary categories vote on a product's category.
    "CATALOGUE_NEIGHBOURS": 10,
    # A categorised product is "likely mis-categorised" when another category wins at least
    # this share of the vote, its own category gets at most CATALOGUE_CURRENT_SUPPORT_MAX of
    # it, and at least CATALOGUE_MIN_VOTERS neighbours have a category.
    "CATALOGUE_MISCATEGORISED_CONFIDENCE": 0.8,
    "CATALOGUE_CURRENT_SUPPORT_MAX": 0.1,
    "CATALOGUE_MIN_VOTERS": 3,
    # Cosine similarity of two product vectors from which they count as near-duplicates.
    "CATALOGUE_DUPLICATE_SIMILARITY": 0.97,
    # Bounds of the work: products analysed (lowest ids first) and points drawn on the map.
    "CATALOGUE_MAX_PRODUCTS": 20000,
    "CATALOGUE_MAP_POINTS": 3000,
    # Seconds neighbour lists and map coordinates stay cached (new vectors make them stale at once).
    "CATALOGUE_CACHE_SECONDS": 3600,
}

#: pgvector's largest ``hnsw.ef_search`` (the bound of ``HNSW_EF_SEARCH``, check E017).
MAX_EF_SEARCH = 1000

#: Keys whose value is a dotted path imported on first use.
IMPORT_STRINGS: frozenset[str] = frozenset()


class VisrecSettings:
    """Attribute access to ``settings.VISREC`` with defaults, e.g. ``visrec_settings.BACKBONE``."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = defaults or DEFAULTS
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        if not hasattr(self, "_user_settings"):
            self._user_settings = getattr(settings, "VISREC", {}) or {}
        return self._user_settings

    def __getattr__(self, attr: str) -> Any:
        if attr not in self.defaults:
            raise AttributeError(f"Invalid visrec setting: {attr!r}")
        value = self.user_settings.get(attr, self.defaults[attr])
        if attr in IMPORT_STRINGS and isinstance(value, str) and value:
            value = import_string(value)
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def hook(self, attr: str):
        """A setting naming the host's callable (a dotted path, or the callable itself) as that
        callable; ``None`` when it is empty. The path is imported on each call, so a test's
        ``override_settings`` takes effect at once (import_string caches the module)."""
        value = getattr(self, attr)
        if not value:
            return None
        return import_string(value) if isinstance(value, str) else value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


visrec_settings = VisrecSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "VISREC":
        visrec_settings.reload()


setting_changed.connect(_reload)


def get_product_model_string() -> str:
    """The host's product model as ``"app_label.ModelName"`` (``VISREC_PRODUCT_MODEL``)."""
    return getattr(settings, "VISREC_PRODUCT_MODEL", "")


def get_image_model_string() -> str:
    """The host's product image model as ``"app_label.ModelName"`` (``VISREC_IMAGE_MODEL``)."""
    return getattr(settings, "VISREC_IMAGE_MODEL", "")


def _get_model(setting_name: str, value: str):
    try:
        return django_apps.get_model(value, require_ready=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{setting_name} must be of the form 'app_label.ModelName', got {value!r}."
        ) from exc
    except LookupError as exc:
        raise ImproperlyConfigured(
            f"{setting_name} refers to model {value!r} that has not been installed."
        ) from exc


def get_product_model():
    """The host's product model class."""
    return _get_model("VISREC_PRODUCT_MODEL", get_product_model_string())


def get_image_model():
    """The host's product image model class."""
    return _get_model("VISREC_IMAGE_MODEL", get_image_model_string())
