"""A real headless Chromium (Debian's `chromium`, installed by `make`) driven by Playwright, for the
console's browser tests and its first-paint benchmark."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The system Chromium; `make` installs Debian's package (`apt-get install chromium`)."""
    given = os.environ.get("REFINERY_CHROMIUM")
    if given:
        return given
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium found: run `make browser` (installs Debian's chromium) or set REFINERY_CHROMIUM")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        # --no-sandbox: the tests run as root in a container, where Chromium's sandbox cannot start.
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/")
    page.fill("#api-key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#top:not([hidden])")


def screenshot(page: Page, name: str, tmp_dir: Path) -> Path:
    """Saves a full-page screenshot under REFINERY_SCREENSHOTS (the README's images) or `tmp_dir`."""
    out = Path(os.environ.get("REFINERY_SCREENSHOTS") or tmp_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
