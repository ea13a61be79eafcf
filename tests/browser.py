"""Headless Chromium for browser tests: Debian's package, driven by playwright, never downloaded.

A missing browser fails the test instead of skipping it: `.ci/run` installs `chromium`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# The texts of a page's charts that their SVG cuts off, in part or whole (a "+" clipped to a "-").
CLIPPED = """(charts) => charts.flatMap((chart) => [...chart.querySelectorAll('text')].filter((text) => {
  const box = text.getBBox();
  return box.x < 0 || box.x + box.width > chart.viewBox.baseVal.width;
}).map((text) => text.textContent))"""


@contextmanager
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def dashboard(browser: Browser, base: str, site: str, token: str, locale: str = "en-US") -> Page:
    """A page signed in to `site`'s dashboard with its report token, as an analyst signs in."""
    page = browser.new_page(viewport={"width": 1200, "height": 900}, locale=locale)
    page.set_default_timeout(30_000)
    page.goto(f"{base}/dashboard/{site}")
    page.fill("input[name=token]", token)
    page.press("input[name=token]", "Enter")  # as a reader signs in
    page.wait_for_url(f"{base}/dashboard/{site}")
    return page
