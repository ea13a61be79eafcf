"""Reports by dimension through the real service and store: which source, campaign and search
phrase brought visits, calls and forms, and how well each converts."""

from __future__ import annotations

import csv
import io
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.analytics.stats import wilson
from tests.browser import ARTIFACTS, chromium, dashboard
from tests.conftest import BROWSER_HEADERS, Clock, one_site, site_client, start
from tests.test_visits import AD, ORIGIN, REPORT, SITE, Browser, beacon, call

GOOGLE = f"{ORIGIN}/?utm_source=google&utm_medium=cpc&utm_campaign=winter&utm_term={quote('сплит система')}"


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE) as client:
        yield client


def by(client: TestClient, dimensions: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/reports/climate", params={"by": dimensions, **params}, headers=REPORT)
    assert response.status_code == 200, response.text
    return list(response.json()["rows"])


def traffic(client: TestClient, clock: Clock) -> None:
    """Four visits from the Yandex ad (the first calls the number it was shown, the last two,
    who got the overflow number of its two-number pool, send a form), three from Google (one
    form), two direct ones."""
    for n in range(4):
        page = Browser(client, vid=f"yandex-visitor-{n:06d}").open(AD, ref="https://yandex.ru/")
        if n >= 2:
            beacon(client, page["token"], f"yandex-form-{n}")
        if n == 0:
            clock.advance(20)
            call(client, page["phone"]["number"], clock.now, call_id="yandex-call")
    for n in range(3):
        page = Browser(client, vid=f"google-visitor-{n:06d}").open(GOOGLE, ref="https://www.google.com/")
        if n == 0:
            beacon(client, page["token"], "google-form-0")
    for n in range(2):
        Browser(client, vid=f"direct-visitor-{n:06d}").open(f"{ORIGIN}/contacts", ref="")


def test_visits_and_conversions_by_source(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    rows = {row["source"]: row for row in by(climate, "source")}
    assert {source: row["visits"] for source, row in rows.items()} == {"yandex": 4, "google": 3, "(none)": 2}
    yandex = rows["yandex"]
    assert yandex["conversions"] == {"call": 1, "qualified_call": 1, "missed_call": 0, "form": 2, "tel_click": 0,
                                     "goal": 0}
    assert yandex["converted"] == 3 and yandex["rate"] == 3 / 4  # three of its four visits converted
    interval = wilson(3, 4)
    assert interval is not None and yandex["interval"] == pytest.approx([interval.low, interval.high])
    assert rows["google"]["converted"] == 1 and rows["(none)"]["converted"] == 0
    assert [row["source"] for row in by(climate, "source", sort="converted")][:2] == ["yandex", "google"]


def test_a_visitor_who_comes_back_counts_as_one_visitor_of_several_visits(climate: TestClient, clock: Clock) -> None:
    returning = Browser(climate, vid="returning-visitor-0001")
    returning.open(AD, ref="https://yandex.ru/")
    clock.advance(31 * 60)  # past the visit timeout: a visit of its own
    returning.open(AD, ref="https://yandex.ru/")
    Browser(climate, vid="once-only-visitor-001").open(AD, ref="https://yandex.ru/")
    Browser(climate, vid="google-visitor-000001").open(GOOGLE, ref="https://www.google.com/")
    assert {(row["source"], row["visits"], row["visitors"]) for row in by(climate, "source")} == {
        ("yandex", 3, 2), ("google", 1, 1)}
    clock.advance(86_400)  # the next day, the same visitor again: still one visitor over both days
    returning.open(AD, ref="https://yandex.ru/")
    (yandex, other) = by(climate, "source", limit="1", **{"from": "2026-11-18", "to": "2026-11-19"})
    assert (yandex["visits"], yandex["visitors"]) == (4, 2) and (other["source"], other["visitors"]) == ("(other)", 1)
    assert all(row["visitors"] is None for row in by(climate, "source,campaign"))  # by one dimension only
    csv_rows = list(csv.DictReader(io.StringIO(climate.get(
        "/v1/reports/climate.csv", params={"by": "source"}, headers=REPORT).text)))
    assert {(row["source"], row["visitors"]) for row in csv_rows} == {("yandex", "2"), ("google", "1")}


def test_two_dimensions_filters_and_the_rest_as_other(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    pairs = {(row["source"], row["phrase"]): row["visits"] for row in by(climate, "source,phrase")}
    assert pairs == {("yandex", "купить кондиционер"): 4, ("google", "сплит система"): 3, ("(none)", "(none)"): 2}
    campaigns = by(climate, "campaign", source="google")
    assert [(row["campaign"], row["visits"]) for row in campaigns] == [("winter", 3)]
    top, other = by(climate, "landing", limit="1")
    assert (top["landing"], top["visits"]) == ("/", 7) and (other["landing"], other["visits"]) == ("(other)", 2)
    assert by(climate, "source", **{"from": "2026-11-19", "to": "2026-11-20"}) == []  # the test clock's day is the 18th
    csv_rows = list(csv.DictReader(io.StringIO(climate.get(
        "/v1/reports/climate.csv", params={"by": "source,campaign"}, headers=REPORT).text)))
    assert {(row["source"], row["campaign"], row["visits"], row["form"]) for row in csv_rows} == {
        ("yandex", "summer", "4", "2"), ("google", "winter", "3", "1"), ("(none)", "(none)", "2", "0")}


def test_visitors_by_first_page_and_by_experiment_variant(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    pages = {row["page"]: row for row in by(climate, "page")}
    # Those who got an overflow number are left out, as the experiment report leaves them: two of
    # Yandex's four, and of the five the two-number pool "everyone" met, the last three.
    assert {page: (row["visits"], row["visitors"]) for page, row in pages.items()} == {
        "/": (None, 4), "/contacts": (None, 0)}
    assert pages["/"]["converted"] == 2 and pages["/"]["conversions"]["form"] == 1
    variants = {row["variant"]: row for row in by(climate, "variant")}
    assert set(variants) == {"cta:control", "cta:call-now"}
    assert sum(row["visitors"] for row in variants.values()) == 4
    assert sum(row["converted"] for row in variants.values()) == 2
    report = climate.get("/v1/reports/climate", params={"metric": "any"}, headers=REPORT).json()
    (experiment,) = [table for table in report["experiments"] if table["page"] == "/"]
    assert {f"cta:{row['variant']}": row["visitors"] for row in experiment["variants"]} == {
        name: row["visitors"] for name, row in variants.items()}  # the experiment report's figures


@pytest.mark.parametrize("params", [{"by": "colour"}, {"by": "source,campaign,phrase"}, {"by": "source,source"},
                                    {"by": "source,campaign", "phrase": "x"}, {"by": "source", "sort": "luck"},
                                    {"by": "source", "limit": "0"}, {"by": "source", "from": "yesterday"},
                                    {"by": "source", "from": "2026-11-20", "to": "2026-11-01"},
                                    {"by": "page,source"}, {"by": "variant", "source": "yandex"}])
def test_a_report_by_dimension_that_makes_no_sense_is_a_clear_400(climate: TestClient, params: dict[str, str]) -> None:
    refused = climate.get("/v1/reports/climate", params=params, headers=REPORT)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_filter"


def test_the_dashboard_shows_sources_with_their_rates(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """In Chromium: the Sources tab, by source and then by source and campaign."""
    rules = one_site(tmp_path, "climate", SITE)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        with httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}) as http:
            for n, (url, converts) in enumerate([(AD, True), (AD, False), (GOOGLE, False), (GOOGLE, False)]):
                shown = http.get("/v1/decide", params={"site": "climate", "url": url, "vid": f"tab-visitor-{n:06d}"})
                if converts:
                    form = orjson.dumps({"type": "form", "id": f"tab-form-{n}", "token": shown.json()["token"]})
                    assert http.post("/v1/events", content=form, headers={"origin": ORIGIN}).status_code == 202
        with chromium() as browser:
            page = dashboard(browser, base, "climate", "climate-report-token-0001")
            page.get_by_role("link", name="Sources").click()
            cells = [row.locator("td").all_inner_texts() for row in page.locator("#sources tbody tr").all()]
            assert [(row[0], row[1], row[2], row[6], row[10]) for row in cells] == [
                ("google", "2", "2", "0", "0.0%"), ("yandex", "2", "2", "1", "50.0%")]
            assert page.locator("svg.chart rect.bar").count() == 2
            page.select_option("select[name=by]", "source,campaign")
            page.click("button[type=submit]")
            page.wait_for_url("**by=source%2Ccampaign**")
            assert page.locator("#sources thead th").all_inner_texts()[:2] == ["source", "campaign"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-sources.png"), full_page=True)
    finally:
        service.send_signal(signal.SIGINT)
        service.communicate(timeout=20)
