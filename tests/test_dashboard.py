"""The dashboard in a real headless Chromium: sign-in, tables, the SVG chart, no external asset."""

from __future__ import annotations

import asyncio
import datetime
import signal
from pathlib import Path

import redis

from service.ledger import Ledger
from service.store import Store, connect
from tests.browser import ARTIFACTS, chromium
from tests.conftest import start
from tests.test_reports import SHOP

DAYS = 7


async def seven_days_of_data(url: str) -> None:
    """Visitors and forms for a week through the real ledger: b converts better than control."""
    store = Store(connect(url))
    ledger = Ledger(store)
    today = datetime.date.today()
    for offset in range(DAYS):
        day = (today - datetime.timedelta(days=DAYS - 1 - offset)).isoformat()
        for n in range(60):
            vid = f"dash-{offset}-{n:010d}"
            variant = "control" if n % 2 else "b"
            commands, _ = ledger.exposures("shop", vid, "/", day, {"hero": variant})
            await store.batcher.submit(*commands)
            if n % ((3 + offset % 3) if variant == "b" else (6 + offset % 4)) == 0:  # rates vary by day
                await ledger.convert("shop", vid, ["hero"], f"form-{vid}", ["form"], 0)
    await store.close()


def test_dashboard_signs_in_and_shows_tables_and_chart(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(SHOP)
    asyncio.run(seven_days_of_data(valkey_url))
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules))
    try:
        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            requested: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

            page.goto(f"{base}/dashboard/shop")
            page.fill("input[name=token]", "not-the-token")
            page.click("button[type=submit]")
            assert "not this site's report token" in page.locator("[role=alert]").inner_text()
            errors.clear()  # the browser logs the 401 it was meant to get

            page.fill("input[name=token]", "shop-report-token-0001")
            page.click("button[type=submit]")
            page.wait_for_selector("section.experiment")
            assert page.url == f"{base}/dashboard/shop"

            experiment = page.locator("section.experiment[data-experiment=hero]")
            assert experiment.locator("tr[data-variant]").count() == 2
            visitors = experiment.locator("tr[data-variant=b] td").nth(2).inner_text()
            assert visitors == str(DAYS * 30)
            assert "%" in experiment.locator("tr[data-variant=b] td").nth(6).inner_text()  # the lift
            lines = experiment.locator("svg.chart polyline")
            assert lines.count() == 2
            for index in range(2):
                assert len(lines.nth(index).get_attribute("points").split()) == DAYS
            assert page.locator("#pages td").first.inner_text() == "/"

            (cookie,) = context.cookies()
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard/shop"
            assert "shop-report-token-0001" not in cookie["value"]

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert all(url.startswith(base) for url in requested), requested  # no CDN, no external asset
            assert errors == []
    finally:
        service.send_signal(signal.SIGINT)
        service.communicate(timeout=20)


def test_dashboard_without_a_session_shows_the_sign_in(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    import httpx

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(SHOP)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules))
    try:
        anonymous = httpx.get(f"{base}/dashboard/shop")
        bearer = httpx.get(f"{base}/dashboard/shop", headers={"authorization": "Bearer shop-report-token-0001"})
        wrong = httpx.get(f"{base}/dashboard/shop", headers={"authorization": "Bearer nope"})
        forged = httpx.get(f"{base}/dashboard/shop", cookies={"swapline_session": "eyJ4IjoxfQ.AAAA"})
    finally:
        service.send_signal(signal.SIGINT)
        service.communicate(timeout=20)
    assert anonymous.status_code == 200 and 'name="token"' in anonymous.text and "hero" not in anonymous.text
    assert bearer.status_code == 200 and 'id="pages"' in bearer.text
    assert wrong.status_code == 401
    assert 'name="token"' in forged.text
