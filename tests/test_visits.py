"""Visits through the real service and store: a visitor from a Yandex ad keeps the ad's source,
keyword headline and number on every page of the visit, and their form and call count for the
variant they saw, with the call record carrying the visit's source and journey."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.rules.geo import GeoDB
from service.tracking.counters import visitor_hash
from service.tracking.pools import PoolKeys
from service.tracking.store import Store
from service.tracking.visits import CITY_NAMES, learn_city_names
from tests import conftest
from tests.conftest import Clock, servers, site_client

SECRET = b"visits-calls-secret-0001"
ORIGIN = "https://climate.example"
SITE = f"""
site: climate
origins: [{ORIGIN}]
phone: "+7 800 555-35-35"
calls: {{secret: {SECRET.decode()}, qualify_after: 30s, unique_within: 1d}}
reports: {{token: climate-report-token-0001}}
pools:
  - id: yandex
    when: {{source: yandex}}
    numbers: ["+7 495 170-00-01", "+7 495 170-00-02"]
    hold: 15m
  - id: everyone
    numbers: ["+7 495 171-00-01", "+7 495 171-00-02"]
    hold: 15m
rules:
  - id: keyword
    when: {{keywords: [купить кондиционер]}}
    swap: [{{selector: h1, text: "Купить кондиционер с установкой"}}]
experiments:
  - id: cta
    page: /
    variants:
      - {{id: control, weight: 50}}
      - {{id: call-now, weight: 50, swap: [{{selector: .cta, text: "Позвоните сейчас"}}]}}
"""
REPORT = {"authorization": "Bearer climate-report-token-0001"}
AD = f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_campaign=summer&utm_term={quote('купить кондиционер')}&yclid=777"
VID = "visits-visitor-000001"
KEYWORD_HEADLINE = {"selector": "h1", "text": "Купить кондиционер с установкой", "property": "textContent",
                    "value": "Купить кондиционер с установкой"}


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE) as client:
        yield client


class Browser:
    """What the snippet does between pages: it keeps the last decision token (which carries the
    visit) and sends it back."""

    def __init__(self, client: TestClient, vid: str = VID, headers: dict[str, str] | None = None) -> None:
        self.client, self.vid, self.visit, self.previous = client, vid, "", ""
        self.headers = headers or {}

    def open(self, url: str, ref: str | None = None) -> Any:
        params = {"site": "climate", "url": url, "vid": self.vid, "visit": self.visit,
                  "ref": self.previous if ref is None else ref}
        response = self.client.get("/v1/decide", params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        self.visit, self.previous = answer["token"], url
        return answer


def beacon(client: TestClient, token: str, event_id: str) -> Any:
    body = orjson.dumps({"type": "form", "id": event_id, "token": token})
    response = client.post("/v1/events", content=body, headers={"content-type": "text/plain", "origin": ORIGIN})
    assert response.status_code == 202, response.text
    return response.json()


def call(client: TestClient, number: str, start: float, call_id: str = "visit-call-1",
         caller: str = "+79161234567") -> Any:
    raw = orjson.dumps({"call_id": call_id, "called": number, "caller": caller, "start": start,
                        "talk_seconds": 90})
    signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    response = client.post("/v1/calls?site=climate", content=raw, headers={"x-swapline-signature": signature})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_yandex_ad_visit_keeps_its_source_headline_and_number_and_its_call_carries_the_journey(
        climate: TestClient, clock: Clock) -> None:
    browser = Browser(climate)
    landing = browser.open(AD, ref="https://yandex.ru/")
    clock.advance(40)
    catalog = browser.open(f"{ORIGIN}/catalog")
    clock.advance(40)
    contacts = browser.open(f"{ORIGIN}/contacts")
    assert landing["visit"]["new"] and not catalog["visit"]["new"] and not contacts["visit"]["new"]
    assert landing["visit"]["id"] == catalog["visit"]["id"] == contacts["visit"]["id"]
    for page in (landing, catalog, contacts):  # the ad's traffic on every page of the visit
        assert page["source"]["source"] == "yandex" and page["source"]["campaign"] == "summer"
        assert page["phrase"] == "купить кондиционер" and KEYWORD_HEADLINE in page["swaps"]
        assert page["phone"]["pool"] == "yandex" and page["phone"]["number"] == landing["phone"]["number"]
    variant = landing["experiments"]["cta"]
    assert contacts["experiments"] == {}  # the experiment runs on / only

    beacon(climate, contacts["token"], "contacts-form")
    clock.advance(30)
    record = call(climate, contacts["phone"]["number"], clock.now)
    assert record["credited"] and record["visitor"] == VID
    assert record["experiments"] == {"cta": variant}  # seen on /, though the number was shown on /contacts
    visit = record["visit"]
    assert visit["id"] == landing["visit"]["id"] and visit["landing"] == "/"
    assert (visit["source"], visit["medium"], visit["campaign"], visit["phrase"]) == (
        "yandex", "cpc", "summer", "купить кондиционер")
    assert visit["click_ids"] == {"yclid": "777"}
    assert [page["path"] for page in visit["pages"]] == ["/", "/catalog", "/contacts"]

    report = climate.get("/v1/reports/climate", headers=REPORT).json()
    (cta,) = report["experiments"]
    row = next(row for row in cta["variants"] if row["variant"] == variant)
    assert row["converted"]["form"] == 1 and row["converted"]["call"] == 1


def test_a_visit_ends_after_the_time_out_and_a_direct_visit_keeps_the_last_ad(climate: TestClient,
                                                                               clock: Clock) -> None:
    browser = Browser(climate)
    first = browser.open(AD, ref="https://yandex.ru/")
    clock.advance(29 * 60)
    assert not browser.open(f"{ORIGIN}/catalog")["visit"]["new"]  # 29 minutes: the same visit
    clock.advance(31 * 60)
    later = browser.open(f"{ORIGIN}/catalog", ref="")  # typed in, 31 minutes later
    assert later["visit"]["new"] and later["visit"]["id"] != first["visit"]["id"]
    # Last non-direct attribution: the direct visit is still the ad's, with its headline.
    assert later["source"]["source"] == "yandex" and KEYWORD_HEADLINE in later["swaps"]


def test_a_new_ad_click_starts_a_new_visit_and_the_old_number_is_let_go(climate: TestClient, clock: Clock,
                                                                       store: redis.Redis) -> None:
    browser = Browser(climate)
    first = browser.open(AD, ref="https://yandex.ru/")
    clock.advance(60)
    google = browser.open(f"{ORIGIN}/?gclid=abc", ref="https://www.google.com/")
    assert google["visit"]["new"] and google["source"]["source"] == "google"
    assert KEYWORD_HEADLINE not in google["swaps"] and google["phone"]["pool"] == "everyone"
    # One number at a time: the Yandex number's hold ended when the new visit took another.
    held_until = store.zscore("sw:{climate:yandex}:held", first["phone"]["number"])
    assert held_until is not None and held_until <= clock.now * 1000


def test_the_sites_own_pages_continue_a_visit_and_other_sites_start_one(climate: TestClient, clock: Clock) -> None:
    browser = Browser(climate)
    browser.open(AD, ref="https://yandex.ru/")
    assert not browser.open(f"{ORIGIN}/a", ref=f"{ORIGIN}/")["visit"]["new"]
    assert not browser.open(f"{ORIGIN}/b", ref="")["visit"]["new"]  # a direct load (bookmark, typed)
    other = browser.open(f"{ORIGIN}/c", ref="https://forum.example/thread")
    assert other["visit"]["new"] and other["source"]["source"] == "forum.example"


def test_a_visit_that_starts_on_a_later_page_takes_the_campaign_of_the_sites_page_that_referred_it(
        climate: TestClient, clock: Clock) -> None:
    """A visitor who says yes to tracking on the second page (consent managers ask on every page
    until answered) starts the visit there, with no token: the landing page that referred it
    carries the ad's tags, and the visit, its number and its call are the ad's. Before, it was
    direct, and the campaign, the phrase and the yclid for Metrica were lost."""
    browser = Browser(climate)
    later = browser.open(f"{ORIGIN}/catalog", ref=AD)
    assert later["visit"]["new"] and later["source"]["source"] == "yandex" and later["source"]["campaign"] == "summer"
    assert later["phrase"] == "купить кондиционер" and KEYWORD_HEADLINE in later["swaps"]
    assert later["phone"]["pool"] == "yandex"
    clock.advance(30)
    on = browser.open(f"{ORIGIN}/contacts", ref=AD)  # a visit that goes on: the landing's tags are no news
    assert not on["visit"]["new"] and on["visit"]["id"] == later["visit"]["id"]
    visit = call(climate, on["phone"]["number"], clock.now)["visit"]
    assert (visit["landing"], visit["source"], visit["campaign"], visit["click_ids"]) == (
        "/catalog", "yandex", "summer", {"yclid": "777"})
    # Another site's page is read for its host alone, as before; the site's own page without
    # tags starts a direct visit.
    assert Browser(climate, "visits-visitor-000002").open(
        f"{ORIGIN}/catalog", ref="https://forum.example/?utm_source=spam")["source"]["source"] == "forum.example"
    direct = Browser(climate, "visits-visitor-000003").open(f"{ORIGIN}/catalog", ref=f"{ORIGIN}/")["source"]
    assert (direct["source"], direct["medium"], direct["campaign"]) == (None, "direct", None)


@pytest.mark.parametrize("token", ["", "garbage", "a.b", "eyJrIjoidmlzaXQifQ.AAAA"])
def test_a_missing_or_forged_visit_token_starts_a_visit(climate: TestClient, token: str) -> None:
    response = climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/", "vid": VID, "visit": token})
    assert response.status_code == 200 and response.json()["visit"]["new"]


def test_another_visitors_visit_token_is_not_theirs(climate: TestClient) -> None:
    theirs = Browser(climate, "visits-visitor-000002").open(AD, ref="https://yandex.ru/")
    mine = climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/x", "vid": VID,
                                             "visit": theirs["token"]}).json()
    assert mine["visit"]["new"] and mine["source"]["source"] is None


def test_a_visit_moved_from_another_token_is_refused(climate: TestClient) -> None:
    """The token's signature covers the visit it carries: a visit (here one from an ad) put in
    place of another one's, in a token of the same visitor, continues neither."""
    browser = Browser(climate)
    mine = browser.open(f"{ORIGIN}/", ref="")
    from_ad = Browser(climate).open(AD, ref="https://yandex.ru/")
    body, _, mac = mine["token"].split(".")
    swapped = f"{body}.{from_ad['token'].split('.')[1]}.{mac}"
    answer = climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/b", "vid": VID,
                                               "visit": swapped}).json()
    assert answer["visit"]["new"] and answer["source"]["source"] is None
    honest = climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/b", "vid": VID,
                                               "visit": mine["token"]}).json()
    assert not honest["visit"]["new"] and honest["visit"]["id"] == mine["visit"]["id"]


def signed_as_before(token: str, hex_mac: bool, secret: bytes = conftest.SECRET.encode()) -> str:
    """`token` as the service signed it before 2026-12-02: its payload in base64url, with a hex
    MAC of the attachment, a dot and the payload's part; before 2026-12-01 (not `hex_mac`), a
    base64url MAC of the payload's part, a dot and the attachment (service.tracking.tokens)."""
    body, attached, _ = token.split(".")
    payload = base64.urlsafe_b64encode(bytes.fromhex(body)).rstrip(b"=").decode()
    mac = hashlib.blake2b(key=hmac.digest(secret, b"decision tokens", "sha256"), digest_size=16)
    if hex_mac:
        mac.update(f"{attached}.{payload}".encode())
        return f"{payload}.{attached}.{mac.hexdigest()}"
    mac.update(f"{payload}.{attached}".encode())
    return f"{payload}.{attached}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode()}"


def test_a_page_with_an_address_of_thousands_of_characters_does_not_cost_the_next_page_its_answer(
        climate: TestClient) -> None:
    """The token carries the page's path: past what a visit token may be, the next page starts
    a visit of its own rather than fail."""
    browser = Browser(climate)
    browser.open(AD, ref="https://yandex.ru/")
    long = browser.open(f"{ORIGIN}/{'страница-' * 300}")
    assert not long["visit"]["new"] and long["source"]["source"] == "yandex"
    after = browser.open(f"{ORIGIN}/contacts")
    assert after["visit"]["new"] and after["phone"] is not None


@pytest.mark.parametrize("hex_mac", [False, True], ids=["base64-mac", "hex-mac"])
def test_a_visit_token_signed_in_an_older_format_continues_its_visit(climate: TestClient, hex_mac: bool) -> None:
    """A visit's token comes back for as long as its last ad counts (90 days): the tokens of a
    service from before a change are still read, and still checked."""
    landed = Browser(climate).open(AD, ref="https://yandex.ru/")
    old = signed_as_before(landed["token"], hex_mac)
    answer = climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/b", "vid": VID,
                                               "visit": old}).json()
    assert not answer["visit"]["new"] and answer["visit"]["id"] == landed["visit"]["id"]
    assert answer["source"]["source"] == "yandex"
    forged = signed_as_before(landed["token"], hex_mac, b"another-secret")
    answer = climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/b", "vid": VID,
                                               "visit": forged}).json()
    assert answer["visit"]["new"] and answer["source"]["source"] is None


def test_a_burst_of_made_up_visitors_from_one_address_cannot_take_a_pool(valkey_url: str, rules_dir: Path,
                                                                          store: redis.Redis, clock: Clock) -> None:
    """Pool squatting: one network may hold a fifth of a pool at once (SWAPLINE_NETWORK_SHARE),
    so the next real visitor from elsewhere still gets a number."""
    numbers = ", ".join(f'"+7 495 172-00-{n:02d}"' for n in range(10))
    rules = SITE.replace('numbers: ["+7 495 171-00-01", "+7 495 171-00-02"]', f"numbers: [{numbers}]")
    with site_client(valkey_url, rules_dir, clock, "climate", rules, network_share=20) as climate:
        def visitor(n: int, address: str) -> Any:
            return climate.get("/v1/decide", params={"site": "climate", "url": f"{ORIGIN}/", "vid": f"squat-{n:012d}"},
                               headers={"x-forwarded-for": address}).json()["phone"]

        burst = [visitor(n, "95.161.0.1") for n in range(50)]
        ipv6 = [visitor(100 + n, f"2a02:6b8:0:1::{n:x}") for n in range(50)]  # rotating inside one /64
        real = [visitor(200 + n, f"5.{n}.0.1") for n in range(8)]
    assert sum(phone["kind"] == "lease" for phone in burst) == 2  # a fifth of ten numbers
    assert sum(phone["kind"] == "lease" for phone in ipv6) == 2
    assert sum(phone["kind"] == "lease" for phone in real) == 6  # the rest of the pool, for real visitors


def test_without_consent_nothing_is_kept_and_no_number_is_leased(climate: TestClient, store: redis.Redis) -> None:
    answer = climate.get("/v1/decide", params={"site": "climate", "url": AD, "vid": VID, "consent": "0"}).json()
    assert answer["consent"] is False and answer["phone"] is None
    assert answer["experiments"] == {"cta": "control"} and KEYWORD_HEADLINE in answer["swaps"]
    assert not [key for key in store.scan_iter("sw:*") if b"{climate" in key and not key.endswith(b":numbers")
                and not key.endswith(b":free")]


def test_an_e_mail_address_in_a_pages_path_is_kept_as_e_mail(climate: TestClient, clock: Clock,
                                                              store: redis.Redis) -> None:
    """A page's path goes to the visit, its journey and the reports by landing page: an address
    in it (an unsubscribe link's) is kept as (e-mail), and its query string never."""
    page = Browser(climate).open(f"{ORIGIN}/unsubscribe/ivan.petrov%40mail.ru?phone=89161234567", ref="")
    beacon(climate, page["token"], "unsubscribed")
    entry, = climate.get("/v1/conversions/climate", headers=REPORT).json()["entries"]
    assert entry["visit"]["landing"] == "/unsubscribe/(e-mail)"
    assert [page["path"] for page in entry["visit"]["pages"]] == ["/unsubscribe/(e-mail)"]
    dump = b"".join(key + store.dump(key) for key in store.scan_iter("sw:*"))
    assert b"petrov" not in dump and b"9161234567" not in dump


def test_a_visitor_can_be_erased(climate: TestClient, clock: Clock, store: redis.Redis,
                                 caplog: pytest.LogCaptureFixture) -> None:
    browser = Browser(climate)
    landing, landing_at = browser.open(AD, ref="https://yandex.ru/"), int(clock.now * 1000)
    beacon(climate, landing["token"], "erased-form")
    clock.advance(30)
    visit = call(climate, landing["phone"]["number"], clock.now)["visit"]["id"]  # the browser's token carries it
    histories = sorted(key[:-32] for key in store.scan_iter("sw:{climate:calls}:*:*"))  # by their number's hash
    neighbour = Browser(climate, vid="the-next-in-the-log-01").open(f"{ORIGIN}/", ref="")
    beacon(climate, neighbour["token"], "their-form")  # logged next to theirs: a stream keeps both in one node
    before = [climate.get("/v1/reports/climate", params=params, headers=REPORT).json()
              for params in ({}, {"by": "source,campaign"})]
    logged = _log_bytes(store)
    assert VID.encode() in logged and visit.encode() in logged
    # What is kept of them, which they may ask to see.
    kept = climate.get(f"/v1/visitors/climate/{VID}", headers=REPORT).json()
    assert [(held["id"], held["campaign"], held["click_ids"], held["pages"]) for held in kept["visits"]] == \
        [(visit, "summer", {"yclid": "777"}, [{"at": landing_at, "path": "/"}])]
    day = datetime.datetime.fromtimestamp(clock.now, datetime.UTC).date().isoformat()  # the site counts days in UTC
    assert kept["experiments"] == {"cta": {"variant": landing["experiments"]["cta"], "page": "/", "day": day}}
    (held,) = kept["numbers"]  # with the keyed hash of the network they came from, which the store keeps for it
    assert held == {"pool": "yandex", "number": landing["phone"]["number"], "from": landing_at,
                    "until": landing_at + 15 * 60_000, "page": "/", "network_hash": held["network_hash"]}
    assert len(held["network_hash"]) == 16 and int(held["network_hash"], 16) >= 0
    assert [entry["id"] for entry in kept["conversions"]] == ["form:erased-form"]
    assert [(call["call_id"], call["caller_last_digits"]) for call in kept["calls"]] == [("visit-call-1", "4567")]
    refused = climate.delete(f"/v1/visitors/climate/{VID}")
    assert refused.status_code == 401
    with caplog.at_level(logging.INFO, logger="swapline"):
        erased = climate.delete(f"/v1/visitors/climate/{VID}", headers=REPORT)
    assert erased.status_code == 200, erased.text
    # The operator reads that the site's token erased someone, and not whom.
    (line,) = [record.getMessage() for record in caplog.records if "erased" in record.getMessage()]
    assert line.startswith("a visitor of site 'climate' erased with its report token: visits 1, ") and VID not in line
    assert erased.json()["erased"] == {"visits": 1, "assignments": 2, "leases": 1, "calls": 1, "log": 2,
                                       "tallied": 1}
    assert _naming(store, VID, visit) == []  # the visitor's id is nowhere in the store, nor its hash, nor its visit's
    # Nor in the bytes of the log, which its files keep: a stream keeps a deleted entry's bytes
    # while its node holds others (a hundred, by default), and its entries name conversions only.
    assert VID.encode() not in _log_bytes(store) and visit.encode() not in _log_bytes(store)
    # Nor the number they called from: its last digits, and its hash's history of calls.
    assert [orjson.loads(record)["caller_last_digits"] for record in store.hvals("sw:{climate:calls}:calls")] \
        == [None]
    assert histories == [b"sw:{climate:calls}:caller:", b"sw:{climate:calls}:target:"]
    assert not [key for key in store.scan_iter("sw:{climate:calls}:*:*") if key[:-32] in histories]
    # Nor their client network's hash (of their address): the lease still held gave its place back.
    pool = PoolKeys.of("climate", landing["phone"]["pool"])
    assert [orjson.loads(lease)["a"] for lease in store.hvals(pool.leases)] == [""]
    assert store.hlen(pool.networks) == 0
    assert [climate.get("/v1/reports/climate", params=params, headers=REPORT).json()
            for params in ({}, {"by": "source,campaign"})] == before  # the counts stay, the visitor too
    # A beacon with a token of theirs that is still good names them nowhere again.
    assert beacon(climate, landing["token"], "after-erasure")["outcome"] == "erased"
    # Their call stays in the log, counted, as its record does: credited to nobody known.
    log = climate.get("/v1/conversions/climate", headers=REPORT).json()["entries"]
    assert [(entry["id"], entry["visitor"], entry.get("visit"), (entry.get("call") or {}).get("caller_last_digits"))
            for entry in log] == [("form:their-form", "the-next-in-the-log-01", log[0]["visit"], None),
                                  ("call:visit-call-1", None, None, None)]
    assert not [key for key in store.scan_iter("sw:*") if VID.encode() in key]
    assert climate.get(f"/v1/visitors/climate/{VID}", headers=REPORT).json() == {
        "site": "climate", "vid": VID, "time_zone": "UTC", "visits": [], "experiments": {}, "numbers": [],
        "conversions": [], "calls": []}
    assert climate.delete("/v1/visitors/climate/not%20an%20id", headers=REPORT).status_code == 400
    # A call to the number they held, while the hold runs out, goes to nobody known, and says why.
    late = call(climate, landing["phone"]["number"], clock.now, "after-erasure", caller="+79035550111")
    assert (late["credited"], late["visitor"], late["reason"]) == (False, None, "erased_holder")


def test_a_caller_known_only_by_their_number_can_be_erased(climate: TestClient, clock: Clock,
                                                          store: redis.Redis) -> None:
    """A caller who asks by phone: their calls lose the number's last digits, in their records
    and in the call log, and their number's history goes; another caller's calls stay as they were, but for
    calls older than any history and calls to other numbers, which only the last digits tie to
    a caller."""
    landing = Browser(climate).open(AD, ref="https://yandex.ru/")
    held = landing["phone"]["number"]
    call(climate, held, clock.now - 3 * 86_400, "old-theirs", caller="8 916 123-45-67")
    call(climate, held, clock.now - 3 * 86_400, "old-alike", caller="+79031114567")  # ends as theirs
    histories = sorted(store.scan_iter("sw:{climate:calls}:*:*"))
    store.delete(*histories)  # as their TTL does a day after those calls
    clock.advance(30)
    assert call(climate, held, clock.now, "theirs", caller="+7 (916) 123-45-67")["visitor"] == VID
    clock.advance(3600)
    call(climate, held, clock.now, "theirs-again", caller="89161234567")
    call(climate, held, clock.now, "alike", caller="+79031114567")
    call(climate, held, clock.now, "another", caller="+79035550000")
    call(climate, "+7 926 000-00-01", clock.now, "to-a-mobile", caller="+79161234567")  # none of the site's
    call(climate, held, clock.now - 2 * 86_400, "alike-imported", caller="+79031114567")  # their history has it
    before = climate.get("/v1/reports/climate", params={"by": "source"}, headers=REPORT).json()
    refused = [climate.post("/v1/callers/climate/forget", json={"number": "+79161234567"}).status_code,
               climate.post("/v1/callers/climate/forget", json={"number": "anonymous"}, headers=REPORT).json(),
               climate.post("/v1/callers/climate/forget", content=b"+79161234567", headers=REPORT).status_code,
               climate.post("/v1/callers/climate/forget", json={"number": {"$gt": ""}}, headers=REPORT).status_code,
               climate.post("/v1/callers/climate", json={"number": "9" * 5_000}, headers=REPORT).status_code]
    assert refused[0] == 401 and refused[1]["error"]["code"] == "invalid_number" and refused[2:] == [400, 400, 413]
    # What is kept of them, which they may ask to see: their calls, and those only the last digits tie to them.
    kept = climate.post("/v1/callers/climate", json={"number": "+7 916 123-45-67"}, headers=REPORT).json()
    assert [(call["call_id"], call["earlier_call"]) for call in kept["calls"]] == [("theirs", None),
                                                                                   ("theirs-again", "theirs")]
    assert sorted(call["call_id"] for call in kept["calls_ending_alike"]) == ["old-alike", "old-theirs", "to-a-mobile"]
    erased = climate.post("/v1/callers/climate/forget", json={"number": "8 (916) 123-45-67"}, headers=REPORT)
    assert erased.status_code == 200, erased.text
    assert erased.json() == {"site": "climate", "erased": {"calls": 2, "calls_ending_alike": 3, "log": 5},
                             "credited_to": [VID]}  # whom the operator may erase too, if they were the caller
    records = {call_id.decode(): orjson.loads(record)["caller_last_digits"]
               for call_id, record in store.hgetall("sw:{climate:calls}:calls").items()}
    assert records == {"old-theirs": None, "old-alike": None, "theirs": None, "theirs-again": None,
                       "to-a-mobile": None, "alike": "4567", "another": "0000", "alike-imported": "4567"}
    # Nor does a call back of theirs name the earlier call: the two were one caller's.
    assert orjson.loads(store.hget("sw:{climate:calls}:calls", "theirs-again"))["earlier_call"] is None
    logged = climate.get("/v1/calls/climate", headers=REPORT).json()["entries"]
    assert {entry["call_id"]: entry["caller_last_digits"] for entry in logged} == records  # counted still: no digits
    assert {entry["call_id"]: entry["visitor"] for entry in logged}["theirs"] == VID  # whom the number was shown to
    assert not [entry for entry in logged if "4567" in orjson.dumps(entry).decode() and entry["caller_last_digits"]
                is None]  # nor the digits anywhere else in the entry
    assert len(list(store.scan_iter("sw:{climate:calls}:caller:*"))) == 2  # the other two callers'
    assert climate.get("/v1/reports/climate", params={"by": "source"}, headers=REPORT).json() == before
    assert climate.post("/v1/callers/climate", json={"number": "+79161234567"}, headers=REPORT).json() == {
        "site": "climate", "time_zone": "UTC", "calls": [], "calls_ending_alike": []}
    # Their next call is a first one: nothing remembers the number.
    clock.advance(60)
    assert call(climate, held, clock.now, "after", caller="+79161234567")["unique"] is True


def test_an_erasure_finds_the_experiments_and_pools_that_left_the_rules_and_a_visitor_waiting_for_a_number(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """Erasures come when experiments have ended and pools changed: what the visitor left in
    them goes all the same, as does their place among the visitors waiting for a number."""
    one_number = SITE.replace('numbers: ["+7 495 170-00-01", "+7 495 170-00-02"]', 'numbers: ["+7 495 170-00-01"]')
    with site_client(valkey_url, rules_dir, clock, "climate", one_number) as climate:
        Browser(climate, vid="holds-the-only-number").open(AD, ref="https://yandex.ru/")
        landing = Browser(climate).open(AD, ref="https://yandex.ru/")
        beacon(climate, landing["token"], "waiting-form")
        visit = climate.get("/v1/conversions/climate", headers=REPORT).json()["entries"][0]["visit"]["id"]
    assert landing["phone"]["number"] == "+78005553535" and landing["experiments"] == {"cta": "control"}
    assert store.zscore("sw:{climate:yandex}:waiting", VID) and _naming(store, VID, visit)
    ended = SITE.replace("id: yandex", "id: yandex-2025").partition("experiments:")[0]
    with site_client(valkey_url, rules_dir, clock, "climate", ended) as climate:
        erased = climate.delete(f"/v1/visitors/climate/{VID}", headers=REPORT).json()["erased"]
    assert erased == {"visits": 1, "assignments": 2, "leases": 0, "calls": 0, "log": 1, "tallied": 1}
    assert _naming(store, VID, visit) == []


def _log_bytes(store: redis.Redis) -> bytes:
    """The conversion log, its stream and its entries' bodies, as the store's files keep them
    (`DUMP`, uncompressed)."""
    for node in servers(store):
        node.config_set("rdbcompression", "no")
    return b"".join(store.dump(f"sw:{{climate:log}}:{name}") or b"" for name in ("entries", "bodies"))


def _naming(store: redis.Redis, vid: str, visit: str) -> list[bytes]:
    """The keys whose name or value names the visitor, their hash in the tables of visits, or their visit."""
    wanted = (vid.encode(), visitor_hash(vid), visit.encode())
    return [key for key in store.scan_iter("sw:*")
            if any(name in key for name in wanted) or any(name in value for value in _values(store, key)
                                                          for name in wanted)]


def _values(store: redis.Redis, key: bytes) -> list[bytes]:
    kind = store.type(key)
    if kind == b"hash":
        return [field + b"=" + value for field, value in store.hgetall(key).items()]
    if kind == b"string":
        return [store.get(key) or b""]
    if kind == b"list":
        return list(store.lrange(key, 0, -1))
    if kind == b"zset":
        return list(store.zrange(key, 0, -1))
    if kind == b"stream":  # the conversion log
        return [value for _, fields in store.xrange(key) for value in fields.values()]
    return list(store.smembers(key)) if kind == b"set" else []


DAY = 86400
MOBILE = {"user-agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                        "Chrome/130.0 Mobile Safari/537.36", "sec-fetch-mode": "cors"}


def test_a_sites_own_visit_timeout_decides_when_a_visit_ends(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                             clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE + "visits: {timeout: 5m}\n") as climate:
        browser = Browser(climate)
        first = browser.open(AD, ref="https://yandex.ru/")
        clock.advance(4 * 60)
        same = browser.open(f"{ORIGIN}/catalog")
        clock.advance(6 * 60)
        later = browser.open(f"{ORIGIN}/contacts")
    assert not same["visit"]["new"] and same["visit"]["id"] == first["visit"]["id"]
    assert later["visit"]["new"] and later["visit"]["id"] != first["visit"]["id"]  # not 30m: the site said 5m


def test_the_visit_timeout_counts_from_the_last_page_not_the_first(climate: TestClient, clock: Clock) -> None:
    browser = Browser(climate)
    first = browser.open(AD, ref="https://yandex.ru/")
    pages = []
    for n in range(3):  # a page every 20 minutes: an hour in all, twice the 30-minute timeout
        clock.advance(20 * 60)
        pages.append(browser.open(f"{ORIGIN}/page-{n}"))
    assert all(not page["visit"]["new"] and page["visit"]["id"] == first["visit"]["id"] for page in pages)
    assert pages[-1]["source"]["source"] == "yandex"


@pytest.mark.parametrize(("settings", "window"), [("", 90), ("visits: {lookback: 7d}\n", 7)],
                         ids=["default-90d", "site-7d"])
def test_a_direct_visit_keeps_the_last_ad_only_within_the_lookback_counted_from_the_ad(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, settings: str, window: int) -> None:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE + settings) as climate:
        browser = Browser(climate)
        browser.open(AD, ref="https://yandex.ru/")
        clock.advance((window - 1) * DAY)
        within = browser.open(f"{ORIGIN}/", ref="")  # typed in, a day before the window ends
        clock.advance(30)
        within_call = call(climate, within["phone"]["number"], clock.now, "within-lookback")
        clock.advance(2 * DAY)
        # Two days after the last visit, but past the window since the ad: that visit does not extend it.
        after = browser.open(f"{ORIGIN}/", ref="")
        clock.advance(30)
        after_call = call(climate, after["phone"]["number"], clock.now, "past-lookback")
    assert within["visit"]["new"] and within["source"]["source"] == "yandex" and within["phone"]["pool"] == "yandex"
    assert KEYWORD_HEADLINE in within["swaps"] and within_call["visit"]["click_ids"] == {"yclid": "777"}
    assert after["visit"]["new"] and (after["source"]["source"], after["source"]["medium"]) == (None, "direct")
    assert KEYWORD_HEADLINE not in after["swaps"] and after["phone"]["pool"] == "everyone"
    assert after_call["visit"]["id"] == after["visit"]["id"] and after_call["visit"]["click_ids"] == {}


@pytest.mark.parametrize(("attribution", "source", "medium", "campaign", "click_ids", "pool"), [
    ("last_non_direct", "yandex", "cpc", "summer", {"yclid": "777"}, "yandex"),
    ("last_click", None, "direct", None, {}, "everyone"),
])
def test_a_direct_visit_after_an_ad_is_credited_as_the_sites_attribution_model_says(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, attribution: str, source: str | None,
        medium: str, campaign: str | None, click_ids: dict[str, str], pool: str) -> None:
    """Under last non-direct attribution the direct visit's call carries the ad's click id, so an
    offline conversion uploaded by yclid or gclid still finds its click."""
    rules = SITE + f"visits: {{attribution: {attribution}}}\n"
    with site_client(valkey_url, rules_dir, clock, "climate", rules) as climate:
        browser = Browser(climate)
        browser.open(AD, ref="https://yandex.ru/")
        clock.advance(DAY)
        browser.open(f"{ORIGIN}/", ref="")  # the next day, typed in
        clock.advance(DAY)
        direct = browser.open(f"{ORIGIN}/contacts", ref="")  # and the day after: credited through that visit
        clock.advance(30)
        record = call(climate, direct["phone"]["number"], clock.now)
    assert direct["visit"]["new"] and (direct["source"]["source"], direct["source"]["medium"]) == (source, medium)
    assert direct["phone"]["pool"] == pool and (KEYWORD_HEADLINE in direct["swaps"]) == (source is not None)
    visit = record["visit"]
    assert visit["id"] == direct["visit"]["id"] and visit["landing"] == "/contacts"
    assert (visit["source"], visit["medium"], visit["campaign"]) == (source, medium, campaign)
    assert visit["click_ids"] == click_ids


def test_a_direct_visit_credited_to_an_earlier_search_is_one_visit_over_its_pages(climate: TestClient,
                                                                                 clock: Clock) -> None:
    browser = Browser(climate)  # from a search engine: an arrival without click ids
    browser.open(f"{ORIGIN}/", ref=f"https://yandex.ru/search/?text={quote('купить кондиционер')}")
    clock.advance(DAY)
    direct = browser.open(f"{ORIGIN}/", ref="")  # the next day, typed in
    clock.advance(60)
    second = browser.open(f"{ORIGIN}/contacts", ref=f"{ORIGIN}/")
    assert direct["visit"]["new"] and (direct["source"]["source"], direct["source"]["medium"]) == ("yandex", "organic")
    assert not second["visit"]["new"] and second["visit"]["id"] == direct["visit"]["id"]
    assert second["source"] == direct["source"] and second["phone"]["number"] == direct["phone"]["number"]


def test_another_click_on_the_same_ad_starts_a_new_visit_with_its_own_click_id(climate: TestClient,
                                                                              clock: Clock) -> None:
    browser = Browser(climate)
    first = browser.open(AD, ref="https://yandex.ru/")  # yclid=777
    clock.advance(60)
    browser.open(f"{ORIGIN}/price")
    clock.advance(60)
    again = browser.open(AD.replace("yclid=777", "yclid=778"), ref="https://yandex.ru/")  # paid for again
    clock.advance(60)
    reloaded = browser.open(AD.replace("yclid=777", "yclid=778"), ref="https://yandex.ru/")
    clock.advance(30)
    record = call(climate, again["phone"]["number"], clock.now)
    assert again["visit"]["new"] and again["visit"]["id"] != first["visit"]["id"]
    assert not reloaded["visit"]["new"] and reloaded["visit"]["id"] == again["visit"]["id"]
    assert record["visit"]["id"] == again["visit"]["id"] and record["visit"]["click_ids"] == {"yclid": "778"}


def test_a_new_campaign_alone_starts_a_new_visit(climate: TestClient, clock: Clock) -> None:
    browser = Browser(climate)
    summer = browser.open(f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_campaign=summer", ref="")
    clock.advance(5 * 60)
    winter_url = f"{ORIGIN}/sale?utm_source=yandex&utm_medium=cpc&utm_campaign=winter"
    winter = browser.open(winter_url, ref="")  # another link of the same source, no click id, no referrer
    clock.advance(60)
    reloaded = browser.open(winter_url, ref="")
    assert winter["visit"]["new"] and winter["visit"]["id"] != summer["visit"]["id"]
    assert winter["source"]["campaign"] == "winter"
    # Back on the landing page with its own campaign: no news, the visit goes on.
    assert not reloaded["visit"]["new"] and reloaded["visit"]["id"] == winter["visit"]["id"]


def test_a_call_after_a_new_visit_in_the_same_pool_carries_the_new_visit(climate: TestClient, clock: Clock) -> None:
    """The visitor keeps their number from one visit to the next in the same pool (the hold
    lives), but a call is credited to the visit they were on when they called: the new one, or,
    for a call that began before it, the one that ended."""
    browser = Browser(climate)
    summer = browser.open(f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_campaign=summer", ref="")
    clock.advance(5 * 60)
    winter = browser.open(f"{ORIGIN}/sale?utm_source=yandex&utm_medium=cpc&utm_campaign=winter", ref="")
    clock.advance(30)
    record = call(climate, winter["phone"]["number"], clock.now)
    assert winter["phone"]["number"] == summer["phone"]["number"]  # one number at a time
    assert record["visit"]["id"] == winter["visit"]["id"] and record["visit"]["campaign"] == "winter"
    assert [page["path"] for page in record["visit"]["pages"]] == ["/sale"]
    earlier = call(climate, summer["phone"]["number"], clock.now - 60, call_id="visit-call-before-winter")
    assert earlier["visit"]["id"] == summer["visit"]["id"] and earlier["visit"]["campaign"] == "summer"
    pools = climate.get("/v1/pools/climate", headers=REPORT).json()
    assert [pool["held"] for pool in pools["pools"] if pool["pool"] == "yandex"] == [1]  # still one number


@pytest.mark.parametrize(("name", "value", "referrer"), [
    ("gclid", "Cj0KCQiA-x_Yz123", "https://www.google.com/"),  # base64url: no dot
    ("ymclid", "16987654321098765", "https://market.yandex.ru/"),
    ("fbclid", "IwAR2xYz-AbC_987", "https://l.facebook.com/"),
])
def test_an_ad_click_ids_value_reaches_the_call_record(climate: TestClient, clock: Clock, name: str, value: str,
                                                       referrer: str) -> None:
    landing = Browser(climate).open(f"{ORIGIN}/?{name}={value}", ref=referrer)
    clock.advance(30)
    record = call(climate, landing["phone"]["number"], clock.now)
    assert record["visit"]["id"] == landing["visit"]["id"] and record["visit"]["click_ids"] == {name: value}


def test_a_call_record_carries_the_visits_content_engine_device_geo_and_times(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, tiny_geoip: Path) -> None:
    landed_at = int(clock.now * 1000)
    search = f"https://yandex.ru/search/?text={quote('купить кондиционер')}"
    with site_client(valkey_url, rules_dir, clock, "climate", SITE, geoip_db=tiny_geoip) as climate:
        browser = Browser(climate, headers={**MOBILE, "x-forwarded-for": "10.5.0.1"})  # a phone in Moscow
        landing = browser.open(f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_content=banner-2", ref=search)
        clock.advance(40)
        browser.open(f"{ORIGIN}/catalog")
        clock.advance(20)
        called_at = clock.now
        clock.advance(10)
        browser.open(f"{ORIGIN}/contacts")  # after the call began: not what the caller saw before calling
        record = call(climate, landing["phone"]["number"], called_at)
    visit = record["visit"]
    assert (visit["content"], visit["engine"], visit["phrase"]) == ("banner-2", "yandex", "купить кондиционер")
    assert visit["device"] == "mobile"
    assert visit["geo"] == {"country": "RU", "region": "RU-MOW", "city": "Москва"}  # as the Russian site names it
    assert visit["started"] == landed_at and visit["landing"] == "/"
    assert visit["pages"] == [{"at": landed_at, "path": "/"}, {"at": landed_at + 40_000, "path": "/catalog"}]


def test_a_visit_keeps_the_place_of_its_first_page_as_it_keeps_its_number(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, tiny_geoip: Path) -> None:
    """A phone's address moves between cities as its network pleases, a VPN's as the visitor
    turns it on: the city its headline names stays the one of its number."""
    city_rule = "  - id: city\n    swap: [{selector: .where, text: \"{{ city.in }}\"}]\n"
    with site_client(valkey_url, rules_dir, clock, "climate", SITE.replace("rules:\n", "rules:\n" + city_rule),
                     geoip_db=tiny_geoip) as climate:
        browser = Browser(climate, headers={**MOBILE, "x-forwarded-for": "10.5.0.1"})  # in Moscow
        pages = [browser.open(AD, ref="https://yandex.ru/")]
        for address in ("10.1.0.1", "10.9.0.1", "192.0.2.1"):  # Saint Petersburg, London, nowhere GeoIP knows
            clock.advance(60)
            browser.headers["x-forwarded-for"] = address
            pages.append(browser.open(f"{ORIGIN}/catalog"))
        clock.advance(31 * 60)  # past the visit's timeout: the next visit is where the visitor is now
        browser.headers["x-forwarded-for"] = "10.1.0.1"
        later = browser.open(f"{ORIGIN}/catalog")
    where = [[swap["value"] for swap in page["swaps"] if swap["selector"] == ".where"] for page in [*pages, later]]
    assert where == [["в Москве"]] * 4 + [["в Санкт-Петербурге"]]
    assert {page["geo"]["city"] for page in pages} == {"Москва"} and later["geo"]["city"] == "Санкт-Петербург"
    assert {page["visit"]["id"] for page in pages} == {pages[0]["visit"]["id"]} and later["visit"]["new"]
    assert {page["phone"]["number"] for page in pages} == {pages[0]["phone"]["number"]}


def test_a_town_the_database_names_otherwise_than_the_bundled_table_keeps_its_name_everywhere(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, tiny_geoip: Path) -> None:
    """Reports, logs and calls named cities by a table from the 2018 GeoLite2, which calls
    Верхняя Пышма «Пышма» (another town) and knows no Russian name of places it lacks: a
    current database's visitor saw one name, and the reports showed another."""
    with site_client(valkey_url, rules_dir, clock, "climate", SITE, geoip_db=tiny_geoip) as climate:
        page = Browser(climate, headers={**MOBILE, "x-forwarded-for": "10.6.0.1"}).open(AD, ref="https://yandex.ru/")
        clock.advance(30)
        answer = call(climate, page["phone"]["number"], clock.now)
        logged = climate.get("/v1/calls/climate", headers=REPORT).json()["entries"]
        rows = climate.get("/v1/reports/climate", params={"by": "city"}, headers=REPORT).json()["rows"]
        found = climate.get("/v1/reports/climate", params={"by": "source", "city": "Верхняя Пышма"},
                            headers=REPORT).json()["rows"]
    assert page["geo"]["city"] == answer["visit"]["geo"]["city"] == logged[0]["visit"]["geo"]["city"] == "Верхняя Пышма"
    assert [row["city"] for row in rows] == ["Верхняя Пышма"] and [row["visits"] for row in found] == [1]
    another = GeoDB(tiny_geoip)  # another process: it learns the name from the store
    assert another.city_in("Verkhnyaya Pyshma", "ru") == "Пышма"
    another.learn({english.decode(): russian.decode() for english, russian in store.hgetall(CITY_NAMES).items()})
    assert another.city_in("Verkhnyaya Pyshma", "ru") == "Верхняя Пышма"


def test_a_store_that_does_not_answer_leaves_the_city_names_a_process_knows(tiny_geoip: Path) -> None:
    """A call's answer names its visitor's city after the call is credited: a store that dies
    in between must not turn the answer into a 500 (the fault test found it)."""
    geo = GeoDB(tiny_geoip)
    geo.learn({"Verkhnyaya Pyshma": "Верхняя Пышма"})
    gone = Store(redis.asyncio.Redis(port=conftest.free_port(), socket_connect_timeout=5))  # nobody listens
    asyncio.run(learn_city_names(gone, geo))
    assert geo.city_in("Verkhnyaya Pyshma", "ru") == "Верхняя Пышма"


def test_a_long_visits_journey_keeps_its_latest_pages_and_its_landing(climate: TestClient, clock: Clock) -> None:
    """The journey is bounded (service.tracking.visits.MAX_PAGES, 50): a long visit keeps its
    latest pages, and its record still names where and when it landed."""
    landed_at = int(clock.now * 1000)
    browser = Browser(climate)
    browser.open(AD, ref="https://yandex.ru/")
    for n in range(1, 60):
        clock.advance(10)
        last = browser.open(f"{ORIGIN}/item-{n}")
    record = call(climate, last["phone"]["number"], clock.now)
    visit = record["visit"]
    assert visit["landing"] == "/" and visit["started"] == landed_at
    assert [page["path"] for page in visit["pages"]] == [f"/item-{n}" for n in range(10, 60)]
    assert visit["pages"][0]["at"] == landed_at + 100_000 and visit["pages"][-1]["at"] == landed_at + 590_000


@pytest.mark.parametrize("days", [None, 2], ids=["default", "SWAPLINE_VISIT_DAYS=2"])
def test_a_visits_record_and_journey_expire_after_the_visit_retention(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, days: int | None) -> None:
    settings = {} if days is None else {"visit_days": days}
    retention = (days or 7) * DAY
    with site_client(valkey_url, rules_dir, clock, "climate", SITE, **settings) as climate:
        browser = Browser(climate)
        landing = browser.open(AD, ref="https://yandex.ru/")
        clock.advance(60)
        browser.open(f"{ORIGIN}/catalog")  # its number's lease takes the journey's write along
    prefix = f"sw:{{climate|{VID}}}:"
    for key in (f"{prefix}visit:{landing['visit']['id']}", f"{prefix}pages:{landing['visit']['id']}"):
        assert retention - 60 < store.ttl(key) <= retention, key


FUNNEL_SITE = SITE.replace("pools:\n", """pools:
  - id: contacts
    page: /contacts
    numbers: ["+7 495 173-00-01", "+7 495 173-00-02"]
    hold: 15m
""").replace("rules:\n", """rules:
  - id: paid
    when: {medium: cpc}
    swap: [{selector: .badge, text: "Скидка за клик"}]
  - id: summer
    when: {campaign: summer}
    swap: [{selector: .promo, text: "Летняя акция"}]
""")


def test_medium_and_campaign_rules_and_the_pool_hold_for_the_whole_visit(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "climate", FUNNEL_SITE) as climate:
        browser = Browser(climate)
        landing = browser.open(AD, ref="https://yandex.ru/")
        clock.advance(40)
        contacts = browser.open(f"{ORIGIN}/contacts")  # an internal link, no utm in its address
        stranger = Browser(climate, "visits-visitor-000003").open(f"{ORIGIN}/contacts", ref="")
    for page in (landing, contacts):
        texts = {swap["selector"]: swap["value"] for swap in page["swaps"]}
        assert texts[".badge"] == "Скидка за клик" and texts[".promo"] == "Летняя акция"
    assert not contacts["visit"]["new"]
    # The visit's number stays, though a visit that starts on /contacts gets that page's pool.
    assert contacts["phone"]["pool"] == "yandex" and contacts["phone"]["number"] == landing["phone"]["number"]
    assert stranger["phone"]["pool"] == "contacts" and stranger["swaps"] == []
