"""A django-oscar 4.2 sandbox: oscar's documented settings, plus visrec in a few lines.

PostgreSQL and Redis are the demo's embedded servers (``shop_demo.devservices``), with a
database and Redis databases of its own; ``DATABASE_URL`` / ``CELERY_BROKER_URL`` as for the demo.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import dj_database_url
from oscar import INSTALLED_APPS as OSCAR_APPS
from oscar.defaults import *  # noqa: F401,F403 - oscar's own defaults, as its docs say

from shop_demo import devservices
from visrec.contrib.oscar import settings as visrec_oscar

HERE = Path(__file__).resolve().parent
SECRET_KEY = "oscar-sandbox-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
SITE_ID = 1

INSTALLED_APPS = [
    *OSCAR_APPS,  # django.contrib.*, oscar.config.Shop and its apps, widget_tweaks, haystack, treebeard, django_tables2
    "sorl.thumbnail",
    "rest_framework",
    "drf_spectacular",
    # --- visrec: the app and its oscar adapter ---
    "visrec",
    "visrec.contrib.oscar",
]
VISREC_PRODUCT_MODEL = visrec_oscar.VISREC_PRODUCT_MODEL
VISREC_IMAGE_MODEL = visrec_oscar.VISREC_IMAGE_MODEL
VISREC = visrec_oscar.visrec_settings()  # keyword arguments override any key
# (no REST_FRAMEWORK, no SPECTACULAR_SETTINGS, no drf-spectacular-sidecar: visrec needs none)

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
]
AUTHENTICATION_BACKENDS = ["oscar.apps.customer.auth_backends.EmailBackend", "django.contrib.auth.backends.ModelBackend"]
ROOT_URLCONF = "tests.hosts.oscar.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [HERE / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.debug",
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.template.context_processors.i18n",
        "django.contrib.messages.context_processors.messages",
        "oscar.apps.search.context_processors.search_form",
        "oscar.apps.checkout.context_processors.checkout",
        "oscar.apps.communication.notifications.context_processors.notifications",
        "oscar.core.context_processors.metadata",
    ]},
}]
HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}
OSCAR_DEFAULT_CURRENCY = "GBP"

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {"default": {**devservices.ensure_postgres(), "NAME": "visrec_oscar"}}
DATABASES["default"]["ATOMIC_REQUESTS"] = True  # as oscar's docs set it
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("VISREC_OSCAR_TEST_DATABASE", "test_visrec_oscar")}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Redis: the broker in database 12, the cache in 11 (the demo's suite uses others).
_redis = re.sub(r"/\d*$", "", os.environ.get("CELERY_BROKER_URL") or devservices.ensure_redis())
CELERY_BROKER_URL = _redis + "/12"
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ROUTES = ["visrec.celery.route_task"]  # the app: tests/hosts/oscar/celery.py
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _redis + "/11",
                      "KEY_PREFIX": "oscar-sandbox"}}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-gb"
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = devservices.VAR_DIR / "oscar-media"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
