"""The browser walkthrough of a running demo: headless Chromium (Debian's `chromium`, installed by `make browser`)
driven by Playwright through executable_path. Each step opens a page as a person would, screenshots it and
returns what it shows, for the demo test to compare with the run's report.

Screenshots go to the directory in SCREENSHOTS (`make screenshots` sets docs/images), else the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 60_000  # the UI's first load compiles nothing, but a loaded 2-core machine is slow


def chromium() -> str:
    """Debian's chromium (or CHROMIUM): `make browser` installs it."""
    found = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    if not found:
        raise AssertionError("chromium is not on PATH: run `make browser` (apt-get install chromium)")
    return found


def screenshot_dir(default: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, color_scheme="light")
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def log_in(page: Any, api: str, user: str, password: str) -> None:
    """Sign in through Airflow's login form, as a person does."""
    page.goto(f"{api}/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def run_path(run_id: str) -> str:
    return f"dags/patch_cycle/runs/{urllib.parse.quote(run_id, safe='')}"


def shot(page: Any, folder: Path, name: str, full_page: bool = False) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
