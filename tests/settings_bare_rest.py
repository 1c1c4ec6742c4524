"""The demo's test settings as a host that configured nothing for DRF or drf-spectacular:
no REST_FRAMEWORK (DRF's own DEFAULT_SCHEMA_CLASS), no SPECTACULAR_SETTINGS, no sidecar app."""
from shop_demo.settings_test import *  # noqa: F401,F403
from shop_demo.settings_test import INSTALLED_APPS

del REST_FRAMEWORK, SPECTACULAR_SETTINGS  # noqa: F821
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "drf_spectacular_sidecar"]
