#!/usr/bin/env bash
# Runs the whole test suite on the embedded PostgreSQL+pgvector and Redis (or DATABASE_URL /
# CELERY_BROKER_URL when set): the demo host's suite (tests/, which also migrates a UUID host
# from zero), then the django-oscar host's (tests/hosts/oscar, its own settings). Extra
# arguments go to the demo suite's pytest only (scripts/test.sh -k checks -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY="${VISREC_VENV:-.venv}/bin/python"
if [ "$#" -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi
status=0
"$PY" -m pytest || status=$?
echo "==> the django-oscar host (tests/hosts/oscar)"
"$PY" -m pytest -c tests/hosts/oscar/pytest.ini tests/hosts/oscar || status=$?
exit $status
