"""Real Chromium for browser tests: Debian's /usr/bin/chromium driven by Playwright (never
``playwright install``), headless, with no network besides the test server."""
from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager

import pytest

CHROMIUM = os.environ.get("VISREC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page():
    """A fresh page of a headless Chromium; the test fails (not skips) in CI when it is missing."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup.sh installs it)")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_context().new_page()
            yield page
        finally:
            browser.close()
            from django.db import connections

            connections.close_all()  # opened in Playwright's loop: pytest-django would not close them


def wait_for(condition, timeout: float = 10.0):
    """``condition()`` once it is truthy (polled every 0.1 s), or its last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()
