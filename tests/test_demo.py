"""The demo page in Chromium, as a newcomer opens it from their own machine: a city and a
search phrase picked on the page show what a visitor there sees, and record nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Page

from tests.browser import ARTIFACTS, chromium
from tests.conftest import BROWSER, start, stop

MOSCOW_FIRST = "+7 495 120-00-01"  # the first number of the demo's Moscow pool


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[str]:
    redis.Redis.from_url(valkey_url).flushall()
    process, base = start(tmp_path_factory.mktemp("demo"), SWAPLINE_REDIS_URL=valkey_url)
    yield base
    stop(process)


@pytest.fixture
def page(demo: str) -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(user_agent=BROWSER, viewport={"width": 960, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)  # a safety net only: each step waits for what it needs
        yield page
        context.close()


def decision(page: Page) -> Any:
    return page.evaluate("new Promise((resolve) => swapline.ready(resolve))")


def test_a_city_and_a_phrase_picked_on_the_demo_show_what_a_visitor_there_sees(page: Page, demo: str,
                                                                                   valkey_url: str) -> None:
    page.goto(f"{demo}/demo/")
    here = decision(page)
    assert here["geo"]["city"] is None and here["phone"] is None  # 127.0.0.1: GeoIP knows no city
    store = redis.Redis.from_url(valkey_url)
    keys = set(store.scan_iter("*"))

    page.select_option("select[name=swapline_preview_city]", "Казань")
    page.fill("input[name=utm_term]", "купить кондиционер")
    page.click("text=Show")
    page.wait_for_url("**swapline_preview_city=*")
    kazan = decision(page)
    assert kazan["preview"] is True and kazan["geo"]["city"] == "Казань"
    assert page.inner_text("h1.hero") == "Купить кондиционер в Казани"
    assert page.input_value("input[name=utm_term]") == "купить кондиционер"  # the choice stays in the form

    page.select_option("select[name=swapline_preview_city]", "Москва")
    page.click("text=Show")
    page.wait_for_url("**%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0**")  # Москва
    moscow = decision(page)
    assert page.inner_text("h1.hero") == "Купить кондиционер в Москве"
    assert moscow["phone"]["kind"] == "preview" and moscow["phone"]["international"] == MOSCOW_FIRST
    assert page.get_attribute("header a", "href") == "tel:+74951200001"  # the page's number, replaced
    shown = page.inner_text("#decision")
    for form in (MOSCOW_FIRST, "8 (495) 120-00-01", "+74951200001", "cta-wording"):
        assert form in shown
    assert set(store.scan_iter("*")) == keys  # previews lease nothing and count nothing
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-preview.png"), full_page=True)


def test_the_readme_shows_the_demo(demo: str) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "![The demo page" in readme and (Path(__file__).resolve().parent.parent / "docs" / "demo.png").exists()
