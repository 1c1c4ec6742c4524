"""A minimal django-oscar shop with visrec installed as the oscar recipe in the README says.

Run its suite from the repository root with
``.venv/bin/python -m pytest -c tests/hosts/oscar/pytest.ini tests/hosts/oscar`` (``scripts/test.sh`` does).
"""
from .celery import app as celery_app

__all__ = ["celery_app"]
