#!/usr/bin/env bash
# Runs the whole test suite on the embedded PostgreSQL+pgvector and Redis (or DATABASE_URL /
# CELERY_BROKER_URL when set): the demo host's suite (tests/, which also migrates a UUID host
# from zero), then the django-oscar host's (tests/hosts/oscar, its own settings). Extra
# arguments go to the demo suite's pytest only (scripts/test.sh -k checks -x).
# Servers it started are stopped at the end, and the files its workers wrote under var/ removed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY="${VISREC_VENV:-.venv}/bin/python"
was_running="$("$PY" -m shop_demo.devservices status 2>/dev/null || true)"
cleanup() {
  rm -rf var/test-worker-media var/oscar-media var/test-media var/test-worker-*.log
  if [ -z "${DATABASE_URL:-}${CELERY_BROKER_URL:-}" ] && [[ "$was_running" != *"redis running: True"* ]]; then
    "$PY" -m shop_demo.devservices stop >/dev/null 2>&1 || true   # nothing else was using them
  fi
}
trap cleanup EXIT
if [ "$#" -gt 0 ]; then
  "$PY" -m pytest "$@"
  exit $?
fi
status=0
"$PY" -m pytest || status=$?
echo "==> the django-oscar host (tests/hosts/oscar)"
"$PY" -m pytest -c tests/hosts/oscar/pytest.ini tests/hosts/oscar || status=$?
exit $status
