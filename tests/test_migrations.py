"""visrec's migrations: complete for the configured host models, and runnable from zero."""
from __future__ import annotations

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
        "visrec_randomizedresponsedomain", "visrec_categoryreport", "visrec_pendingwork",
    }
    assert catalog_tables == {"catalog_category", "catalog_product", "catalog_productimage"}
