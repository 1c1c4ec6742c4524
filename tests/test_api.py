"""REST API: similar products with filters as query parameters, photo search uploads, schema."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from .conftest import ROOT, make_image_bytes
from .factories import ProductFactory
from .test_similar import catalogue, make_version  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db
URL = "/api/visrec/products/{}/similar/"


def test_similar_endpoint_returns_cards(client, catalogue):
    p = catalogue
    response = client.get(URL.format(p[2].pk), {"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["product"] == p[2].pk and body["model_version"] == "planted@1"
    assert [r["id"] for r in body["results"]] == [p[1].pk, p[0].pk]
    first = body["results"][0]
    assert set(first) == {"id", "name", "url", "price", "price_display", "image_url", "alt", "score"}
    assert 0 < first["score"] <= 1


def version_queries(queries) -> int:
    return sum("visrec_modelversion" in q["sql"] for q in queries.captured_queries)


def test_similar_endpoint_queries_the_served_version_once_per_process_and_a_cached_list_not_at_all(
        client, catalogue):
    p = catalogue
    with CaptureQueriesContext(connection) as first:
        assert client.get(URL.format(p[2].pk), {"limit": 2}).status_code == 200
    assert version_queries(first) == 1
    assert len(first.captured_queries) == 3  # served version, nearest products, product cards
    with CaptureQueriesContext(connection) as other:
        assert client.get(URL.format(p[5].pk), {"limit": 2}).status_code == 200
    assert version_queries(other) == 0 and sum("<=>" in q["sql"] for q in other.captured_queries) == 1
    with CaptureQueriesContext(connection) as cached:
        again = client.get(URL.format(p[2].pk), {"limit": 2}).json()
    assert len(cached.captured_queries) == 0  # the list and its product cards come from the cache
    assert again["model_version"] == "planted@1" and [r["id"] for r in again["results"]] == [p[1].pk, p[0].pk]


def test_switched_version_is_served_at_once(client, catalogue, django_capture_on_commit_callbacks):
    p = catalogue
    assert client.get(URL.format(p[2].pk)).json()["model_version"] == "planted@1"
    with django_capture_on_commit_callbacks(execute=True):
        make_version("planted@2")  # nothing embedded under it yet: same-category fallback
    body = client.get(URL.format(p[2].pk), {"limit": 2}).json()
    assert body["model_version"] == "planted@2" and all(r["score"] == 0 for r in body["results"])


def test_deleted_product_is_404_even_when_its_list_was_cached(client, catalogue, django_capture_on_commit_callbacks):
    from visrec.services.serving.generation import bump_embeddings_generation

    p = catalogue
    for _, callback, _ in connection.run_on_commit:  # the fixture's version switch, as if committed
        callback()
    connection.run_on_commit.clear()
    gone, also_gone, query = p[2].pk, p[1].pk, p[0].pk  # delete() sets the instances' pk to None
    assert client.get(URL.format(gone)).status_code == 200
    assert also_gone in [r["id"] for r in client.get(URL.format(query)).json()["results"]]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        p[2].delete()
        p[1].delete()
    assert sum(c is bump_embeddings_generation for c in callbacks) == 1  # one bump per transaction
    response = client.get(URL.format(gone))
    assert response.status_code == 404 and "detail" in response.json()
    assert also_gone not in [r["id"] for r in client.get(URL.format(query)).json()["results"]]


def test_similar_endpoint_filters(client, catalogue):
    p = catalogue
    body = client.get(URL.format(p[10].pk), {"limit": 2, "category": "other"}).json()
    assert {r["id"] for r in body["results"]} == {p[9].pk, p[11].pk}
    body = client.get(URL.format(p[10].pk), {"min_price": "25", "max_price": "26", "in_stock": "false"}).json()
    assert {r["id"] for r in body["results"]} == {p[15].pk, p[16].pk}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": 1000}, "limit"),
        ({"category": "cheaper"}, "category"),
        ({"min_price": "30", "max_price": "10"}, "min_price"),
        ({"min_price": "-1"}, "min_price"),
        ({"diversity": "2"}, "diversity"),
        ({"in_stock": "maybe"}, "in_stock"),
    ],
)
def test_invalid_parameters_get_400_with_message(client, catalogue, params, field):
    response = client.get(URL.format(catalogue[0].pk), params)
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"] and body["detail"].startswith(f"invalid request: {field}: ")


def test_unknown_product_is_404(client, catalogue):
    assert client.get(URL.format(999999)).status_code == 404


def test_search_rejects_bad_uploads_with_400(client, catalogue, settings):
    url = "/api/visrec/search/"
    assert client.post(url, {}).status_code == 400
    assert "image" in client.post(url, {}).json()["errors"]
    broken = io.BytesIO(b"definitely not an image")
    broken.name = "x.jpg"
    response = client.post(url, {"image": broken})
    assert response.status_code == 400 and "image rejected" in response.json()["detail"]
    settings.VISREC = {**settings.VISREC, "MAX_UPLOAD_BYTES": 200}
    big = io.BytesIO(make_image_bytes(size=(300, 300)))
    big.name = "big.jpg"
    response = client.post(url, {"image": big})
    assert response.status_code == 400 and "limit" in str(response.json())
    url_only = client.post(url, {"image_url": "http://169.254.169.254/latest"})
    assert url_only.status_code == 400  # no URL fetching: an image file is required


def test_openapi_schema_is_valid(client, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    schema = (tmp_path / "schema.yml").read_text()
    assert "/api/visrec/products/{product_id}/similar/" in schema
    assert "/api/visrec/search/" in schema
    assert client.get("/api/visrec/docs/").status_code == 200
    assert client.get("/api/visrec/schema/").status_code == 200


def test_product_without_vector_gets_fallback(client, catalogue):
    newcomer = ProductFactory(category=catalogue[0].category, stock=3)
    body = client.get(URL.format(newcomer.pk), {"limit": 3}).json()
    assert len(body["results"]) == 3 and all(r["score"] == 0 for r in body["results"])


@pytest.mark.parametrize("price", [Decimal("19.99"), Decimal("5"), 7.125, None])
def test_card_rows_are_what_the_schema_serializer_writes(price):
    from visrec.api.serializers import ProductCardSerializer, card_rows

    cards = [{"pk": 3, "name": "Red mug", "url": "/p/3/", "price": price, "price_display": "£19.99" if price else "",
              "image_url": "/m/3.jpg", "alt": "a mug",
              "score": 0.875}]
    assert card_rows(cards) == ProductCardSerializer(cards, many=True).data


def test_a_query_string_valid_once_is_checked_again_after_a_settings_change(client, catalogue, settings):
    """Valid query strings are remembered per process; a setting that makes one invalid still applies."""
    p = catalogue
    params = {"min_price": "25", "max_price": "26", "in_stock": "false"}
    assert client.get(URL.format(p[10].pk), params).status_code == 200
    assert client.get(URL.format(p[10].pk), params).status_code == 200
    settings.VISREC = {**settings.VISREC, "PRICE_FIELD": ""}
    response = client.get(URL.format(p[10].pk), params)
    assert response.status_code == 400 and "price filters are off" in response.json()["errors"]["min_price"][0]
    assert client.get(URL.format(p[10].pk), {"limit": 0}).status_code == 400  # invalid ones every time
    assert client.get(URL.format(p[10].pk), {"limit": 0}).status_code == 400


def test_parameters_the_api_does_not_read_do_not_make_new_query_strings(client, catalogue):
    from visrec.api import serializers

    serializers._PARSED.clear()
    for n in range(5):
        assert client.get(URL.format(catalogue[0].pk), {"limit": 3, "utm_source": f"mail{n}", "_": n}).status_code == 200
    assert client.get(URL.format(catalogue[0].pk), {"limit": 3, "in_stock": "false"}).status_code == 200
    assert len(serializers._PARSED) == 2


PROBE_SCHEMA = """
import json, re
from django.test import Client
client = Client()
schema = client.get("/api/visrec/schema/", {"format": "json"})
page = client.get("/api/visrec/docs/")
html = page.content.decode()
assets = re.findall(r'(?:href|src)="([^"]+)"', html)
print(json.dumps({
    "schema": schema.status_code, "paths": sorted(schema.json()["paths"]) if schema.status_code == 200 else [],
    "product_id": [p for p in schema.json()["paths"]["/api/visrec/products/{product_id}/similar/"]["get"]["parameters"]
                   if p["in"] == "path"][0]["schema"] if schema.status_code == 200 else None,
    "docs": page.status_code, "assets": assets,
    "asset_status": [client.get(a).status_code for a in assets],
    "escape": client.get("/api/visrec/docs/assets/..%2F..%2Fsettings.py").status_code,
}))
"""


def test_schema_and_docs_need_no_rest_framework_settings_and_no_cdn():
    """A host without REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] (DRF's own class then) and without
    drf-spectacular-sidecar among its apps still gets visrec's schema and a Swagger page
    whose every asset comes from this site (a process of its own: the schema class is read
    when the views are imported)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings_bare_rest"}
    result = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", PROBE_SCHEMA], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["schema"] == 200
    assert found["paths"] == ["/api/visrec/events/", "/api/visrec/for-you/",
                              "/api/visrec/products/{product_id}/similar/", "/api/visrec/search/"]
    assert found["product_id"]["type"] == "integer"  # the host's primary key type
    assert found["docs"] == 200 and found["assets"], found
    assert all(a.startswith("/api/visrec/docs/assets/") for a in found["assets"]), found["assets"]
    assert set(found["asset_status"]) == {200} and found["escape"] == 404


@pytest.mark.parametrize("product_id", ["9223372036854775808", "99999999999999999999999", "abc", "-1"])
def test_a_product_id_that_cannot_be_a_product_is_404(client, product_id):
    response = client.get(f"/api/visrec/products/{product_id}/similar/")
    assert response.status_code == 404
