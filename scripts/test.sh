#!/usr/bin/env bash
# Runs the whole test suite on the embedded PostgreSQL+pgvector and Redis (or DATABASE_URL /
# CELERY_BROKER_URL when set). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${VISREC_VENV:-.venv}/bin/python" -m pytest "$@"
