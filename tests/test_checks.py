"""Misconfiguration fails through system checks with stable ids that name the setting."""
from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from visrec import checks

from .conftest import ROOT


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_demo_configuration_passes_all_checks():
    assert checks.check_host_models() == []
    assert checks.check_visrec_settings() == []
    assert checks.check_database() == []


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("VISREC_PRODUCT_MODEL", "catalog.Missing", "visrec.E001"),
        ("VISREC_PRODUCT_MODEL", "", "visrec.E001"),
        ("VISREC_IMAGE_MODEL", "nodot", "visrec.E002"),
    ],
)
def test_wrong_model_pointer(settings, setting, value, check_id):
    setattr(settings, setting, value)
    messages = checks.check_host_models()
    assert check_id in ids(messages)
    message = next(m for m in messages if m.id == check_id)
    assert setting in (message.msg + message.hint)


@pytest.mark.parametrize(
    ("key", "value", "check_id"),
    [
        ("IMAGE_FIELD", "alt_text", "visrec.E003"),
        ("IMAGE_PRODUCT_FIELD", "position", "visrec.E004"),
        ("CATEGORY_FIELD", "genre", "visrec.E005"),
        ("IN_STOCK_FILTER", {"quantity__gt": 0}, "visrec.E006"),
        ("IN_STOCK_FILTER", "stock > 0", "visrec.E006"),
        ("PRICE_FIELD", "cost", "visrec.E007"),
        ("IMAGE_ORDER_FIELD", "rank", "visrec.E008"),
    ],
)
def test_wrong_field_names(settings, key, value, check_id):
    settings.VISREC = {**settings.VISREC, key: value}
    messages = checks.check_host_models()
    assert ids(messages) == [check_id]
    assert key in messages[0].msg


def test_unknown_key_and_bad_numbers_and_backbone(settings):
    settings.VISREC = {"BACKBONE": "vgg99", "EXTRACTION_BATCH_SIZE": 0, "BATCH_SIZ": 3}
    found = ids(checks.check_visrec_settings())
    assert sorted(found) == ["visrec.E009", "visrec.E010", "visrec.E011"]


@pytest.mark.parametrize("key, value, ok", [
    ("QUERY_THREADS", 0, True), ("QUERY_THREADS", 4, True), ("QUERY_THREADS", -1, False),
    ("QUERY_THREADS", "2", False), ("FOR_YOU_CACHE_SECONDS", 0, True), ("FOR_YOU_CACHE_SECONDS", 1.5, False),
    ("CANDIDATE_SQL_SECONDS", True, False), ("CARD_CACHE_SECONDS", -5, False),
])
def test_settings_where_zero_means_off(settings, key, value, ok):
    settings.VISREC = {**settings.VISREC, key: value}
    assert ids(checks.check_visrec_settings()) == ([] if ok else ["visrec.E018"])


@pytest.mark.parametrize("key, value, ok", [
    ("HNSW_EF_SEARCH", None, True), ("HNSW_EF_SEARCH", 100, True), ("HNSW_EF_SEARCH", 0, False),
    ("HNSW_EF_SEARCH", 2000, False), ("HNSW_EF_SEARCH", "100", False),
    ("HNSW_TARGET_RECALL", 0.98, True), ("HNSW_TARGET_RECALL", 1, True), ("HNSW_TARGET_RECALL", 0, False),
    ("HNSW_TARGET_RECALL", 1.5, False),
])
def test_hnsw_query_settings(settings, key, value, ok):
    settings.VISREC = {**settings.VISREC, key: value}
    assert ids(checks.check_visrec_settings()) == ([] if ok else ["visrec.E017"])


@pytest.mark.parametrize("weight, ok", [("auto", True), (0, True), (0.35, True), (1, False), (-0.1, False),
                                        ("0.3", False), (True, False)])
def test_colour_weight_is_auto_or_a_share_below_one(settings, weight, ok):
    settings.VISREC = {**settings.VISREC, "COLOUR_WEIGHT": weight}
    assert ("visrec.E016" not in ids(checks.check_visrec_settings())) == ok


def test_check_command_fails_on_misconfiguration(settings):
    settings.VISREC = {**settings.VISREC, "IMAGE_FIELD": "nope"}
    with pytest.raises(SystemCheckError, match="visrec.E003"):
        call_command("check")


def test_wrong_model_stops_manage_py_at_start_up(tmp_path):
    """A host that names a model that does not exist cannot start: the check error names it."""
    settings_file = tmp_path / "wrong_settings.py"
    settings_file.write_text(
        "from shop_demo.settings_test import *\nVISREC_PRODUCT_MODEL = 'catalog.Produkt'\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}", "DJANGO_SETTINGS_MODULE": "wrong_settings"},
        timeout=120,
    )
    assert result.returncode != 0
    assert "visrec.E001" in result.stderr
    assert "catalog.Produkt" in result.stderr
