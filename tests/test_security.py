"""Security by default: nothing identifying at rest, secrets compared in constant time."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.app import create_app
from service.config import _networks
from service.front.middleware import TrustedProxies
from tests.conftest import BROWSER_HEADERS, make_settings, start, stop

IPS = ["95.161.0.1", "46.242.0.1", "217.118.83.1", "2a02:6b8::1"]
CALLERS = ["+79161234567", "+79035550011"]


def test_no_raw_ip_or_caller_number_in_the_store(pool_client: TestClient, store: redis.Redis) -> None:
    for n, ip in enumerate(IPS):
        body = pool_client.get("/v1/decide", params={"site": "pooltest", "url": "/", "vid": f"private-visitor-{n:04d}"},
                               headers={"x-forwarded-for": ip}).json()
        pool_client.post("/v1/events", content=orjson.dumps({"type": "form", "id": f"p{n}", "token": body["token"]}))
        if body["phone"] and body["phone"]["number"]:
            raw = orjson.dumps({"call_id": f"private-{n}", "called": body["phone"]["number"], "start": 1795000000,
                                "caller": CALLERS[n % 2], "talk_seconds": 60})
            signature = "sha256=" + hmac.new(b"test-calls-secret-0001", raw, hashlib.sha256).hexdigest()
            assert pool_client.post("/v1/calls?site=pooltest", content=raw,
                                    headers={"x-swapline-signature": signature}).status_code == 200
    everything = b"".join(key + (store.dump(key) or b"") for key in store.scan_iter("*"))
    assert store.hlen("sw:{pooltest:calls}:calls") >= 2  # there was something to leak
    for secret in [*IPS, *CALLERS, *(c[2:] for c in CALLERS), *(c[-7:] for c in CALLERS)]:
        assert secret.encode() not in everything, secret


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Records every constant-time comparison the service makes."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    for module in ("service.front.auth", "service.integrations.calls", "service.integrations.telephony",
                   "service.tracking.tokens"):
        monkeypatch.setattr(f"{module}.hmac.compare_digest", spy)
    return calls


def test_a_service_without_its_own_secret_says_that_a_copy_of_the_store_can_undo_its_hashes(
        valkey_url: str, rules_dir: Path, store: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """The key of the hashes then lives beside them: whoever copies the store can try every number."""
    for secret, warned in ((None, True), ("an-operators-own-secret", False)):
        caplog.clear()
        with TestClient(create_app(make_settings(valkey_url, rules_dir, secret=secret))):
            pass
        said = [record.getMessage() for record in caplog.records if "SWAPLINE_SECRET is not set" in record.getMessage()]
        assert bool(said) is warned, secret
    assert store.get("sw:secret") is not None  # the one the first service made, and said so


def test_tokens_and_signatures_are_compared_in_constant_time(pool_client: TestClient,
                                                            compare_spy: list[tuple[Any, Any]]) -> None:
    pool_client.get("/v1/pools/pooltest", headers={"authorization": "Bearer guess-0001"})
    assert (b"guess-0001", b"test-report-token-0001") in compare_spy
    pool_client.post("/v1/calls?site=pooltest", content=b"{}", headers={"x-swapline-signature": "sha256=00"})
    assert any(given == b"sha256=00" for given, _ in compare_spy)
    pool_client.post("/v1/events", content=b'{"type": "form", "id": "x", "token": "abc.def"}')
    assert len(compare_spy) >= 3  # the decision token's MAC too


def test_any_page_may_read_a_beacon_refusal_only_the_sites_origins_its_acceptance(client: TestClient) -> None:
    token = client.get("/v1/decide", params={"site": "demo", "url": "/"}).json()["token"]
    form = {"type": "form", "id": "cors-1", "token": token}
    own = client.post("/v1/events", content=orjson.dumps(form), headers={"origin": "http://localhost:8000"})
    assert own.status_code == 202 and own.headers["access-control-allow-origin"] == "http://localhost:8000"
    # The snippet must see a refusal to stop sending an event again: the site is not always known.
    for body, origin, status in [({**form, "token": "forged.token"}, "http://localhost:8000", 401),
                                 ({**form, "type": "nope"}, "http://localhost:8000", 400),
                                 (form, "https://elsewhere.example", 403)]:
        refused = client.post("/v1/events", content=orjson.dumps(body), headers={"origin": origin})
        assert refused.status_code == status and refused.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(("trusted", "country"), [("", None), ("127.0.0.1/32", "RU")])
def test_only_the_configured_proxies_may_name_the_client(tmp_path: Path, valkey_url: str, trusted: str,
                                                         country: str | None) -> None:
    """The server in front (uvicorn) must not trust X-Forwarded-For on its own, not even from localhost."""
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES=trusted)
    try:
        body = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/"},
                         headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}).json()
    finally:
        stop(service)
    assert body["geo"]["country"] == country  # 46.242.0.1 is Moscow; the socket peer, localhost, is nowhere


@pytest.mark.parametrize(("peer", "headers", "client"), [
    ("10.0.0.5", [(b"x-forwarded-for", b"203.0.113.7")], "203.0.113.7"),  # from our proxy
    ("198.51.100.9", [(b"x-forwarded-for", b"203.0.113.7")], "198.51.100.9"),  # anyone else: ignored
    # what the client wrote itself stands left of what our proxies appended
    ("10.0.0.5", [(b"x-forwarded-for", b"1.1.1.1, 203.0.113.7, 10.0.0.9")], "203.0.113.7"),
    # a header repeated on separate lines counts as one, in order
    ("10.0.0.5", [(b"x-forwarded-for", b"1.1.1.1"), (b"user-agent", b"x"), (b"x-forwarded-for", b"203.0.113.7")],
     "203.0.113.7"),
    ("10.0.0.5", [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.9")], "203.0.113.7"),
    ("10.0.0.5", [(b"user-agent", b"x")], "10.0.0.5"),  # no header: the proxy itself
    # what the client wrote is not read, so nothing there refuses it: Squid's "unknown", junk
    ("10.0.0.5", [(b"x-forwarded-for", b"unknown, 203.0.113.7")], "203.0.113.7"),
    ("10.0.0.5", [(b"x-forwarded-for", b"<script>, 999.1.1.1, 203.0.113.7, 10.0.0.9")], "203.0.113.7"),
    # however long: 40 addresses, or 4 KB of them, written by the client before our proxy's
    ("10.0.0.5", [(b"x-forwarded-for", b", ".join([b"1.1.1.1"] * 40 + [b"203.0.113.7"]))], "203.0.113.7"),
    ("10.0.0.5", [(b"x-forwarded-for", b"a" * 4096 + b", 203.0.113.7")], "203.0.113.7"),
    # a port, as some load balancers write it
    ("10.0.0.5", [(b"x-forwarded-for", b"203.0.113.7:5555")], "203.0.113.7"),
    ("10.0.0.5", [(b"x-forwarded-for", b"[2001:db8::7]:443, 10.0.0.9:80")], "2001:db8::7"),
    ("10.0.0.5", [(b"x-forwarded-for", b"2001:db8::7")], "2001:db8::7"),
])
def test_the_client_is_the_rightmost_address_our_proxies_did_not_write(
        peer: str, headers: list[tuple[bytes, bytes]], client: str) -> None:
    scope: dict[str, Any] = {"type": "http", "client": (peer, 4711), "headers": headers}
    TrustedProxies(_networks("10.0.0.0/8")).resolve(scope)
    assert scope["client"] == (client, 4711)


@pytest.mark.parametrize(("peer", "proto", "scheme"), [
    ("10.0.0.5", b"https", "https"),  # our TLS-terminating proxy says so
    ("10.0.0.5", b"http, https", "https"),  # the nearest proxy's word is the last one
    ("10.0.0.5", b"gopher", "http"),  # nonsense changes nothing
    ("198.51.100.9", b"https", "http"),  # anyone else: ignored
])
def test_the_scheme_is_what_our_proxy_says(peer: str, proto: bytes, scheme: str) -> None:
    scope: dict[str, Any] = {"type": "http", "client": (peer, 4711), "scheme": "http",
                             "headers": [(b"x-forwarded-proto", proto)]}
    TrustedProxies(_networks("10.0.0.0/8")).resolve(scope)
    assert scope["scheme"] == scheme


def test_csv_cells_never_start_a_formula() -> None:
    """OWASP's CSV injection advice: text that a spreadsheet would run gets an apostrophe first."""
    from service.analytics.reports import sheet
    from service.analytics.sheets import csv_text

    row = {"exposed": 1, "overflowed": 0, "visitors": 1, "converted": {}, "rate": -0.5, "interval": None}
    hostile = ["=HYPERLINK(\"http://evil\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx",
               "+74951200001+cmd|' /C calc'!A0", "+74951200001\n=1+1"]  # a phone number, then a formula
    report = {"metric": "any", "from": None, "to": None, "pages": [{"page": text, **row} for text in hostile],
              "experiments": [{"experiment": "e", "page": "/", "srm": None, "warnings": hostile, "verdict": None,
                               "variants": [{"variant": "b", "weight": 50, "lift": {"absolute": -0.25}, **row}]}]}
    rows = list(csv.reader(io.StringIO(csv_text(sheet(report, "shop", "2026-04-05")))))
    pages = [line[2] for line in rows if line[0] == "page"]
    # a line break may start a cell too (a pasted table, Excel cutting at «;»): an apostrophe after it
    assert pages == ["'" + text for text in hostile[:-1]] + ["'+74951200001\n'=1+1"]
    experiment = next(line for line in rows if line[0] == "experiment")
    header = rows[0]
    assert experiment[header.index("warnings")].startswith("'=HYPERLINK")
    assert experiment[header.index("rate")] == "-0.5" and experiment[header.index("lift_abs")] == "-0.25"  # numbers


@pytest.mark.parametrize(("typed", "ours"), [
    ("/demo", "/demo/"),
    ("/dashboard/demo/", "/dashboard/demo"),
    ("/dashboard/demo/sources/?by=campaign&q=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C", "/dashboard/demo/sources"),
    ("/s.js/", "/s.js"),
])
def test_an_address_with_a_slash_more_or_less_redirects_on_this_host_whatever_host_the_request_names(
        client: TestClient, typed: str, ours: str) -> None:
    """A redirect to the Host a request named (Starlette's own) lets one request, behind a cache
    that does not key on Host, send everyone who types the address to another site."""
    answer = client.get(typed, headers={"host": "evil.com"}, follow_redirects=False)
    query = typed.partition("?")[2]
    assert answer.status_code == 307 and "evil" not in answer.headers["location"]
    assert answer.headers["location"] == ours + (f"?{query}" if query else "")  # the filters kept, as typed
    followed = client.get(typed)
    assert followed.status_code == 200 and followed.url.path == ours
    assert client.get(f"/nothing{typed}", headers={"host": "evil.com"}, follow_redirects=False).status_code == 404
