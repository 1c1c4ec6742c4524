"""`pip install .` ships the visrec package alone, with templates, static files and migrations."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from .conftest import ROOT


def test_wheel_contains_visrec_only(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300,
    )
    wheel = next(tmp_path.glob("visrec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("visrec-")}
    assert top_level == {"visrec"}
    assert "visrec/migrations/0001_initial.py" in names
    assert "visrec/apps.py" in names
    assert any(n.startswith("visrec/templates/visrec/") for n in names)
    assert any(n.startswith("visrec/static/visrec/") for n in names)
    assert not any("shop_demo" in n or n.startswith("tests/") for n in names)
