"""Downloads for spreadsheets: every report and log as an Excel workbook, read back by openpyxl
(a reader of the format that shares no code with the writer), and from the dashboard in Chromium."""

from __future__ import annotations

import asyncio
import csv
import datetime
import functools
import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import openpyxl
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.analytics.sheets import Sheet, download, xlsx
from tests.browser import chromium, dashboard
from tests.conftest import BROWSER_HEADERS, Clock, one_site, site_client, start, stop
from tests.test_visits import AD, ORIGIN, REPORT, SITE, Browser, beacon, call

WORKBOOK = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CRAFTED = "=HYPERLINK(\"http://evil.example\",\"Нажми\")"  # a campaign name an attacker chose


def rows_of(workbook: bytes) -> list[list[Any]]:
    sheet = openpyxl.load_workbook(io.BytesIO(workbook)).active
    assert sheet is not None
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_a_workbook_keeps_text_numbers_and_times_as_excel_reads_them() -> None:
    called = datetime.datetime(2026, 11, 18, 9, 30, 15, tzinfo=datetime.UTC)
    sheet = Sheet("demo-calls", ["time", "phrase", "campaign", "visits", "rate", "qualified", "note"], [
        [called, "купить кондиционер", CRAFTED, 12, 0.75, True, "  two spaces\x01\x08 and a bell"],
        [None, "", "+7 812 645-17-14", 0, float("nan"), False, "я" * 40_000],
    ])
    book = openpyxl.load_workbook(io.BytesIO(xlsx(sheet)))
    table = book.active
    assert table is not None and book.sheetnames == ["demo-calls"]
    assert [cell.value for cell in table[1]] == ["time", "phrase", "campaign", "visits", "rate", "qualified", "note"]
    assert all(cell.font.b for cell in table[1]) and table.freeze_panes == "A2"  # the header stays in view
    assert table.auto_filter.ref == "A1:G3"  # with its filter buttons
    names = zipfile.ZipFile(io.BytesIO(xlsx(sheet))).read("xl/workbook.xml").decode()  # as Excel names the range
    assert """<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'demo-calls'!$A$1:$G$3<""" in names
    first, second = table[2], table[3]
    assert first[0].value == called.replace(tzinfo=None) and first[0].is_date  # a time Excel can sort and sum by
    assert [cell.value for cell in first[1:]] == ["купить кондиционер", CRAFTED, 12, 0.75, True,
                                                  "  two spaces and a bell"]  # no character XML forbids
    assert first[2].data_type == "s" and first[3].data_type == "n"  # the crafted formula is text, not run
    assert [cell.value for cell in second[:6]] == [None, None, "+7 812 645-17-14", 0, None, False]
    assert first[5].data_type == "b"  # Excel's TRUE, which its filters and formulas read as such
    assert second[6].value == "я" * 32_767  # as much as a cell holds
    assert table.column_dimensions["B"].width > table.column_dimensions["D"].width
    streamed = openpyxl.load_workbook(io.BytesIO(xlsx(sheet)), read_only=True).active
    assert streamed is not None and (streamed.max_row, streamed.max_column) == (3, 7)  # known before reading it


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE) as client:
        yield client


def test_downloads_asked_for_together_are_written_one_after_another_each_whole() -> None:
    """Each thread running Python beside the loop slows the page views it serves: analysts wait
    in line instead (docs/PERFORMANCE.md, "Downloads")."""
    running, most = 0, 0

    def make(n: int) -> Sheet:
        nonlocal running, most
        running += 1
        most = max(most, running)
        time.sleep(0.1)  # lets go of the interpreter, as writing a file does now and then
        rows: list[list[Any]] = [[f"campaign-{n}-{row}", row] for row in range(2000)]
        running -= 1
        return Sheet(f"file-{n}", ["campaign", "calls"], rows)

    async def together() -> list[bytes]:
        files = await asyncio.gather(*(download(functools.partial(make, n), "xlsx") for n in range(4)))
        return [file.body for file in files]

    files = asyncio.run(together())
    assert most == 1
    for n, file in enumerate(files):
        rows = rows_of(file)
        assert len(rows) == 2001 and rows[1] == [f"campaign-{n}-0", 0] and rows[-1] == [f"campaign-{n}-1999", 1999]


def test_reports_and_the_call_log_as_workbooks_hold_what_the_csv_holds(climate: TestClient, clock: Clock) -> None:
    crafted = Browser(climate, vid="crafted-visitor-00001").open(
        f"{ORIGIN}/?utm_source=yandex&utm_campaign={quote(CRAFTED)}", ref="")
    beacon(climate, crafted["token"], "crafted-form")
    ad = Browser(climate, vid="ad-visitor-000000001").open(AD, ref="https://yandex.ru/")
    clock.advance(20)
    call(climate, ad["phone"]["number"], clock.now, call_id="ad-call")
    zone = climate.app.state.runtime.rules.sites["climate"].time_zone  # type: ignore[attr-defined]
    today = datetime.datetime.fromtimestamp(clock.now, zone).date()
    month = f"{today - datetime.timedelta(days=29)}_{today}"  # a report's days unless it names its own
    for path, params, name in [
            ("/v1/reports/climate", {"by": "source,campaign"}, f"climate-by-source-campaign-{month}"),
            ("/v1/reports/climate", {}, f"climate-report-until-{today}"),
            ("/v1/calls/climate", {}, f"climate-calls-{today}"),
            ("/v1/conversions/climate", {}, f"climate-conversions-{today}"),
            # A month's file is named by the month, as asked, even with nothing in it.
            ("/v1/conversions/climate", {"from": "2026-10-01", "to": "2026-10-31"},
             "climate-conversions-2026-10-01_2026-10-31"),
            ("/v1/calls/climate", {"from": f"{today - datetime.timedelta(days=6)}"},
             f"climate-calls-{today - datetime.timedelta(days=6)}_{today}")]:
        book = climate.get(f"{path}.xlsx", params=params, headers=REPORT)
        assert book.status_code == 200 and book.headers["content-type"] == WORKBOOK
        assert book.headers["content-disposition"] == f'attachment; filename="{name}.xlsx"'
        text = list(csv.reader(io.StringIO(climate.get(f"{path}.csv", params=params, headers=REPORT).text)))
        assert [[_as_csv(value) for value in row] for row in rows_of(book.content)] == text, path
    campaigns = rows_of(climate.get("/v1/reports/climate.xlsx", params={"by": "campaign"}, headers=REPORT).content)
    assert [CRAFTED, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1.0] in [row[:11] for row in campaigns]  # the CSV adds an apostrophe
    (header, called) = rows_of(climate.get("/v1/calls/climate.xlsx", headers=REPORT).content)
    start = datetime.datetime.fromtimestamp(clock.now, datetime.UTC).replace(tzinfo=None, microsecond=0)
    assert (called[0], called[header.index("phrase")]) == (start, "купить кондиционер")
    refused = climate.get("/v1/calls/climate.xlsx", headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a cell a spreadsheet runs starts with (OWASP)


def test_a_csv_excel_cuts_at_semicolons_holds_no_formula_a_visitor_wrote(climate: TestClient, clock: Clock) -> None:
    """Excel in a «;» locale (Russian Excel's list separator) opens the comma file cut at every
    «;», quoted or not: a visitor's `utm_medium=a;=2%2B3;` made a cell `=2+3` there, and
    `=HYPERLINK(…)` a link to click. Scripts still read every value back, with an apostrophe
    where a cell would start with a formula."""
    tags = {"utm_source": "yandex", "utm_medium": "a;=2+3;", "utm_campaign": 'x;"=HYPERLINK(""http://evil"")',
            "utm_term": "купить;@SUM(A1)"}
    visitor = Browser(climate, vid="crafted-visitor-00001").open(f"{ORIGIN}/land;-1?{urlencode(tags)}", ref="")
    beacon(climate, visitor["token"], "crafted-form")
    clock.advance(20)
    call(climate, visitor["phone"]["number"], clock.now, call_id="crafted-call")
    session = climate.post("/dashboard/climate/login", data={"token": "climate-report-token-0001"},
                           follow_redirects=False)
    assert session.status_code == 303
    files = [climate.get(path, params=params, headers=REPORT).text for path, params in [
        ("/v1/reports/climate.csv", {"by": "source,medium"}), ("/v1/reports/climate.csv", {"by": "campaign,phrase"}),
        ("/v1/reports/climate.csv", {"by": "landing"}), ("/v1/calls/climate.csv", {}),
        ("/v1/conversions/climate.csv", {})]]
    files.append(climate.get("/dashboard/climate/sources.csv", params={"by": "medium,campaign"}).text)
    for text in files:
        excel = [cell for row in csv.reader(io.StringIO(text), delimiter=";") for cell in row]
        assert not [cell for cell in excel if cell.startswith(FORMULA)], text
    (called,) = csv.DictReader(io.StringIO(files[3]))
    assert [called[name] for name in ("source", "medium", "campaign", "phrase", "landing")] == \
        ["yandex", "a;'=2+3;", 'x;\'"=HYPERLINK(""http://evil"")', "купить;'@SUM(A1)", "/land;'-1"]
    assert called["number"].startswith("+7") and called["talk_seconds"] == "90"  # numbers as they were
    (medium,) = csv.DictReader(io.StringIO(files[0]))
    assert (medium["medium"], medium["visits"], medium["call"], medium["rate"]) == ("a;'=2+3;", "1", "1", "1")


@pytest.mark.parametrize("path", ["report.xlsx", "sources.csv", "calls.xlsx"])
def test_a_dashboard_download_without_a_session_is_refused_not_saved_as_the_sign_in_page(
        climate: TestClient, path: str) -> None:
    """A script (`curl -f`, `wget`) fetching a tab's file without a session fails, where a 200
    made it save the sign-in page as a spreadsheet; a browser still shows where to sign in."""
    answer = climate.get(f"/dashboard/climate/{path}")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html") and 'name="token"' in answer.text


def _as_csv(value: Any) -> str:
    """A workbook's cell as the CSV writes the same value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=datetime.UTC).isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return "'" + text if text.startswith(("=", "+", "-", "@")) and not re.fullmatch(r"\+[0-9]{7,15}", text) else text


def test_each_dashboard_tab_downloads_what_it_shows_in_excel(tmp_path: Path, valkey_url: str,
                                                             store: redis.Redis) -> None:
    """In Chromium, signed in as an analyst (no token in any address): the Sources tab's table
    saved as a workbook, the Calls and Experiments tabs' files; signed out, the sign-in page."""
    rules = one_site(tmp_path, "climate", SITE)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        with httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}) as http:
            shown = http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": "excel-visitor-0001"})
            form = orjson.dumps({"type": "form", "id": "excel-form", "token": shown.json()["token"]})
            assert http.post("/v1/events", content=form, headers={"origin": ORIGIN}).status_code == 202
        with chromium() as browser:
            page = dashboard(browser, base, "climate", "climate-report-token-0001")
            page.get_by_role("link", name="Sources").click()
            page.select_option("select[name=by]", "source,phrase")
            page.get_by_role("button", name="Show").click()
            page.wait_for_url("**by=source%2Cphrase**")
            with page.expect_download() as saved:
                page.get_by_role("link", name="Excel").click()
            assert re.fullmatch(r"climate-by-source-phrase-[0-9-]{10}_[0-9-]{10}\.xlsx", saved.value.suggested_filename)
            (header, row) = rows_of(Path(saved.value.path()).read_bytes())
            assert header[:4] == ["source", "phrase", "visits", "visitors"]
            assert row[:4] == ["yandex", "купить кондиционер", 1, 1] and row[header.index("form")] == 1
            page.get_by_role("link", name="Calls").click()
            with page.expect_download() as saved:
                page.get_by_role("link", name="Excel").click()
            assert re.fullmatch(r"climate-calls-[0-9-]{10}\.xlsx", saved.value.suggested_filename)  # none yet: today
            assert rows_of(Path(saved.value.path()).read_bytes())[0][:3] == ["time", "call_id", "kind"]
            page.get_by_role("link", name="Experiments").click()
            with page.expect_download() as saved:
                page.get_by_role("link", name="CSV").click()
            assert re.fullmatch(r"climate-report-until-[0-9-]{10}\.csv", saved.value.suggested_filename)
            assert Path(saved.value.path()).read_text().startswith("section,experiment,page,variant")
            stranger = browser.new_page()
            stranger.goto(f"{base}/dashboard/climate/sources.xlsx?by=source")
            assert stranger.locator("input[name=token]").count() == 1  # the sign-in page, no file
    finally:
        stop(service)
