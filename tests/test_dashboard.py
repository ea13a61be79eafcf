"""The dashboard in a real headless Chromium: sign-in, tables, the SVG charts, no external asset."""

from __future__ import annotations

import asyncio
import datetime
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Page
from starlette.testclient import TestClient

from service.analytics import charts, stats
from service.app import create_app
from service.tracking.ledger import Ledger
from service.tracking.store import Store, connect
from tests.browser import ARTIFACTS, CLIPPED, chromium
from tests.conftest import make_settings, start, stop
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


def a_week_of_the_shop(tmp_path: Path, valkey_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """The shop's service, started on a week of visitors and forms."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(SHOP)
    asyncio.run(seven_days_of_data(valkey_url))
    return start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules))


def test_dashboard_signs_in_and_shows_tables_and_chart(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    service, base = a_week_of_the_shop(tmp_path, valkey_url)
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
            page.press("input[name=token]", "Enter")
            assert "not this site's report token" in page.locator("[role=alert]").inner_text()
            errors.clear()  # the browser logs the 401 it was meant to get

            page.fill("input[name=token]", "shop-report-token-0001")
            page.press("input[name=token]", "Enter")
            page.wait_for_selector("section.experiment")
            assert page.url == f"{base}/dashboard/shop"

            experiment = page.locator("section.experiment[data-experiment=hero]")
            assert experiment.locator("tr[data-variant]").count() == 2
            visitors = experiment.locator("tr[data-variant=b] td").nth(2).inner_text()
            assert visitors == str(DAYS * 30)
            assert re.fullmatch(r"\+\d+\.\d%", experiment.locator("tr[data-variant=b] td").nth(6).inner_text())  # lift
            headings = experiment.locator("th").all_inner_texts()  # sequential figures unless asked otherwise
            assert "p-value (always valid)" in headings and "Chance to beat control" not in headings
            conversion, lift = experiment.locator("figure.chart").all()
            assert conversion.locator("polyline").count() == 2 and lift.locator("polyline").count() == 1
            for line in conversion.locator("polyline").all():
                assert len(line.get_attribute("points").split()) == DAYS
            # On the first day the control converted nobody (n odd and a multiple of 6): no lift yet.
            assert len(lift.locator("polyline").get_attribute("points").split()) == DAYS - 1
            assert conversion.locator("line.interval").count() == 2 * DAYS  # each dot's interval
            assert conversion.locator("polygon.band").count() == 2 and lift.locator("polygon.band").count() == 1
            lift_ticks = lift.locator("text[text-anchor=end]").evaluate_all("(t) => t.map((tick) => tick.textContent)")
            assert "0%" in lift_ticks and all(re.fullmatch(r"[+−]\d+(\.\d+)?%|0%", tick) for tick in lift_ticks)
            assert "+1000%" in lift_ticks and page.locator("svg.chart").evaluate_all(CLIPPED) == []
            assert page.locator("#pages td").first.inner_text() == "/"
            assert page.locator("#pages thead th").all_inner_texts()[2].startswith("Visitors who")  # not calls: callers

            (cookie,) = context.cookies()
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard/shop"
            assert "shop-report-token-0001" not in cookie["value"]

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            experiment.get_by_role("link", name="fixed-horizon figures").click()  # the classic figures, one click away
            page.wait_for_url("**test=fixed**")
            headings = page.locator("section.experiment[data-experiment=hero] th").all_inner_texts()
            assert "Chance to beat control" in headings and "p-value" in headings
            assert page.locator("select[name=test]").input_value() == "fixed"

            today = datetime.date.today().isoformat()  # one day of data: a dot and its interval per variant
            page.goto(f"{base}/dashboard/shop?from={today}&to={today}")
            one_day = page.locator("section.experiment[data-experiment=hero] figure.chart").first
            assert one_day.locator("line.interval").count() == 2 and one_day.locator("circle").count() == 2
            ticks = one_day.locator("text[text-anchor=end]").evaluate_all("(ticks) => ticks.map((t) => t.textContent)")
            assert ticks[0] == "0%" and all(re.fullmatch(r"\d+(\.5)?%", tick) for tick in ticks), ticks
            page.screenshot(path=str(ARTIFACTS / "dashboard-one-day.png"), full_page=True)
            assert all(url.startswith(base) for url in requested), requested  # no CDN, no external asset
            assert errors == []

            page.get_by_role("button", name="Sign out").click()  # a shared computer: the session ends here
            page.wait_for_selector("input[name=token]")
            assert page.url == f"{base}/dashboard/shop" and context.cookies() == []
            page.goto(f"{base}/dashboard/shop/calls")
            assert page.locator("input[name=token]").count() == 1  # every tab asks again
            page.fill("input[name=token]", "not-the-token")
            page.press("input[name=token]", "Enter")
            page.fill("input[name=token]", "shop-report-token-0001")
            page.press("input[name=token]", "Enter")
            page.wait_for_selector("#calls")
            assert page.url == f"{base}/dashboard/shop/calls"  # signed in, back on the tab asked for
    finally:
        stop(service)


def test_dashboard_without_a_session_shows_the_sign_in(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
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
        stop(service)
    assert anonymous.status_code == 200 and 'name="token"' in anonymous.text and "hero" not in anonymous.text
    assert bearer.status_code == 200 and 'id="pages"' in bearer.text
    assert wrong.status_code == 401
    assert 'name="token"' in forged.text


def signed_in(client: TestClient, **headers: str) -> httpx.Response:
    return client.post("/dashboard/shop/login", data={"token": "shop-report-token-0001"}, headers=headers,
                       follow_redirects=False)


def test_the_session_cookie_is_secure_behind_tls(valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    (rules_dir / "shop.yaml").write_text(SHOP)
    app = create_app(make_settings(valkey_url, rules_dir))  # 127.0.0.1 is a trusted proxy
    with TestClient(app, client=("127.0.0.1", 1)) as proxied, TestClient(app, client=("203.0.113.5", 1)) as direct:
        behind_tls = signed_in(proxied, **{"x-forwarded-proto": "https"})
        plain = signed_in(proxied)
        forged = signed_in(direct, **{"x-forwarded-proto": "https"})  # not a proxy of ours: not believed
    assert behind_tls.status_code == 303 and "secure" in behind_tls.headers["set-cookie"].lower()
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "secure" not in forged.headers["set-cookie"].lower()


def test_a_new_report_token_ends_the_old_sessions(valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    (rules_dir / "shop.yaml").write_text(SHOP)
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as client:
        cookie = signed_in(client).cookies["swapline_session"]
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as same_rules:
        same_rules.cookies.set("swapline_session", cookie, path="/dashboard/shop")
        kept = same_rules.get("/dashboard/shop")
    (rules_dir / "shop.yaml").write_text(SHOP.replace("shop-report-token-0001", "shop-report-token-0002"))
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as rotated:
        rotated.cookies.set("swapline_session", cookie, path="/dashboard/shop")
        ended = rotated.get("/dashboard/shop")
    assert 'id="pages"' in kept.text  # the session outlives a restart...
    assert 'name="token"' in ended.text and 'id="pages"' not in ended.text  # ...not a new token


def test_a_reader_may_choose_the_other_language_over_their_browsers(valkey_url: str, rules_dir: Path,
                                                                    store: redis.Redis) -> None:
    """An owner whose laptop speaks English reads Russian: the button on every page, the sign-in
    page's too, keeps the choice in this browser."""
    (rules_dir / "shop.yaml").write_text(SHOP)
    english = {"accept-language": "en-US,en;q=0.9"}
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as client:
        assert 'name="language" value="ru"' in client.get("/dashboard/shop", headers=english).text
        chose = client.post("/dashboard/shop/language", data={"language": "ru", "back": "/calls"}, headers=english,
                            follow_redirects=False)
        assert chose.status_code == 303 and chose.headers["location"] == "/dashboard/shop/calls"
        assert "Вход в отчёты" in client.get("/dashboard/shop", headers=english).text
        signed_in(client)
        calls = client.get("/dashboard/shop/calls", headers=english).text
        assert "<strong>Звонки</strong>" in calls and 'name="language" value="en"' in calls
        refused = client.post("/dashboard/shop/language", data={"language": "de", "back": "//evil.example"},
                              follow_redirects=False)
        assert refused.headers["location"] == "/dashboard/shop" and "set-cookie" not in refused.headers
        client.post("/dashboard/shop/language", data={"language": "en"})
        assert "<strong>Experiments</strong>" in client.get("/dashboard/shop", headers={"accept-language": "ru"}).text
        # A tab's filters go with the reader to the other language, and only as a query of the tab.
        filtered = client.get("/dashboard/shop/calls", params={"number": "+7 495 120-00-01", "caller": "4567"}).text
        assert '<input type="hidden" name="query" value="number=%2B7+495+120-00-01&amp;caller=4567">' in filtered
        kept = client.post("/dashboard/shop/language", data={"language": "ru", "back": "/calls",
                                                             "query": "number=%2B7+495+120-00-01&caller=4567"},
                           follow_redirects=False)
        assert kept.headers["location"] == "/dashboard/shop/calls?number=%2B7+495+120-00-01&caller=4567"
        odd = client.post("/dashboard/shop/language", data={"language": "ru", "back": "/calls",
                                                            "query": "a=1#x/../../evil\r\nSet-Cookie: x=1"},
                          follow_redirects=False)
        assert odd.headers["location"].startswith("/dashboard/shop/calls?a=") and "\r" not in odd.headers["location"]


def test_dashboard_pages_may_not_be_framed_or_run_scripts(valkey_url: str, rules_dir: Path,
                                                         store: redis.Redis) -> None:
    (rules_dir / "shop.yaml").write_text(SHOP)
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as client:
        pages = [client.get("/dashboard/shop"),
                 client.get("/dashboard/shop", headers={"authorization": "Bearer shop-report-token-0001"}),
                 client.post("/dashboard/shop/login", data={"token": "wrong"})]
    for page in pages:
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "default-src 'none'" in page.headers["content-security-policy"]  # no script, no frame, no font...
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"


def test_a_tab_asked_for_what_it_refuses_says_why_as_a_page(valkey_url: str, rules_dir: Path,
                                                             store: redis.Redis) -> None:
    """An analyst who types `?limit=0` into the address sees the tab say why, not a JSON error."""
    (rules_dir / "shop.yaml").write_text(SHOP)
    signed_in = {"authorization": "Bearer shop-report-token-0001"}
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as client:
        for address, tab, why in (("/dashboard/shop?limit=0", "Experiments", "limit must be a whole number"),
                                  ("/dashboard/shop?test=bogus", "Experiments", "test must be one of"),
                                  ("/dashboard/shop/sources?by=weather", "Sources", "by must be one or two of"),
                                  ("/dashboard/shop/sources?from=2026-12-04&to=2026-12-01", "Sources", "from must"),
                                  ("/dashboard/shop/calls?qualified=maybe", "Calls", "qualified must be"),
                                  ("/dashboard/shop/calls?from=2026-12-04&to=2026-12-01", "Calls", "from must")):
            page = client.get(address, headers=signed_in)
            assert page.status_code == 400 and page.headers["content-type"].startswith("text/html"), address
            assert f"<strong>{tab}</strong>" in page.text and why in page.text, address
            assert page.headers["x-frame-options"] == "DENY"
        russian = {**signed_in, "accept-language": "ru"}  # what the tabs' own fields may ask, in the reader's words
        for address, why in (("?from=2026-12-04&to=2026-12-01", "дата «С» не может быть позже даты «По»."),
                             ("/sources?from=2026-12-04&to=2026-12-01", "дата «С» не может быть позже даты «По», а "
                                                                         "между ними — не больше 400 дн."),
                             ("/calls?caller=abc", "укажите номер звонившего целиком или его последние четыре цифры"),
                             ("/calls?from=2026-12-04&to=2026-12-01", "дата «С» не может быть позже даты «По».")):
            page = client.get(f"/dashboard/shop{address}", headers=russian)
            assert page.status_code == 400 and why in page.text, address


def test_the_calls_tab_of_a_site_nothing_can_post_calls_for_says_so(valkey_url: str, rules_dir: Path,
                                                                    store: redis.Redis) -> None:
    """A site of texts alone (or one whose calls were never set up) had an empty Calls tab with
    filters, and nothing said why."""
    (rules_dir / "texts.yaml").write_text("site: texts\nreports: {token: texts-report-token-01}\n")
    texts = {"authorization": "Bearer texts-report-token-01"}
    with TestClient(create_app(make_settings(valkey_url, rules_dir))) as client:
        for reader, said in (("en", "Nothing can post this site's calls"),
                             ("ru", "Звонки этого сайта некому передать")):
            page = client.get("/dashboard/texts/calls", headers={**texts, "accept-language": reader})
            assert page.status_code == 200 and said in page.text, reader
        posted = client.get("/dashboard/demo/calls", headers={"authorization": "Bearer demo-report-token-change-me"})
        assert posted.status_code == 200 and "Nothing can post" not in posted.text


def test_a_single_day_charts_each_variant_with_its_interval_on_round_ticks() -> None:
    daily = [{"day": "2026-11-29", "variant": "control", "visitors": 500, "converted": 25, "rate": 0.05},
             {"day": "2026-11-29", "variant": "b", "visitors": 480, "converted": 36, "rate": 0.075}]
    drawn = charts.conversion(daily, ["control", "b"])
    assert [tick["label"] for tick in drawn["ticks"]] == ["0%", "5%", "10%", "15%"]  # b reaches 10.2%
    (control,), (b,) = (line["dots"] for line in drawn["lines"])
    for dot in (control, b):
        assert dot["low"] > dot["y"] > dot["high"] >= drawn["ticks"][-1]["y"]  # SVG's y grows downwards
    assert drawn["ticks"][-2]["y"] > b["high"]  # the axis ends at the first round step above the intervals
    middle = drawn["left"] + (drawn["right"] - drawn["left"]) / 2
    assert control["x"] < middle < b["x"] and b["x"] - control["x"] <= 24  # side by side on their day
    assert all(line["band"] == "" for line in drawn["lines"])  # a band needs two days: the whiskers show it


def test_the_lift_over_time_adds_the_days_up_and_ends_at_the_tables_figures() -> None:
    """Cohorts of three days: each point is the lift of everyone exposed so far, with the
    always-valid interval of `stats.sequential` on those sums; the last is the table's."""
    days = [("2026-11-27", (400, 20), (410, 31)), ("2026-11-28", (380, 22), (370, 30)),
            ("2026-11-29", (420, 19), (400, 33))]
    daily = [{"day": day, "variant": variant, "visitors": n, "converted": k, "rate": k / n}
             for day, control, b in days for variant, (n, k) in (("control", control), ("b", b))]
    drawn = charts.lift(daily, ["control", "b"], expected_visitors=5000)
    (line,) = drawn["lines"]
    assert line["variant"] == "b" and len(line["dots"]) == 3 and line["band"]

    def value_at(y: float) -> float:  # back from SVG units through the axis' ticks
        (top, *_), bottom = drawn["ticks"][::-1], drawn["ticks"][0]
        low, high = parse(bottom["label"]), parse(top["label"])
        return low + (bottom["y"] - y) / (bottom["y"] - top["y"]) * (high - low)

    def parse(label: str) -> float:
        return float(label.replace("−", "-").rstrip("%")) / 100

    last = line["dots"][-1]
    sequential = stats.sequential(61, 1200, 94, 1180)
    assert sequential is not None
    assert value_at(last["y"]) == pytest.approx(94 / 1180 / (61 / 1200) - 1, abs=1e-6)
    assert value_at(last["low"]) == pytest.approx(sequential.relative.low, abs=1e-6)
    assert value_at(last["high"]) == pytest.approx(sequential.relative.high, abs=1e-6)
    heights = [dot["low"] - dot["high"] for dot in line["dots"]]
    assert heights == sorted(heights, reverse=True)  # more visitors every day: a narrower interval
    labels = [tick["label"] for tick in drawn["ticks"]]
    assert "0%" in labels and labels[0].startswith("−") and labels[-1].startswith("+")


def test_a_browser_that_reads_russian_first_gets_the_dashboard_in_russian(tmp_path: Path, valkey_url: str,
                                                                           store: redis.Redis) -> None:
    """Words, decimal commas and the experiment's warnings in Russian; the API keeps its English."""
    service, base = a_week_of_the_shop(tmp_path, valkey_url)
    try:
        with chromium() as browser:
            page = browser.new_context(locale="ru-RU", viewport={"width": 1200, "height": 900}).new_page()
            page.goto(f"{base}/dashboard/shop")
            assert page.locator("h2").inner_text() == "Вход в отчёты"
            page.fill("input[name=token]", "not-the-token")
            page.press("input[name=token]", "Enter")
            assert page.locator("[role=alert]").inner_text() == "Это не токен отчётов этого сайта."
            page.fill("input[name=token]", "shop-report-token-0001")
            page.press("input[name=token]", "Enter")
            page.wait_for_selector("section.experiment")
            assert page.locator("html").get_attribute("lang") == "ru"
            assert page.locator("nav strong").inner_text() == "Эксперименты"
            experiment = page.locator("section.experiment[data-experiment=hero]")
            assert "p-значение (всегда верное)" in experiment.locator("th").all_inner_texts()
            assert re.fullmatch(r"\d+,\d%", experiment.locator("tr[data-variant=b] td").nth(4).inner_text())
            verdict = experiment.locator("p.verdict").inner_text()  # b is better: no more visitors to wait for
            assert re.fullmatch(r"Вариант b конвертирует лучше контроля \(\+\d+,\d%, всегда верное "
                                r"p = \d(,\d+)?(e-\d+)?\): тест можно завершить, указав winner: b", verdict), verdict
            assert experiment.locator("p.warning").count() == 0
            assert english_words(page) == []
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-ru.png"), full_page=True)
            for tab, heading in (("/sources", "Визиты и конверсии (источник)"), ("/calls", "Звонки (новые сверху)"),
                                 ("/numbers", "Пулы номеров")):
                page.goto(f"{base}/dashboard/shop{tab}")
                title = page.locator("main h2").first.inner_text()
                assert title.startswith(heading) and not re.search(r"\d{4}-\d\d-\d\d", title)  # dates: 05.11.2026
                assert english_words(page) == [], tab
            page.screenshot(path=str(ARTIFACTS / "dashboard-numbers-ru.png"), full_page=True)  # the last tab
        report = httpx.get(f"{base}/v1/reports/shop", headers={"authorization": "Bearer shop-report-token-0001",
                                                                "accept-language": "ru-RU,ru"}).json()
    finally:
        stop(service)
    (table,) = report["experiments"]
    assert table["verdict"].startswith("Variant b converts better than the control (+")


def english_words(page: Page) -> list[str]:
    """Words in Latin letters in the page's text, shown or folded, but for names: the product's,
    the site's, the experiment's and its variants', the pool's, the rules' `winner`, the files' formats, the time
    zone's."""
    texts = page.evaluate("""() => [...document.querySelectorAll("body *")].flatMap(
        (element) => [...element.childNodes].filter((node) => node.nodeType === 3).map((node) => node.textContent))""")
    names = {"Swapline", "shop", "hero", "control", "city", "winner", "Excel", "CSV", "other", "UTC", "English"}
    return [word for text in texts for word in re.findall(r"[A-Za-z]{3,}", text) if word not in names]
