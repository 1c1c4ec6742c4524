"""System checks: misconfiguration fails at start-up with a stable id and a fix.

=========== ==================================================================
id          what is wrong
=========== ==================================================================
visrec.E001 ``VISREC_PRODUCT_MODEL`` missing, malformed or not installed
visrec.E002 ``VISREC_IMAGE_MODEL`` missing, malformed or not installed
visrec.E003 ``VISREC["IMAGE_FIELD"]`` is not a file field of the image model
visrec.E004 ``VISREC["IMAGE_PRODUCT_FIELD"]`` is not a foreign key to the product model
visrec.E005 ``VISREC["CATEGORY_FIELD"]`` is not a field of the product model
visrec.E006 ``VISREC["IN_STOCK_FILTER"]`` is not a valid filter of the product model
visrec.E007 ``VISREC["PRICE_FIELD"]`` is not a price of the product model (field, lookup, annotation)
visrec.E008 ``VISREC["IMAGE_ORDER_FIELD"]`` is not a field of the image model
visrec.E009 ``VISREC`` has a key visrec does not know (a typo?)
visrec.E010 a numeric ``VISREC`` setting is not a positive integer
visrec.E011 ``VISREC["BACKBONE"]`` names no known backbone
visrec.E012 the default database is not PostgreSQL
visrec.E013 an epsilon of the privacy settings is not a positive number
visrec.E014 ``VISREC["PSEUDONYM_SECRET_FALLBACKS"]`` is not a list of strings
visrec.E015 ``VISREC["LOCAL_DP"]`` is on but there is no ``CATEGORY_FIELD``
visrec.E016 ``VISREC["COLOUR_WEIGHT"]`` is neither ``"auto"`` nor a number in [0, 1)
visrec.E017 ``VISREC["HNSW_EF_SEARCH"]`` is neither None nor an integer from 1 to 1000, or
            ``VISREC["HNSW_TARGET_RECALL"]`` is not a number in (0, 1]
visrec.E018 a setting where 0 means off is not an integer of 0 or more
visrec.E019 ``VISREC["VISIBILITY_FILTER"]`` is not a valid filter of the product model
visrec.E020 ``VISREC["PARENT_FIELD"]`` is not a foreign key from the product model to itself
visrec.E021 ``VISREC["PRODUCT_QUERYSET"]``, ``VISREC["PRICE_FORMAT"]`` or ``VISREC["SHOP_LIST"]`` cannot be
            imported, or the queryset hook fails
visrec.W001 the scheduled DP releases spend more than the period's privacy budget
=========== ==================================================================
"""
from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ImproperlyConfigured
from django.db import connections, models
from django.db.models import Q
from django.utils.module_loading import import_string

from .conf import DEFAULTS, MAX_EF_SEARCH, get_image_model, get_product_model, visrec_settings

POSITIVE_INTEGER_SETTINGS = ("EXTRACTION_BATCH_SIZE", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_UPLOAD_BYTES",
                             "MAX_UPLOAD_PIXELS", "ESTABLISHED_MIN_VIEWS", "PENDING_WORK_RETRY_SECONDS",
                             "PENDING_WORK_MAX_ATTEMPTS", "PRIVACY_PERIOD_DAYS",
                             "STATISTICS_WINDOW_DAYS", "RELEASE_MAX_PRODUCTS_PER_SHOPPER", "LOCAL_DP_REPORTS_PER_DAY",
                             "HNSW_M", "HNSW_EF_CONSTRUCTION")
#: Integers where 0 means "off" (a cache, the query pool).
NON_NEGATIVE_INTEGER_SETTINGS = ("CARD_CACHE_SECONDS", "FOR_YOU_CACHE_SECONDS", "CANDIDATE_SQL_SECONDS",
                                 "QUERY_THREADS", "ESTABLISHED_AFTER_SECONDS", "EVENTS_PER_NETWORK_PER_MINUTE",
                                 "FINETUNE_MAX_VIEWS")
EPSILON_SETTINGS = ("PRIVACY_BUDGET_EPSILON", "TRENDING_EPSILON", "STATISTICS_EPSILON", "LOCAL_DP_EPSILON",
                    "EXPERIMENT_EPSILON")


def _model_or_error(setting_name: str, check_id: str, getter, errors: list):
    value = getattr(settings, setting_name, "")
    if not value:
        errors.append(checks.Error(
            f"{setting_name} is not set.",
            hint=f'Add {setting_name} = "app_label.ModelName" to your settings, naming your shop\'s model.',
            id=check_id,
        ))
        return None
    try:
        return getter()
    except ImproperlyConfigured as exc:
        errors.append(checks.Error(
            str(exc),
            hint=f"Set {setting_name} to an installed model, e.g. \"catalog.Product\"; "
                 "check the app is in INSTALLED_APPS.",
            id=check_id,
        ))
        return None


def _field(model, name: str):
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None


@checks.register(checks.Tags.models)
def check_host_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The product and image models exist and the named fields are what visrec needs."""
    errors: list[checks.CheckMessage] = []
    product_model = _model_or_error("VISREC_PRODUCT_MODEL", "visrec.E001", get_product_model, errors)
    image_model = _model_or_error("VISREC_IMAGE_MODEL", "visrec.E002", get_image_model, errors)
    if image_model is not None:
        name = visrec_settings.IMAGE_FIELD
        field = _field(image_model, name)
        if not isinstance(field, models.FileField):
            errors.append(checks.Error(
                f'VISREC["IMAGE_FIELD"] = {name!r} is not a FileField/ImageField of {image_model._meta.label}.',
                hint='Set VISREC["IMAGE_FIELD"] to the name of the field that holds the image file.',
                id="visrec.E003",
            ))
        order = visrec_settings.IMAGE_ORDER_FIELD
        if order and _field(image_model, order) is None:
            errors.append(checks.Error(
                f'VISREC["IMAGE_ORDER_FIELD"] = {order!r} is not a field of {image_model._meta.label}.',
                hint='Name the field that orders a product\'s images, or set it to "" to order by pk.',
                id="visrec.E008",
            ))
    if image_model is not None and product_model is not None:
        name = visrec_settings.IMAGE_PRODUCT_FIELD
        field = _field(image_model, name)
        if not (isinstance(field, models.ForeignKey) and field.related_model is product_model):
            errors.append(checks.Error(
                f'VISREC["IMAGE_PRODUCT_FIELD"] = {name!r} is not a ForeignKey from '
                f"{image_model._meta.label} to {product_model._meta.label}.",
                hint='Set VISREC["IMAGE_PRODUCT_FIELD"] to the image model\'s foreign key to the product.',
                id="visrec.E004",
            ))
    if product_model is not None:
        errors.extend(_check_product_fields(product_model))
    return errors


def _check_product_fields(product_model) -> list[checks.CheckMessage]:
    from .services.catalogue import products

    errors: list[checks.CheckMessage] = []
    label = product_model._meta.label
    category = visrec_settings.CATEGORY_FIELD
    if category and _field(product_model, category) is None:
        errors.append(checks.Error(
            f'VISREC["CATEGORY_FIELD"] = {category!r} is not a field of {label}.',
            hint='Name the product\'s category field (a foreign key, a plain field or a many-to-many), or set '
                 'VISREC["CATEGORY_FIELD"] = "" if there is none.',
            id="visrec.E005",
        ))
    parent = visrec_settings.PARENT_FIELD
    parent_ok = True
    if parent:
        field = _field(product_model, parent)
        if not (isinstance(field, models.ForeignKey) and field.related_model is product_model):
            parent_ok = False
            errors.append(checks.Error(
                f'VISREC["PARENT_FIELD"] = {parent!r} is not a foreign key from {label} to itself.',
                hint='Name the variants\' foreign key to their parent product (oscar: "parent"), or set "" '
                     "without variants.",
                id="visrec.E020",
            ))
    hooks_ok = True
    for key in ("PRODUCT_QUERYSET", "PRICE_FORMAT", "SHOP_LIST"):
        value = getattr(visrec_settings, key)
        if value and isinstance(value, str):
            try:
                import_string(value)
            except ImportError as exc:
                hooks_ok = False
                errors.append(checks.Error(
                    f'VISREC[{key!r}] = {value!r} cannot be imported: {exc}.',
                    hint="Give the dotted path of a callable, e.g. 'myshop.visrec_hooks.prices', or \"\".",
                    id="visrec.E021",
                ))
    if not (parent_ok and hooks_ok):
        return errors
    try:
        shown = products.base_queryset()
    except Exception as exc:  # noqa: BLE001 - the host's hook: report whatever it raises
        return [*errors, checks.Error(
            f'VISREC["PRODUCT_QUERYSET"] failed on {label}\'s manager: {exc.__class__.__name__}: {exc}.',
            hint="It must take the product manager's queryset and return a queryset of the same model.",
            id="visrec.E021",
        )]
    for key, check_id, example in (("IN_STOCK_FILTER", "visrec.E006", '{"stock__gt": 0}'),
                                   ("VISIBILITY_FILTER", "visrec.E019", '{"is_public": True}')):
        lookups = getattr(visrec_settings, key)
        problem = None
        if not isinstance(lookups, (dict, Q)):
            problem = "is neither a dict of field lookups nor a Q object"
        elif lookups:
            try:
                str(shown.filter(products.as_condition(lookups)).query)
            except (FieldError, ValueError, TypeError) as exc:
                problem = f"is not a valid filter: {exc}"
        if problem:
            errors.append(checks.Error(
                f'VISREC[{key!r}] = {lookups!r} {problem}.',
                hint=f"Use lookups on {label} or through its relations, e.g. {example}, or {{}} for every product.",
                id=check_id,
            ))
    price = visrec_settings.PRICE_FIELD
    if price:
        try:
            queryset, name = products.price_lookup(shown)
            str(queryset.filter(**{f"{name}__gte": 0}).query)
        except (FieldError, ValueError, TypeError) as exc:
            errors.append(checks.Error(
                f'VISREC["PRICE_FIELD"] = {price!r} is not a price of {label}: {exc}',
                hint='Name a field of the product, a lookup through its relations (e.g. "stockrecords__price"), '
                     'an annotation added by VISREC["PRODUCT_QUERYSET"], or "" to disable price filters.',
                id="visrec.E007",
            ))
    return errors


@checks.register()
def check_visrec_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every ``VISREC`` key is known and numeric values are sensible."""
    errors: list[checks.CheckMessage] = []
    user = getattr(settings, "VISREC", {}) or {}
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(checks.Error(
            f'VISREC[{key!r}] is not a visrec setting.',
            hint="Known settings: " + ", ".join(sorted(DEFAULTS)) + ". See README, 'Installing into your shop'.",
            id="visrec.E009",
        ))
    for keys, minimum, kind, check_id in ((POSITIVE_INTEGER_SETTINGS, 1, "a positive integer", "visrec.E010"),
                                          (NON_NEGATIVE_INTEGER_SETTINGS, 0, "an integer of 0 or more",
                                           "visrec.E018")):
        for key in keys:
            value = getattr(visrec_settings, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                errors.append(checks.Error(
                    f"VISREC[{key!r}] = {value!r} is not {kind}.",
                    hint=f"Remove it to use the default ({DEFAULTS[key]!r}) or set {kind}.",
                    id=check_id,
                ))
    from .backbones import BACKBONE_NAMES

    if visrec_settings.BACKBONE not in BACKBONE_NAMES:
        errors.append(checks.Error(
            f'VISREC["BACKBONE"] = {visrec_settings.BACKBONE!r} is not a known backbone.',
            hint="Choose one of: " + ", ".join(BACKBONE_NAMES) + ".",
            id="visrec.E011",
        ))
    weight = visrec_settings.COLOUR_WEIGHT
    if weight != "auto" and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < 1):
        errors.append(checks.Error(
            f'VISREC["COLOUR_WEIGHT"] = {weight!r} is neither "auto" nor a number from 0 to below 1.',
            hint='Use "auto" (the default) to choose it on held-out products, or e.g. 0.3.',
            id="visrec.E016",
        ))
    ef = visrec_settings.HNSW_EF_SEARCH
    if ef is not None and (isinstance(ef, bool) or not isinstance(ef, int) or not 1 <= ef <= MAX_EF_SEARCH):
        errors.append(checks.Error(
            f'VISREC["HNSW_EF_SEARCH"] = {ef!r} is neither None nor an integer from 1 to {MAX_EF_SEARCH}.',
            hint="Use None (the default: each version's calibrated value) or fix one, e.g. 100.",
            id="visrec.E017",
        ))
    target = visrec_settings.HNSW_TARGET_RECALL
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        errors.append(checks.Error(
            f'VISREC["HNSW_TARGET_RECALL"] = {target!r} is not a recall in (0, 1].',
            hint="The default is 0.98 (recall@10 of similar products against exact search).",
            id="visrec.E017",
        ))
    return errors


@checks.register()
def check_privacy_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Epsilons are positive, the scheduled releases fit the budget, fallbacks and local DP are usable."""
    messages: list[checks.CheckMessage] = []
    bad = False
    for key in EPSILON_SETTINGS:
        value = getattr(visrec_settings, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            bad = True
            messages.append(checks.Error(
                f"VISREC[{key!r}] = {value!r} is not a positive number.",
                hint=f"Remove it to use the default ({DEFAULTS[key]!r}) or set a positive epsilon.",
                id="visrec.E013",
            ))
    fallbacks = visrec_settings.PSEUDONYM_SECRET_FALLBACKS
    if not isinstance(fallbacks, (list, tuple)) or not all(isinstance(f, str) for f in fallbacks):
        messages.append(checks.Error(
            f'VISREC["PSEUDONYM_SECRET_FALLBACKS"] = {fallbacks!r} is not a list of strings.',
            hint='List the retired secrets, newest first, e.g. ["old-secret"]; "" names the one derived '
                 "from SECRET_KEY.",
            id="visrec.E014",
        ))
    if visrec_settings.LOCAL_DP and not visrec_settings.CATEGORY_FIELD:
        messages.append(checks.Error(
            'VISREC["LOCAL_DP"] is on but VISREC["CATEGORY_FIELD"] is "": there are no categories to report.',
            hint='Name the product\'s category field, or set VISREC["LOCAL_DP"] = False.',
            id="visrec.E015",
        ))
    period, window = visrec_settings.PRIVACY_PERIOD_DAYS, visrec_settings.STATISTICS_WINDOW_DAYS
    if not bad and isinstance(period, int) and isinstance(window, int) and period > 0 and window > 0:
        scheduled = visrec_settings.TRENDING_EPSILON * period + visrec_settings.STATISTICS_EPSILON * -(-period // window)
        if scheduled > visrec_settings.PRIVACY_BUDGET_EPSILON + 1e-9:
            messages.append(checks.Warning(
                f"A daily trending list (TRENDING_EPSILON) and one statistics release per {window} days "
                f"(STATISTICS_EPSILON) spend up to epsilon {scheduled:g} per {period}-day period, more than "
                f"PRIVACY_BUDGET_EPSILON = {visrec_settings.PRIVACY_BUDGET_EPSILON:g}: releases will be refused "
                "before the period ends (trending then falls back to nothing).",
                hint="Lower TRENDING_EPSILON or STATISTICS_EPSILON, lengthen STATISTICS_WINDOW_DAYS, or raise the "
                     "budget (a weaker guarantee).",
                id="visrec.W001",
            ))
    return messages


@checks.register(checks.Tags.database)
def check_database(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """pgvector needs PostgreSQL; there is no SQLite path."""
    vendor = connections["default"].vendor
    if vendor != "postgresql":
        return [checks.Error(
            f"visrec needs PostgreSQL with the pgvector extension; the default database is {vendor}.",
            hint="Point DATABASES['default'] (or DATABASE_URL) at PostgreSQL 13+ with pgvector installed.",
            id="visrec.E012",
        )]
    return []
