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
    assert "visrec/static/visrec/visrec.js" in names and "visrec/static/visrec/visrec-widgets.js" in names
    assert "visrec/contrib/oscar/templates/visrec/oscar/product_widgets.html" in names
    assert not any("shop_demo" in n or n.startswith("tests/") for n in names)


def test_installed_package_imports_without_the_demo(tmp_path):
    """The wheel installed on its own: `visrec` imports from site-packages, `shop_demo` does not exist."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300,
    )
    wheel = next(tmp_path.glob("visrec-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    probe = (
        "import importlib.util, visrec, visrec.imaging, visrec.backbones;"
        "print(visrec.__file__);"
        "print(importlib.util.find_spec('shop_demo'))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    path, spec = result.stdout.split()
    assert path.startswith(str(target))
    assert spec == "None"
