"""visrec's migrations: complete for the configured host models, and runnable from zero."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from .conftest import ROOT


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_first_migration_creates_the_vector_extension_first():
    from importlib import import_module

    from pgvector.django import VectorExtension

    migration = import_module("visrec.migrations.0001_initial").Migration
    assert isinstance(migration.operations[0], VectorExtension)
    assert all(dep[1] == "__first__" for dep in migration.dependencies)


@pytest.fixture
def empty_database():
    """A brand-new empty database on the same server, dropped afterwards."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    name = f"visrec_fresh_{uuid.uuid4().hex[:8]}"
    admin = {**params, "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield name, params
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.django_db
def test_migrate_from_zero_on_an_empty_database(empty_database):
    name, params = empty_database
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop_demo.settings_test", "VISREC_TEST_DATABASE_NAME": name}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Applying visrec.0001_initial... OK" in result.stdout
    with psycopg.connect(**{**params, "dbname": name}) as conn:
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'visrec_%'"
        )}
        catalog_tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'catalog_%'"
        )}
    assert ext is not None
    assert tables == {
        "visrec_imageembedding", "visrec_productembedding", "visrec_interactionevent", "visrec_modelversion",
        "visrec_recommenderitemvector", "visrec_shoppervector", "visrec_privacyrelease",
        "visrec_randomizedresponsedomain", "visrec_categoryreport", "visrec_pendingwork", "visrec_taskrun",
        "visrec_experiment",
    }
    assert catalog_tables == {"catalog_category", "catalog_product", "catalog_productimage"}


def test_no_migration_names_a_host_app():
    """visrec's migrations reach the host's models only through the settings (swappable)."""
    import ast

    for path in sorted((ROOT / "visrec" / "migrations").glob("0*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "to" and isinstance(node.value, ast.Constant):
                assert node.value.value.startswith("visrec."), f"{path.name}: to={node.value.value!r}"
            if isinstance(node, ast.Tuple) and len(node.elts) == 2 and all(isinstance(e, ast.Constant) for e in node.elts):
                app = node.elts[0].value
                if isinstance(app, str) and isinstance(node.elts[1].value, str) and node.elts[1].value[:4].isdigit():
                    assert app == "visrec", f"{path.name} depends on {app!r}"


UUID_HOST_PROBE = """
import io, json
from PIL import Image
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import Client
from tests.hosts.uuidshop.store.models import Item, Picture
from visrec.models import PendingWork, ProductEmbedding
from visrec.services.serving.similar import similar_products

def picture(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name="p.png")

items = [Item.objects.create(title=f"item {i}", kind="mugs" if i < 3 else "lamps") for i in range(5)]
for i, item in enumerate(items):
    Picture.objects.create(item=item, file=picture((50 * i, 200 - 40 * i, 90)))
pending = PendingWork.objects.count()
call_command("visrec_index", verbosity=0)
client = Client()
api = client.get(f"/api/visrec/products/{items[0].pk}/similar/", {"in_stock": "false", "limit": 3})
print(json.dumps({
    "pending_before": pending, "pending_after": PendingWork.objects.count(),
    "vectors": ProductEmbedding.objects.count(),
    "similar": [str(p) for p, _ in similar_products(items[0].pk, k=3)],
    "items": [str(i.pk) for i in items],
    "api": api.status_code, "api_ids": [r["id"] for r in api.json().get("results", [])],
    "not_a_uuid": client.get("/api/visrec/products/12/similar/").status_code,
}))
"""


@pytest.mark.django_db
def test_a_host_with_uuid_keys_and_another_app_label_migrates_from_zero_and_back(empty_database):
    name, params = empty_database
    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.hosts.uuidshop.settings", "VISREC_TEST_DATABASE_NAME": name,
           "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # no broker: saves must not mind
           "CACHE_URL": settings.CACHES["default"]["LOCATION"]}

    def manage(*args, check=True):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=600)
        assert not check or result.returncode == 0, result.stderr[-3000:]
        return result

    manage("migrate", "--noinput")
    with psycopg.connect(**{**params, "dbname": name}) as conn:
        types = dict(conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_name LIKE 'visrec_%%' AND column_name IN ('product_id', 'image_id')").fetchall())
    assert types == {
        "visrec_imageembedding.product_id": "uuid", "visrec_imageembedding.image_id": "uuid",
        "visrec_productembedding.product_id": "uuid", "visrec_interactionevent.product_id": "uuid",
        "visrec_recommenderitemvector.product_id": "uuid", "visrec_pendingwork.product_id": "uuid",
        "visrec_pendingwork.image_id": "uuid",
    }
    found = json.loads(manage("shell", "--no-imports", "-c", UUID_HOST_PROBE).stdout.strip().splitlines()[-1])
    assert found["pending_before"] == 5 and found["pending_after"] == 0 and found["vectors"] == 5
    assert len(found["similar"]) == 3 and found["items"][0] not in found["similar"]
    assert set(found["similar"]) <= set(found["items"][1:])
    assert found["api"] == 200 and found["api_ids"] == found["similar"]
    assert found["not_a_uuid"] == 404
    manage("migrate", "visrec", "zero", "--noinput")
    with psycopg.connect(**{**params, "dbname": name}) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'visrec_%%'").fetchone()[0]
    assert left == 0
