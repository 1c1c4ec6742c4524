"""Screenshots of the catalogue intelligence admin pages, for docs/admin-catalogue.md.

Against a running shop (``python manage.py runserver``) with an admin user::

    .venv/bin/python scripts/screenshots_admin_catalogue.py --url http://127.0.0.1:8000 --user admin --password admin

Writes docs/admin-catalogue-{overview,suggestions,duplicates,map}.png with Debian's Chromium
(``VISREC_CHROMIUM``, default /usr/bin/chromium) driven by Playwright.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGES = {"overview": "", "suggestions": "suggestions/", "duplicates": "duplicates/?threshold=0.95", "map": "map/"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("VISREC_CHROMIUM", "/usr/bin/chromium"),
                                             headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{args.url}/admin/login/?next=/admin/")
        page.fill("#id_username", args.user)
        page.fill("#id_password", args.password)
        with page.expect_navigation():
            page.click("input[type=submit]")
        for name, path in PAGES.items():
            page.goto(f"{args.url}/admin/visrec/catalogueintelligence/{path}")
            page.wait_for_load_state("networkidle")
            target = args.out / f"admin-catalogue-{name}.png"
            page.screenshot(path=str(target), full_page=name != "duplicates")
            print(target)
        browser.close()


if __name__ == "__main__":
    main()
