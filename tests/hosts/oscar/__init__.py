"""A minimal django-oscar shop with visrec installed as the oscar recipe in the README says.

Run its suite with ``scripts/test.sh`` (or ``.venv/bin/python -m pytest -c tests/hosts/oscar/pytest.ini``).
"""
