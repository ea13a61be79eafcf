"""Abuse: scripts that skew experiments, floods from one address or one IPv6 /64, token
guessing, and old tokens. Limits are counted in the store, so every worker shares them."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.app import create_app
from tests.conftest import BROWSER_HEADERS, Clock, make_settings
from tests.test_reports import SHOP, TOKEN


@pytest.fixture
def shop_rules(rules_dir: Path) -> Path:
    (rules_dir / "shop.yaml").write_text(SHOP)
    return rules_dir


def app_client(valkey_url: str, rules: Path, clock: Clock, **settings: Any) -> TestClient:
    app = create_app(make_settings(valkey_url, rules, **settings))
    client = TestClient(app, client=("127.0.0.1", 40000), headers=BROWSER_HEADERS)
    client.__enter__()
    app.state.runtime.clock = clock
    return client


@pytest.fixture
def shop(valkey_url: str, shop_rules: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    client = app_client(valkey_url, shop_rules, clock)
    yield client
    client.__exit__(None, None, None)


def decide(client: TestClient, vid: str, ip: str = "95.161.0.1", **headers: str) -> httpx.Response:
    return client.get("/v1/decide", params={"site": "shop", "url": "/", "vid": vid},
                      headers={"x-forwarded-for": ip, **headers})


def beacon(client: TestClient, token: str, event_id: str, ip: str = "95.161.0.1", **headers: str) -> httpx.Response:
    return client.post("/v1/events", content=orjson.dumps({"type": "form", "id": event_id, "token": token}),
                       headers={"x-forwarded-for": ip, **headers})


@contextlib.contextmanager
def scripted(client: TestClient) -> Iterator[TestClient]:
    """The client as a plain HTTP library is: a browser's user agent, but no fetch metadata."""
    del client.headers["sec-fetch-mode"]
    try:
        yield client
    finally:
        client.headers["sec-fetch-mode"] = "cors"


def test_a_script_posing_as_a_browser_cannot_skew_an_experiment(shop: TestClient) -> None:
    """The audit's attack: 150 scripted page views, then beacons for the visitors who got the
    variant to favour (42 of 46 "converted"). A script is a bot: control content, counted nowhere."""
    with scripted(shop) as script:
        bodies = [script.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"script-{n:010d}"},
                             headers={"x-forwarded-for": f"198.51.100.{n % 200}"}).json() for n in range(150)]
        refused = [script.post("/v1/events", content=orjson.dumps({"type": "form", "id": f"s{n}",
                                                                    "token": body["token"]}))
                   for n, body in enumerate(bodies[:42])]
    assert all(body["bot"] is True and body["experiments"] == {} and body["phone"] is None for body in bodies)
    assert {response.status_code for response in refused} == {403}
    assert refused[0].json()["error"]["code"] == "not_a_browser"
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    assert report["excluded"]["bot_page_views"] == 150
    assert report["experiments"] == [] and report["pages"] == []


def test_scripts_take_no_number(shop: TestClient) -> None:
    """Pool squatting: throw-away visitor ids from a script lease nothing; the next person gets one."""
    with scripted(shop) as script:
        for n in range(25):  # the pool has 20 numbers
            assert decide(script, f"squatter-{n:010d}").json()["phone"] is None
    assert decide(shop, "real-person-00000001").json()["phone"]["kind"] == "lease"


def test_a_beacon_counts_only_for_a_page_view_the_store_has_seen(shop: TestClient) -> None:
    runtime = shop.app.state.runtime
    # Signed by the service, for a visitor whose page view never reached the store (the
    # decision was made while the store was down, or the token was lifted from elsewhere).
    token = runtime.signer.sign({"s": "shop", "v": "never-seen-visitor-01", "p": "/", "x": {"hero": "b"},
                                 "t": int(runtime.clock())})
    assert beacon(shop, token, "unseen").json()["outcome"] == "unexposed"
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    assert report["experiments"] == [] and report["pages"] == []


def test_tokens_expire_after_token_days(shop: TestClient, clock: Clock) -> None:
    token = decide(shop, "expiring-visitor-0001").json()["token"]
    clock.advance(3 * 86_400 - 60)  # SWAPLINE_TOKEN_DAYS=3: a page left open for almost three days
    assert beacon(shop, token, "late").status_code == 202
    clock.advance(120)
    expired = beacon(shop, token, "too-late")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "expired_token"
    runtime = shop.app.state.runtime
    from_2017 = runtime.signer.sign({"s": "shop", "v": "expiring-visitor-0001", "p": "/", "x": {}, "t": 1_500_000_000})
    assert beacon(shop, from_2017, "ancient").status_code == 401


def test_a_token_spelt_another_way_is_refused_as_tampered(shop: TestClient) -> None:
    token = decide(shop, "respelt-visitor-0001").json()["token"]
    payload, _, rest = token.partition(".")
    respelt = [payload.upper(), " ".join(payload[n:n + 2] for n in range(0, len(payload), 2)), f" {payload}"]
    refused = [beacon(shop, f"{spelling}.{rest}", f"respelt-{n}") for n, spelling in enumerate(respelt)]
    assert [(answer.status_code, answer.json()["error"]["code"]) for answer in refused] == [(401, "invalid_token")] * 3
    assert beacon(shop, token, "as-signed").status_code == 202


def test_decisions_are_limited_per_ipv4_address(valkey_url: str, shop_rules: Path, store: redis.Redis,
                                               clock: Clock) -> None:
    client = app_client(valkey_url, shop_rules, clock, decision_rate=5)
    try:
        codes = [decide(client, f"flood-visitor-{n:06d}", ip="203.0.113.9").status_code for n in range(7)]
        refused = decide(client, "flood-visitor-late01", ip="203.0.113.9")
        other = decide(client, "other-visitor-0001", ip="203.0.113.10")  # the next address is someone else
        clock.advance(60)  # a new minute
        again = decide(client, "flood-visitor-again1", ip="203.0.113.9")
    finally:
        client.__exit__(None, None, None)
    assert codes == [200] * 5 + [429] * 2
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert other.status_code == 200 and again.status_code == 200


def test_rotating_addresses_inside_one_ipv6_64_share_a_limit(valkey_url: str, shop_rules: Path, store: redis.Redis,
                                                             clock: Clock) -> None:
    client = app_client(valkey_url, shop_rules, clock, decision_rate=20, beacon_rate=10)
    network = ipaddress.ip_network("2a02:6b8:b010:a0ff::/64")
    try:
        addresses = [str(network[n * 7919 + 1]) for n in range(30)]
        codes = [decide(client, f"v6-visitor-{n:08d}", ip=address).status_code for n, address in enumerate(addresses)]
        token = decide(client, "v6-visitor-other", ip="2a02:6b8:b010:a100::1").json()["token"]  # the next /64
        beacons = [beacon(client, token, f"b{n}", ip=str(network[n + 5])).status_code for n in range(12)]
    finally:
        client.__exit__(None, None, None)
    assert codes == [200] * 20 + [429] * 10
    assert beacons == [202] * 10 + [429] * 2


def test_forged_and_malformed_beacons_count_against_their_network_too(valkey_url: str, shop_rules: Path,
                                                                      store: redis.Redis, clock: Clock) -> None:
    """Whoever posts made-up tokens or bodies costs the service a signature check each: their
    network's limit holds them as it holds real beacons, and another network is not held."""
    client = app_client(valkey_url, shop_rules, clock, beacon_rate=10)
    try:
        forged = [beacon(client, "forged.token", f"f{n}", ip="203.0.113.50").status_code for n in range(8)]
        malformed = [client.post("/v1/events", content=b"not json", headers={"x-forwarded-for": "203.0.113.50"})
                     .status_code for _ in range(4)]
        other = beacon(client, "forged.token", "f-other", ip="203.0.113.51").status_code
    finally:
        client.__exit__(None, None, None)
    assert forged == [401] * 8 and malformed == [400, 400, 429, 429] and other == 401


def test_limits_are_shared_by_every_worker(valkey_url: str, shop_rules: Path, store: redis.Redis,
                                           clock: Clock) -> None:
    """Two service processes' worth of state on one store: one client's requests, spread over
    both, meet one limit (give or take the request each worker lets through before it hears)."""
    workers = [app_client(valkey_url, shop_rules, clock, decision_rate=10) for _ in range(2)]
    try:
        codes = [decide(workers[n % 2], f"shared-visitor-{n:06d}", ip="203.0.113.77").status_code for n in range(30)]
    finally:
        for worker in workers:
            worker.__exit__(None, None, None)
    assert 10 <= codes.count(200) <= 11 and codes[-10:] == [429] * 10


def test_wrong_report_tokens_are_throttled_per_address(valkey_url: str, shop_rules: Path, store: redis.Redis,
                                                       clock: Clock) -> None:
    client = app_client(valkey_url, shop_rules, clock)  # SWAPLINE_SIGNIN_ATTEMPTS: 10 per 15 minutes
    guess = {"x-forwarded-for": "203.0.113.50"}
    try:
        wrong = [client.get("/v1/reports/shop", headers={**guess, "authorization": f"Bearer guess-{n}"}).status_code
                 for n in range(10)]
        locked = client.get("/v1/reports/shop", headers={**guess, **TOKEN})  # even the right one, for now
        login = client.post("/dashboard/shop/login", data={"token": "guess-11"}, headers=guess)
        elsewhere = client.get("/v1/reports/shop", headers={"x-forwarded-for": "203.0.113.51", **TOKEN})
        pools = client.get("/v1/pools/shop", headers={**guess, **TOKEN})
        demo_token = {"authorization": "Bearer demo-report-token-change-me"}
        other_site = client.get("/v1/reports/demo", headers={**guess, **demo_token})
        clock.advance(15 * 60)
        later = client.get("/v1/reports/shop", headers={**guess, **TOKEN})
    finally:
        client.__exit__(None, None, None)
    assert wrong == [401] * 10
    assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 900
    assert login.status_code == 429 and "Too many wrong tokens" in login.text and login.headers["retry-after"]
    assert pools.status_code == 429
    assert elsewhere.status_code == 200 and later.status_code == 200
    assert other_site.status_code == 200  # an office reading two sites' reports keeps the other one


def sign_in(client: TestClient, token: str, ip: str, **headers: str) -> httpx.Response:
    return client.post("/dashboard/shop/login", content=f"token={token}",
                       headers={"x-forwarded-for": ip, "content-type": "application/x-www-form-urlencoded", **headers},
                       follow_redirects=False)


def test_another_sites_page_cannot_lock_an_office_out_of_sign_in(valkey_url: str, shop_rules: Path,
                                                                 store: redis.Redis, clock: Clock) -> None:
    """A page anywhere can make its visitors' browsers post wrong tokens (`fetch(…, {mode: "no-cors"})`):
    refused before they count. Guesses from the dashboard's own page still do."""
    client = app_client(valkey_url, shop_rules, clock)
    office, elsewhere = "203.0.113.60", "203.0.113.61"
    evil = {"origin": "https://evil.example"}
    try:
        foreign = [sign_in(client, f"wrong-{n}", office, **{"sec-fetch-site": "cross-site", **evil})
                   for n in range(12)]
        foreign += [sign_in(client, "wrong", office, **{"sec-fetch-site": "same-site", "origin": "https://x.testserver"}),
                    sign_in(client, "wrong", office, **evil),  # a browser without Sec-Fetch-Site
                    sign_in(client, "wrong", office, origin="null"),  # …from a sandboxed frame
                    sign_in(client, "wrong", office, origin="https://testserver")]  # not over http, as here
        plain = client.post("/dashboard/shop/login", content="token=wrong", follow_redirects=False,
                            headers={"x-forwarded-for": office, "content-type": "text/plain;charset=UTF-8"})
        right = sign_in(client, "shop-report-token-0001", office, **{"sec-fetch-site": "same-origin"})
        report = client.get("/v1/reports/shop", headers={"x-forwarded-for": office, **TOKEN})
        # The dashboard's own form: Sec-Fetch-Site same-origin and, its page sending no referrer, Origin null.
        own = {"sec-fetch-site": "same-origin", "origin": "null"}
        guesses = [sign_in(client, f"guess-{n}", elsewhere, **own).status_code for n in range(10)]
        locked = sign_in(client, "shop-report-token-0001", elsewhere, **own)
        behind_tls = sign_in(client, "shop-report-token-0001", office, origin="https://testserver",
                             **{"x-forwarded-proto": "https"})  # the scheme our proxy says the browser used
    finally:
        client.__exit__(None, None, None)
    assert [(answer.status_code, answer.json()["error"]["code"]) for answer in foreign] == \
        [(403, "cross_site_sign_in")] * 16
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_content_type"
    assert right.status_code == 303 and report.status_code == 200
    assert guesses == [401] * 10 and locked.status_code == 429
    assert behind_tls.status_code == 303


def test_the_store_counts_only_networks_that_send_more_than_a_handful(valkey_url: str, shop_rules: Path,
                                                                       store: redis.Redis, clock: Clock) -> None:
    """Counted in steps of a twentieth of the limit (30 of the default 600 a minute): nearly
    every visitor costs the store nothing; workers together pass at most the limit and a step each."""
    client = app_client(valkey_url, shop_rules, clock)
    network = client.app.state.runtime.decision_limit.network("203.0.113.90")
    counter = f"sw:{{limit:decisions:{network}}}:{int(clock.now // 60)}"  # docs/STORAGE.md
    try:
        for n in range(29):
            decide(client, f"step-visitor-{n:08d}", ip="203.0.113.90")
        before = store.get(counter)
        decide(client, "step-visitor-last0001", ip="203.0.113.90")
    finally:
        client.__exit__(None, None, None)
    assert before is None and int(store.get(counter)) == 30

    workers = [app_client(valkey_url, shop_rules, clock, decision_rate=40) for _ in range(2)]  # steps of 2
    try:
        codes = [decide(workers[n % 2], f"stepped-{n:010d}", ip="203.0.113.91").status_code for n in range(60)]
    finally:
        for worker in workers:
            worker.__exit__(None, None, None)
    assert 40 <= codes.count(200) <= 40 + 2 * 2 and codes[-10:] == [429] * 10
