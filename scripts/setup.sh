#!/usr/bin/env bash
# Creates .venv and installs requirements.txt; does nothing when they are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VISREC_VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
want="$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$want" ]; then
  echo "==> installing requirements into $VENV (first time: several minutes)"
  # No pip cache: where torch is not on local disk it is a CUDA build of several GB, and a
  # cached copy beside the installed one can fill a small CI disk.
  export PIP_NO_CACHE_DIR=1
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
  "$VENV/bin/pip" install -q -r requirements.txt
  echo "$want" > "$VENV/.installed"
fi
# Browser tests drive Debian's Chromium with Playwright (never `playwright install`).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing Debian's chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "==> could not install chromium; browser tests will fail in CI, skip elsewhere"
fi
mkdir -p var
