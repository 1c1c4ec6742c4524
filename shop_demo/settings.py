"""Settings of the demo shop: a host project that uses visrec as any shop would.

``DATABASE_URL`` selects a PostgreSQL server with pgvector (production); without it the
embedded server from :mod:`shop_demo.devservices` starts. Likewise ``CELERY_BROKER_URL``
selects Redis; without it an embedded Redis starts.
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from . import devservices

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = devservices.VAR_DIR

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "shop_demo.catalog",
    "visrec",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop_demo.urls"
WSGI_APPLICATION = "shop_demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop_demo.catalog.context_processors.categories",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
else:
    DATABASES = {"default": devservices.ensure_postgres()}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))

# --- Celery (Redis broker and result store) and the cache ------------------------------
_redis = os.environ.get("CELERY_BROKER_URL") or (devservices.ensure_redis() + "/0")
# A cache shared by the web processes and the workers: visrec invalidates cached
# recommendations from the worker that wrote new vectors.
CACHES = {
    "default": {
        "BACKEND": "visrec.cache.RedisCache",  # Django's, reusing its Redis clients
        "LOCATION": os.environ.get("CACHE_URL") or _redis.rsplit("/", 1)[0] + "/1",
        "KEY_PREFIX": "shop",
    }
}
# Sessions read from the cache, written through to the database: a shopper's request
# ("for you", events) does not query the session table.
SESSION_ENGINE = "visrec.sessions"  # cached_db that falls back to the database when Redis is down
CELERY_BROKER_URL = _redis
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", _redis)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ROUTES = ["visrec.celery.route_task"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# An unacknowledged task (acks_late) goes back to the queue this long after its worker died:
# above the longest acks_late task (one extraction chunk of 256 images, a few minutes on 2
# cores), so a slow task is not run twice; a killed worker's images are sent again sooner by
# visrec's pending-work sweep (PENDING_WORK_RETRY_SECONDS).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "900"))}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER") == "1"

# --- visrec -----------------------------------------------------------------------------
VISREC_PRODUCT_MODEL = "catalog.Product"
VISREC_IMAGE_MODEL = "catalog.ProductImage"
VISREC = {
    "IMAGE_FIELD": "image",
    "IMAGE_PRODUCT_FIELD": "product",
    "IMAGE_ORDER_FIELD": "position",
    "CATEGORY_FIELD": "category",
    "IN_STOCK_FILTER": {"stock__gt": 0},
    "PRICE_FIELD": "price",
    "PRICE_FORMAT": "shop_demo.catalog.prices.format_price",
    # The shop's own list, for A/B tests of visrec against it (admin -> Experiments).
    "SHOP_LIST": "shop_demo.catalog.lists.new_arrivals",
    # One torch thread per worker process on small machines; more for one-off commands.
    "TORCH_THREADS": int(os.environ.get("VISREC_TORCH_THREADS", "1")),
}

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "visrec API",
    "DESCRIPTION": "Visual product recommendations: similar products and search by photo.",
    "VERSION": "0.1.0",
    # Swagger UI served from this site (drf-spectacular-sidecar), not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"visrec": {"handlers": ["console"], "level": os.environ.get("VISREC_LOG_LEVEL", "INFO")}},
}
