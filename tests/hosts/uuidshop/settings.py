"""Settings of the UUID host: the demo's servers (embedded PostgreSQL and Redis), another shop."""
from __future__ import annotations

from shop_demo.settings_test import *  # noqa: F401,F403
from shop_demo.settings_test import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "shop_demo.catalog"] + ["tests.hosts.uuidshop.store"]
ROOT_URLCONF = "tests.hosts.uuidshop.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}]
VISREC_PRODUCT_MODEL = "store.Item"
VISREC_IMAGE_MODEL = "store.Picture"
VISREC = {"IMAGE_FIELD": "file", "IMAGE_PRODUCT_FIELD": "item", "IMAGE_ORDER_FIELD": "", "IMAGE_ALT_FIELD": "",
          "CATEGORY_FIELD": "kind", "IN_STOCK_FILTER": {}, "PRICE_FIELD": "", "TORCH_THREADS": 1}
