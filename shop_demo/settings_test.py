"""Test settings: the demo's settings with a separate Redis database and media folder."""
from __future__ import annotations

import os
from pathlib import Path

from .settings import *  # noqa: F401,F403
from .settings import VAR_DIR

if not os.environ.get("CELERY_BROKER_URL"):
    # Keep test tasks away from a demo worker that may share the embedded Redis.
    CELERY_BROKER_URL = CELERY_BROKER_URL.rsplit("/", 1)[0] + "/15"  # noqa: F405
    CELERY_RESULT_BACKEND = CELERY_BROKER_URL
if not os.environ.get("CACHE_URL"):
    # Redis database 2 for the tests' cache (cleared between tests); test workers get CACHE_URL.
    CACHES = {"default": {**CACHES["default"], "LOCATION": CELERY_BROKER_URL.rsplit("/", 1)[0] + "/2"}}  # noqa: F405
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "test-media"))
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A Celery worker started by the tests works on the test database pytest-django made.
if os.environ.get("VISREC_TEST_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["VISREC_TEST_DATABASE_NAME"]  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": os.environ["VISREC_TEST_DATABASE_NAME"]}  # noqa: F405
elif os.environ.get("VISREC_PYTEST_DATABASE"):
    # Two test runs side by side (e.g. one per terminal) each get their own test database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["VISREC_PYTEST_DATABASE"]}  # noqa: F405
