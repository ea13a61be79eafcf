"""The call log and the conversion log through the real service and store: what a marketer
reads after a Yandex ad brought a visitor who sent a form and called."""

from __future__ import annotations

import csv
import datetime
import hashlib
import hmac
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.analytics import logs
from tests.browser import ARTIFACTS, chromium, dashboard
from tests.conftest import BROWSER_HEADERS, Clock, one_site, site_client, start, stop
from tests.test_visits import AD, ORIGIN, REPORT, SECRET, SITE, VID, Browser, beacon, call


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    """test_visits' site: a Yandex pool and an experiment on /."""
    with site_client(valkey_url, rules_dir, clock, "climate", SITE) as client:
        yield client


def log(client: TestClient, what: str, **params: Any) -> Any:
    response = client.get(f"/v1/{what}/climate", params=params, headers=REPORT)
    assert response.status_code == 200, response.text
    return response.json()


def ad_visit_with_a_form_and_a_call(client: TestClient, clock: Clock) -> dict[str, Any]:
    browser = Browser(client, headers={"x-forwarded-for": "46.242.0.1"})  # from Moscow
    landing = browser.open(AD + "&utm_content=ad-1703", ref="https://yandex.ru/")  # Direct's {ad_id}
    clock.advance(40.25)
    contacts = browser.open(f"{ORIGIN}/contacts")
    beacon(client, contacts["token"], "contacts-form")
    clock.advance(20)
    call(client, contacts["phone"]["number"], clock.now)
    return landing


def test_a_call_names_its_visitors_city_alike_in_its_answer_and_the_log(climate: TestClient, clock: Clock) -> None:
    """The webhook's answer, the CRM's webhook and the log: one call, one city name, in the
    site's language (GeoIP's English name is what visits keep)."""
    landing = Browser(climate, headers={"x-forwarded-for": "95.161.0.1"}).open(AD, ref="https://yandex.ru/")
    clock.advance(20)
    answer = call(climate, landing["phone"]["number"], clock.now)
    logged, = log(climate, "calls")["entries"]
    assert answer["visit"]["geo"]["city"] == logged["visit"]["geo"]["city"] == landing["geo"]["city"] == \
        "Санкт-Петербург"


def test_the_logs_say_what_each_conversion_was_and_how_the_visitor_came(climate: TestClient, clock: Clock) -> None:
    landing = ad_visit_with_a_form_and_a_call(climate, clock)
    page = log(climate, "conversions")
    assert page["next"] is None and page["time_zone"] == "UTC"  # whose clocks the files write times on
    called, sent = page["entries"]  # newest first
    assert (called["kind"], sent["kind"]) == ("call", "form") and sent["page"] == "/contacts"
    for entry in (called, sent):
        assert entry["visitor"] == VID and entry["experiments"] == {"cta": landing["experiments"]["cta"]}
        visit = entry["visit"]
        assert (visit["source"], visit["medium"], visit["campaign"]) == ("yandex", "cpc", "summer")
        assert visit["phrase"] == "купить кондиционер" and visit["click_ids"] == {"yclid": "777"}
        assert visit["landing"] == "/" and [p["path"] for p in visit["pages"]] == ["/", "/contacts"]
        assert visit["geo"]["city"] == landing["geo"]["city"] == "Москва"  # as the Russian site's decisions say
    assert called["call"]["qualified"] is True and called["call"]["pool"] == "yandex"
    calls = log(climate, "calls")["entries"]
    assert len(calls) == 1 and calls[0]["call_id"] == "visit-call-1" and calls[0]["talk_seconds"] == 90
    assert calls[0]["visit"] == called["visit"] and calls[0]["start"] == called["at"]
    # The same call and form again (a PBX's and a browser's retries): the log does not grow.
    call(climate, landing["phone"]["number"], clock.now)
    beacon(climate, landing["token"], "contacts-form")
    assert len(log(climate, "conversions")["entries"]) == 2


def test_the_call_log_as_csv(climate: TestClient, clock: Clock) -> None:
    ad_visit_with_a_form_and_a_call(climate, clock)
    response = climate.get("/v1/calls/climate.csv", headers=REPORT)
    assert response.headers["content-type"].startswith("text/csv")
    (row,) = csv.DictReader(io.StringIO(response.text))
    assert row["number"] in ("+74951700001", "+74951700002")  # as scripts read it: E.164 runs nothing
    assert (row["source"], row["campaign"], row["content"], row["click_ids"], row["pages"]) == (
        "yandex", "summer", "ad-1703", "yclid=777", "/ > /contacts")  # the ad, for a report by ad
    assert row["qualified"] == "true" and row["variants"].startswith("cta=")
    # What a sales team sorts calls by: a first-time caller, where they called from, on what.
    assert (row["unique"], row["device"], row["region"], row["city"]) == ("true", "desktop", "RU-MOW", "Москва")
    sent = next(csv.DictReader(io.StringIO(climate.get("/v1/conversions/climate.csv", headers=REPORT).text)))
    assert sent["kind"] == "call" and len(sent["time"]) == len("2026-11-18T12:34:00+03:00")  # to the second
    # Compressed for a client that takes gzip (a month of calls is megabytes of text), else as it is.
    zipped = climate.get("/v1/calls/climate.csv", headers={**REPORT, "accept-encoding": "gzip"})
    plain = climate.get("/v1/calls/climate.csv", headers={**REPORT, "accept-encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert zipped.text == plain.text == response.text and int(zipped.headers["content-length"]) < len(plain.content)


def test_filters_keep_what_they_name(climate: TestClient, clock: Clock) -> None:
    landing = ad_visit_with_a_form_and_a_call(climate, clock)
    variant = f"cta:{landing['experiments']['cta']}"
    day = "2026-11-18"  # the test clock's day
    assert [e["kind"] for e in log(climate, "conversions", kind="form")["entries"]] == ["form"]
    assert len(log(climate, "conversions", source="yandex", variant=variant, **{"from": day, "to": day})
               ["entries"]) == 2
    assert log(climate, "conversions", source="google")["entries"] == []
    assert len(log(climate, "conversions", source="Yandex", campaign="SUMMER")["entries"]) == 2  # any case
    direct = Browser(climate, vid="direct-visitor-000001").open(f"{ORIGIN}/")
    beacon(climate, direct["token"], "direct-form")
    (entry,) = log(climate, "conversions", source="(none)")["entries"]  # as the Sources tab names no source
    assert entry["id"] == "form:direct-form"
    assert log(climate, "conversions", **{"from": "2026-11-19"})["entries"] == []
    assert len(log(climate, "calls", qualified="true", pool="yandex")["entries"]) == 1
    assert log(climate, "calls", qualified="false")["entries"] == []
    landing = Browser(climate, vid="missed-visitor-000001").open(AD, ref="https://yandex.ru/")
    raw = orjson.dumps({"call_id": "nobody-answered", "called": landing["phone"]["number"], "caller": "+79160000001",
                        "start": clock.now, "status": "no-answer"})
    climate.post("/v1/calls?site=climate", content=raw,
                 headers={"x-swapline-signature": "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()})
    assert [entry["call_id"] for entry in log(climate, "calls", missed="true")["entries"]] == ["nobody-answered"]
    assert [entry["call_id"] for entry in log(climate, "calls", missed="false")["entries"]] == ["visit-call-1"]
    # What a PBX and a customer tell support: the call's id, the caller's last digits.
    assert [entry["call_id"] for entry in log(climate, "calls", call_id="nobody-answered")["entries"]] == [
        "nobody-answered"]
    assert [entry["call_id"] for entry in log(climate, "calls", caller="4567")["entries"]] == ["visit-call-1"]
    assert log(climate, "calls", caller="0002")["entries"] == []
    assert [entry["call_id"] for entry in log(climate, "calls", caller="+7 916 123-45-67")["entries"]] == [
        "visit-call-1"]  # a whole number, as the customer gives it: its last four digits
    for what, params in [("conversions", {"kind": "visit"}), ("calls", {"kind": "form"}), ("calls", {"limit": "0"}),
                         ("calls", {"qualified": "yes"}), ("calls", {"variant": "cta"}), ("calls", {"from": "today"}),
                         ("calls", {"cursor": "bogus"}), ("calls", {"cursor": "0-0"}),
                         ("conversions", {"cursor": "99999999999999999999999-0"}), ("calls", {"cursor": "1-"}),
                         ("calls", {"cursor": "1-18446744073709551616"}), ("calls", {"status": "missed"}),
                         ("calls", {"missed": "yes"}), ("calls", {"caller": "+7 (4"}),
                         ("calls", {"caller": "45"}), ("conversions", {"caller": "4567"}),
                         ("conversions", {"metric": "form"}),
                         ("conversions", {"from": "2026-12-04", "to": "2026-12-01"})]:
        refused = climate.get(f"/v1/{what}/climate", params=params, headers=REPORT)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_filter", params
    status = climate.get("/v1/calls/climate", params={"status": "busy"}, headers=REPORT).json()["error"]["message"]
    assert "'status'" in status and "kind" not in status  # what the call log takes: no kind, which it refuses
    assert climate.get("/v1/calls/climate").status_code == 401


def test_a_long_log_comes_a_page_at_a_time_each_entry_once(climate: TestClient, clock: Clock) -> None:
    sent = []
    for n in range(25):
        answer = Browser(climate, vid=f"paged-visitor-{n:06d}").open(f"{ORIGIN}/")
        beacon(climate, answer["token"], f"form-{n}")
        sent.append(f"form:form-{n}")
        clock.advance(1)
    seen, cursor, pages = [], None, 0
    while True:
        page = log(climate, "conversions", limit=10, **({"cursor": cursor} if cursor else {}))
        seen += [entry["id"] for entry in page["entries"]]
        pages, cursor = pages + 1, page["next"]
        if cursor is None:
            break
    assert seen == sent[::-1] and pages == 3


def test_a_file_holds_every_entry_of_its_filters_and_names_the_rest_past_its_bound(
        climate: TestClient, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A month of a busy site's calls is one download, past the 1,000 of a page; up to
    `FILE_ENTRIES` (set low at the end), and then the file's `Link` names the rest."""
    number = Browser(climate).open(AD, ref="https://yandex.ru/")["phone"]["number"]
    made = [f"busy-{n:05d}" for n in range(1_030)]
    for call_id in made:
        call(climate, number, clock.now, call_id=call_id)
        clock.advance(1)

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [row["call_id"] for row in csv.DictReader(io.StringIO(response.text))]

    whole = climate.get("/v1/calls/climate.csv", headers=REPORT)
    assert ids(whole) == made[::-1] and "link" not in whole.headers
    zone = climate.app.state.runtime.rules.sites["climate"].time_zone  # type: ignore[attr-defined]
    days = "_".join(dict.fromkeys(datetime.datetime.fromtimestamp(moment, zone).date().isoformat()
                                  for moment in (clock.now - len(made), clock.now - 1)))
    assert whole.headers["content-disposition"] == f'attachment; filename="climate-calls-{days}.csv"'
    page = climate.get("/v1/calls/climate.csv", params={"limit": 100}, headers=REPORT)  # a page, when asked for one
    assert ids(page) == made[:-101:-1] and page.headers["link"].endswith('>; rel="next"')
    assert page.headers["content-disposition"].endswith('-first-100.csv"')  # a file that is not all says so
    calls_tab = climate.get("/dashboard/climate/calls", params={"qualified": "false"}, headers=REPORT).text
    link = calls_tab.split('href="/dashboard/climate/calls.xlsx?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    sheet = openpyxl.load_workbook(io.BytesIO(climate.get(f"/dashboard/climate/calls.xlsx?{link}",
                                                          headers=REPORT).content)).active
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)] == made[:0:-1]  # all but the first call

    monkeypatch.setattr(logs, "FILE_ENTRIES", 1_000)
    bounded = climate.get("/v1/calls/climate.csv", headers=REPORT)
    rest = climate.get(f"/v1/calls/climate.csv{bounded.headers['link'][1:].split('>')[0]}", headers=REPORT)
    assert ids(bounded) == made[:29:-1] and ids(rest) == made[29::-1]


def test_the_log_lets_go_of_what_is_past_its_days_as_new_entries_come(climate: TestClient, clock: Clock,
                                                                        store: redis.Redis) -> None:
    """The entries name their conversions; what each says is kept beside them, and goes with them."""
    ad_visit_with_a_form_and_a_call(climate, clock)
    assert store.hlen("sw:{climate:log}:bodies") == 2
    clock.advance(91 * 86_400)  # past SWAPLINE_LOG_DAYS (90)
    landing = Browser(climate, vid="a-later-visitor-000001").open(f"{ORIGIN}/")
    beacon(climate, landing["token"], "later-form")
    assert [entry["id"] for entry in log(climate, "conversions")["entries"]] == ["form:later-form"]
    assert store.hkeys("sw:{climate:log}:bodies") == [b"form:later-form"]


def test_entries_an_older_swapline_logged_with_what_they_say_inline_are_read_and_erased(
        climate: TestClient, clock: Clock, store: redis.Redis) -> None:
    ad_visit_with_a_form_and_a_call(climate, clock)
    stream, bodies = "sw:{climate:log}:entries", "sw:{climate:log}:bodies"
    for stream_id, fields in store.xrange(stream):  # as the log kept them before its bodies were apart
        store.xdel(stream, stream_id)
        store.xadd(stream, {"c": store.hget(bodies, fields[b"i"])})
    store.delete(bodies)
    logged = log(climate, "conversions")["entries"]
    assert [entry["id"] for entry in logged] == ["call:visit-call-1", "form:contacts-form"]
    assert log(climate, "calls")["entries"][0]["visitor"] == VID
    assert climate.delete(f"/v1/visitors/climate/{VID}", headers=REPORT).json()["erased"]["log"] == 2
    assert log(climate, "conversions")["entries"] == [] and store.xlen(stream) == 0  # no body apart to rewrite


def test_an_erased_visitors_form_leaves_the_log_and_their_call_stays_credited_to_nobody_known(
        climate: TestClient, clock: Clock, store: redis.Redis) -> None:
    ad_visit_with_a_form_and_a_call(climate, clock)
    other = Browser(climate, vid="another-visitor-000001").open(f"{ORIGIN}/")
    beacon(climate, other["token"], "other-form")
    assert climate.delete(f"/v1/visitors/climate/{VID}", headers=REPORT).json()["erased"]["log"] == 2
    assert [entry["visitor"] for entry in log(climate, "conversions")["entries"]] == ["another-visitor-000001", None]
    (call,) = log(climate, "calls")["entries"]
    assert (call["credited"], call["visitor"], call["visit"], call["caller_last_digits"]) == (True, None, None, None)
    assert not any(VID.encode() in orjson.dumps(entry) for entry in log(climate, "conversions")["entries"])


def test_the_dashboard_lists_calls_and_opens_each_callers_journey(tmp_path: Path, valkey_url: str,
                                                                  store: redis.Redis) -> None:
    """In Chromium: the calls page of the dashboard, a call's row, and the visit behind it."""
    rules = one_site(tmp_path, "climate", SITE)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        with httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}) as http:
            shown = http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": VID,
                                                   "ref": "https://yandex.ru/"}).json()
            http.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/contacts", "vid": VID,
                                           "visit": shown["token"], "ref": AD})
            raw = orjson.dumps({"call_id": "dash-call-1", "called": shown["phone"]["number"], "caller": "+79161234567",
                                "start": time.time() + 1, "talk_seconds": 90})
            signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
            assert http.post("/v1/calls?site=climate", content=raw,
                             headers={"x-swapline-signature": signature}).json()["credited"] is True
            for vid, ref in (("dash-google-visitor-01", "https://www.google.com/"),
                             ("dash-yandex-visitor-02", "https://yandex.ru/")):  # yandex 2 visits, google 1
                http.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/", "vid": vid, "ref": ref})
        with chromium() as browser:
            page = dashboard(browser, base, "climate", "climate-report-token-0001")
            page.get_by_role("link", name="Calls").click()
            row = page.locator("tbody.call[data-call=dash-call-1]")
            cells = row.locator("tr").first.locator("td").all_inner_texts()
            # The number as people read it (+7 495 …), the talk as m:ss.
            assert cells[1:6] == [shown["phone"]["international"], "answered", "1:30", "yes", "…4567"]
            assert cells[6:] == ["yandex", "summer", "купить кондиционер"]
            suggested = page.locator("#sources option").evaluate_all("(all) => all.map((o) => [o.value, o.label])")
            assert suggested == [["yandex", "yandex"], ["google", "google"], ["(not credited)", "(not credited)"]]
            assert not row.locator("ol.pages").is_visible()
            row.locator("summary").click()  # the journey, one click away
            assert [item.split(" · ", 1)[1] for item in row.locator("ol.pages li").all_inner_texts()] == [
                "/", "/contacts", f"called {shown['phone']['international']}"]
            assert "yclid=777" in row.locator("dl.journey").inner_text()
            row.get_by_role("link", name="dash-call-1").click()  # a link to the one call, for a ticket
            page.wait_for_url("**call_id=dash-call-1")
            assert page.locator("tbody.call").count() == 1 and page.locator("#calls h2").inner_text().startswith(
                "Call dash-call-1")  # a page of its own, for a ticket
            page.get_by_role("link", name="all calls").click()
            page.wait_for_url(f"{base}/dashboard/climate/calls")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-calls.png"), full_page=True)

            russian = dashboard(browser, base, "climate", "climate-report-token-0001", locale="ru-RU")
            russian.get_by_role("link", name="Звонки").click()
            row = russian.locator("tbody.call[data-call=dash-call-1]")
            first = row.locator("tr").first.locator("td").all_inner_texts()
            assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", first[0])  # as Russians write a moment
            assert first[2:5] == ["отвечен", "1:30", "да"]
            suggested = russian.locator("#sources option").evaluate_all("(all) => all.map((o) => o.label)")
            assert suggested == ["yandex", "google", "(не засчитаны)"]  # the filter's values, in the reader's words
            assert row.locator("summary").inner_text() == "Визит звонившего: 2 страницы"
            row.locator("summary").click()
            called = row.locator("ol.pages li").last.inner_text()
            assert called.endswith(f"позвонил на {shown['phone']['international']}")
            assert "Устройство, место" in row.locator("dl.journey").inner_text()
            russian.screenshot(path=str(ARTIFACTS / "dashboard-calls-ru.png"), full_page=True)
    finally:
        stop(service)
