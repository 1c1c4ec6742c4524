#!/usr/bin/env bash
# Brings up the demo shop at http://127.0.0.1:8000: installs, starts the embedded PostgreSQL
# and Redis, migrates, seeds the catalogue (once), starts a Celery worker and beat, then the
# web server. Ctrl-C stops everything. Options: DEMO_PRODUCTS (default 600), DEMO_SHOPPERS (300).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PY="${VISREC_VENV:-.venv}/bin/python"
export DJANGO_SETTINGS_MODULE=shop_demo.settings OMP_NUM_THREADS=1
"$PY" manage.py migrate --noinput
if ! "$PY" manage.py shell --no-imports -c "import sys; from shop_demo.catalog.models import Product; sys.exit(0 if Product.objects.exists() else 1)"; then
  # Simulated history ending today, so "trending" and recency weights see it as recent.
  "$PY" manage.py visrec_seed_demo --products "${DEMO_PRODUCTS:-600}" --shoppers "${DEMO_SHOPPERS:-300}" --end "$(date -u +%Y-%m-%dT00:00:00Z)"
  # First run only: what the nightly tasks would do, now, so every widget has data at once
  # (embed the catalogue, fine-tune the embedder on it, train "for you"). A failed step
  # leaves the demo running on what exists (the worker and beat take over).
  echo "==> first run: embedding the catalogue, fine-tuning, training 'for you' (a few minutes)"
  "$PY" manage.py visrec_index || echo "==> visrec_index failed; the worker will embed the images"
  "$PY" manage.py visrec_train_embedder || echo "==> fine-tuning failed; the pretrained backbone serves"
  "$PY" manage.py visrec_train_recommender || echo "==> 'for you' training failed; session and trending serve"
fi
if ! "$PY" manage.py shell --no-imports -c "import sys; from django.contrib.auth.models import User; sys.exit(0 if User.objects.filter(username='admin').exists() else 1)"; then
  DJANGO_SUPERUSER_PASSWORD=admin "$PY" manage.py createsuperuser --noinput --username admin --email admin@example.invalid
  echo "==> admin user: admin / admin"
fi
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; "$PY" -m shop_demo.devservices stop; }
trap cleanup EXIT INT TERM
"$PY" -m celery -A shop_demo worker -l info --concurrency 2 -Q visrec,visrec_extraction,visrec_training,default > var/worker.log 2>&1 &
pids+=($!)
"$PY" -m celery -A shop_demo beat -l info > var/beat.log 2>&1 &
pids+=($!)
# Embed the catalogue on the worker (extraction queue); the storefront works meanwhile.
"$PY" manage.py shell --no-imports -c "from visrec.tasks import index_catalogue; index_catalogue.delay()"
echo "==> worker and beat logs: var/worker.log var/beat.log (images are being embedded)"
echo "==> the shop: http://127.0.0.1:8000/   admin: http://127.0.0.1:8000/admin/"
"$PY" manage.py runserver --noreload 127.0.0.1:8000
