from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from shop_demo.catalog.models import Product, ProductImage
from visrec.conf import DEFAULTS, get_image_model, get_product_model, visrec_settings


def test_defaults_are_read_when_not_overridden(settings):
    settings.VISREC = {}
    assert visrec_settings.EXTRACTION_BATCH_SIZE == DEFAULTS["EXTRACTION_BATCH_SIZE"]
    assert visrec_settings.BACKBONE == "efficientnet_lite0"


def test_settings_reload_on_override(settings):
    settings.VISREC = {"EXTRACTION_BATCH_SIZE": 7}
    assert visrec_settings.EXTRACTION_BATCH_SIZE == 7
    settings.VISREC = {"EXTRACTION_BATCH_SIZE": 9}
    assert visrec_settings.EXTRACTION_BATCH_SIZE == 9


def test_unknown_setting_attribute_raises():
    with pytest.raises(AttributeError, match="Invalid visrec setting"):
        visrec_settings.NOT_A_SETTING  # noqa: B018


def test_model_getters_follow_settings(settings):
    assert get_product_model() is Product
    assert get_image_model() is ProductImage
    settings.VISREC_PRODUCT_MODEL = "catalog.Nope"
    with pytest.raises(ImproperlyConfigured, match="VISREC_PRODUCT_MODEL refers to model 'catalog.Nope'"):
        get_product_model()
    settings.VISREC_IMAGE_MODEL = "no_dot"
    with pytest.raises(ImproperlyConfigured, match="VISREC_IMAGE_MODEL must be of the form"):
        get_image_model()
