"""Dynamic number insertion: leases, heartbeats, exhaustion, static numbers, pool statistics."""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from service.app import create_app
from service.rules import rulefiles
from service.rules.phrase import NO_REFERRAL
from service.tracking import sites, upgrade, visits
from service.tracking.ledger import LedgerKeys
from service.tracking.pools import PoolKeys
from service.tracking.store import ScriptCall
from service.tracking.tokens import TokenSigner
from service.tracking.visitors import valid_vid
from tests.conftest import POOL_SITE, SECRET, Clock, make_settings, servers, site_client, wait_for

POOL = {"+74951900001", "+74951900002", "+74951900003"}
OVERFLOW = "+74951900000"
REPORT = {"authorization": "Bearer test-report-token-0001"}


def visit(client: TestClient, vid: str, url: str = "/", headers: dict[str, str] | None = None, **extra: str) -> Any:
    response = client.get("/v1/decide", params={"site": "pooltest", "url": url, "vid": vid, **extra}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def vid(n: int) -> str:
    return f"pool-visitor-{n:08d}"


ASK_AGAIN = "205: ask again"


def heartbeat(client: TestClient, token: str) -> str | None:
    """The number a heartbeat kept for the token's page, or ASK_AGAIN: 205, the page shows a
    number its visitor no longer holds, and asks for a new one."""
    response = client.post("/v1/events", content=f'{{"type": "heartbeat", "token": "{token}"}}',
                           headers={"content-type": "text/plain"})
    if response.status_code == 205:
        assert response.content == b""  # HTTP allows a 205 no body
        return ASK_AGAIN
    assert response.status_code == 202, response.text
    return response.json()["number"]  # type: ignore[no-any-return]


def test_phone_carries_the_leased_number_in_its_formats(pool_client: TestClient) -> None:
    phone = visit(pool_client, vid(1))["phone"]
    assert phone["kind"] == "lease" and phone["pool"] == "small" and phone["number"] in POOL
    digits = phone["number"][-2:]
    assert phone["international"] == f"+7 495 190-00-{digits}"
    assert phone["national"] == f"8 (495) 190-00-{digits}"
    assert phone["replaces"] == "+78005553535" and phone["hold"] == 60
    assert phone["heartbeat"] == 20_000  # the snippet renews the hold three times a hold
    assert all(page_number(phone).search(printed) for printed in ("8 (800) 555-35-35", "+7 800 5553535", "88005553535"))
    assert not page_number(phone).search("+7 495 190-00-01")


def test_a_visitor_keeps_the_number_across_pages_and_on_return(pool_client: TestClient, clock: Clock) -> None:
    first = visit(pool_client, vid(1))["phone"]["number"]
    for _ in range(3):
        clock.advance(50)  # every view restarts the 60 s hold
        assert visit(pool_client, vid(1))["phone"]["number"] == first
    others = {visit(pool_client, vid(n))["phone"]["number"] for n in (2, 3)}
    assert others == POOL - {first}  # concurrent visitors get different numbers


def test_a_new_visitor_gets_the_number_free_the_longest(pool_client: TestClient, clock: Clock) -> None:
    numbers = {}
    for n in (1, 2, 3):
        numbers[n] = visit(pool_client, vid(n))["phone"]["number"]
        clock.advance(10)
    clock.advance(45)
    # Leased at +0, +10, +20, the holds end at +60, +70, +80. Now is +75: the numbers of
    # visitors 1 and 2 are free, 1's for longer.
    assert visit(pool_client, vid(4))["phone"]["number"] == numbers[1]
    assert visit(pool_client, vid(5))["phone"]["number"] == numbers[2]


def test_heartbeats_keep_the_number_while_the_page_is_open(pool_client: TestClient, clock: Clock) -> None:
    body = visit(pool_client, vid(1))
    for _ in range(5):
        clock.advance(55)
        assert heartbeat(pool_client, body["token"]) == body["phone"]["number"]
    for n in (2, 3, 4):
        visit(pool_client, vid(n))
    # 275 s later the number is still the reader's: three newcomers took the other two and overflowed.
    assert visit(pool_client, vid(1))["phone"]["number"] == body["phone"]["number"]
    clock.advance(61)  # no heartbeat for a whole hold: a tab hidden a while, a page back from the cache
    # Nobody took the number meanwhile: the page still shows it, and its next heartbeat has it again.
    assert heartbeat(pool_client, body["token"]) == body["phone"]["number"]
    assert visit(pool_client, vid(5))["phone"]["number"] != body["phone"]["number"]
    clock.advance(61)
    assert {visit(pool_client, vid(n))["phone"]["number"] for n in (6, 7, 8)} == POOL  # newcomers took it
    assert heartbeat(pool_client, body["token"]) == ASK_AGAIN


def test_a_page_shown_again_after_its_hold_gets_its_number_back_unless_another_visitor_has_it(
        pool_client: TestClient, clock: Clock) -> None:
    """Two pages hidden (or left in the browser's back/forward cache) for longer than their
    holds, and the pool has given their numbers back to whoever comes next."""
    first = visit(pool_client, vid(1))
    clock.advance(10)
    second = visit(pool_client, vid(2))
    clock.advance(70)  # both holds over
    third = visit(pool_client, vid(3))["phone"]["number"]  # the number free the longest: the one nobody had
    assert third not in {first["phone"]["number"], second["phone"]["number"]}
    assert heartbeat(pool_client, first["token"]) == first["phone"]["number"]  # still free: theirs again
    assert visit(pool_client, vid(4))["phone"]["number"] == second["phone"]["number"]
    assert visit(pool_client, vid(5))["phone"]["kind"] == "overflow"
    assert heartbeat(pool_client, second["token"]) == ASK_AGAIN  # visitor 4 has it
    # A call to the first number now is the first visitor's, from their new lease.
    runtime = pool_client.app.state.runtime  # type: ignore[attr-defined]
    pool = runtime.rules.sites["pooltest"].pool("small")
    holder = pool_client.portal.call(runtime.pools.holder, "pooltest", pool,  # type: ignore[union-attr]
                                     first["phone"]["number"], int(clock.now * 1000))
    assert holder["v"] == vid(1)


def test_the_next_page_after_the_hold_ended_shows_the_visitors_number_again_if_it_is_free(
        pool_client: TestClient, clock: Clock) -> None:
    """A support engineer's ticket: a visitor read a page past its hold with no heartbeat (a
    blocker, a phone asleep), then opened the next page of the visit: it showed another number
    though theirs was free, and a call to the one they had written down went to nobody. Their
    heartbeat took it back; their next page, now, does too."""
    first = visit(pool_client, vid(1))
    clock.advance(70)  # its hold is over; the number is free again, the pool's newest free one
    again = visit(pool_client, vid(1), visit=first["token"])
    assert again["phone"]["number"] == first["phone"]["number"] and again["visit"]["new"] is False
    assert visit(pool_client, vid(2))["phone"]["number"] != first["phone"]["number"]  # held again
    runtime = pool_client.app.state.runtime  # type: ignore[attr-defined]
    pool = runtime.rules.sites["pooltest"].pool("small")
    holder = pool_client.portal.call(runtime.pools.holder, "pooltest", pool,  # type: ignore[union-attr]
                                     first["phone"]["number"], int(clock.now * 1000))
    assert holder["v"] == vid(1)  # a call now is theirs


def page_number(phone: dict[str, Any]) -> re.Pattern[str]:
    """What the snippet finds a page's number by, in Python's `re`."""
    return re.compile(phone["replaces_pattern"].replace(r"\p{Pd}", "-"))


def test_a_page_that_asks_again_after_its_number_went_to_another_visitor_replaces_that_number(
        pool_client: TestClient, clock: Clock) -> None:
    """The page (a tab come back to, or a single-page app's next route) shows the number it was
    given, not the site's own: the next decision finds that one too, and puts its own in its place."""
    first = visit(pool_client, vid(1))
    shown = first["phone"]["international"]
    clock.advance(61)  # its hold is over, and newcomers take every number
    assert {visit(pool_client, vid(n))["phone"]["number"] for n in (2, 3, 4)} == POOL
    assert heartbeat(pool_client, first["token"]) == ASK_AGAIN
    again = visit(pool_client, vid(1), visit=first["token"])
    assert again["phone"]["kind"] == "overflow" and again["phone"]["number"] == OVERFLOW
    assert page_number(again["phone"]).search(shown) and page_number(again["phone"]).search("8 (800) 555-35-35")


def test_a_number_taken_out_of_the_pool_is_not_renewed(pool_client: TestClient, clock: Clock,
                                                       rules_dir: Path) -> None:
    """A marketer replaces a number that stopped working: a visitor reading on keeps it until
    their hold ends, however many heartbeats and pages, then gets one that works."""
    body = visit(pool_client, vid(1))
    held = body["phone"]["number"]
    (rules_dir / "pooltest.yaml").write_text(POOL_SITE.replace(f'"+7 495 190-00-0{held[-1]}"', '"+7 495 190-00-09"'))
    runtime = pool_client.app.state.runtime  # type: ignore[attr-defined]
    runtime.rules = rulefiles.load(rules_dir)  # what a reload does
    pool_client.portal.call(runtime.sync_pools)  # type: ignore[union-attr]
    clock.advance(40)
    assert heartbeat(pool_client, body["token"]) == held
    assert visit(pool_client, vid(1))["phone"]["number"] == held
    clock.advance(21)  # the hold of 60 s from the lease: neither the heartbeat nor the page renewed it
    assert heartbeat(pool_client, body["token"]) == ASK_AGAIN
    assert visit(pool_client, vid(1))["phone"]["number"] in POOL - {held} | {"+74951900009"}


def test_exhausted_pool_gives_the_overflow_number_flagged(pool_client: TestClient) -> None:
    leased = {visit(pool_client, vid(n))["phone"]["number"] for n in (1, 2, 3)}
    assert leased == POOL
    body = visit(pool_client, vid(4))
    assert body["phone"]["kind"] == "overflow" and body["phone"]["number"] == OVERFLOW
    assert TokenSigner(SECRET.encode()).verify(body["token"])["o"] is True


def test_an_erased_visitor_turned_to_the_overflow_number_is_counted_as_nobody_known(
        pool_client: TestClient, store: redis.Redis) -> None:
    """A pool's statistics keep the visitors it turned away by their ids for a month: erasure
    takes the id out, and the count stays."""
    for n in (1, 2, 3, 4):
        visit(pool_client, vid(n))
    def overflowed() -> int:
        return int(pool_client.get("/v1/pools/pooltest", headers=REPORT).json()["pools"][0]["overflowed_visitors"])

    assert overflowed() == 1
    assert pool_client.delete(f"/v1/visitors/pooltest/{vid(4)}", headers=REPORT).status_code == 200
    assert overflowed() == 1
    assert not [key for key in store.scan_iter("sw:*") if any(vid(4).encode() in member for member in (
        store.smembers(key) if store.type(key) == b"set" else ()))]


def test_a_store_that_lost_the_pools_gets_them_back_without_a_restart(
        pool_client: TestClient, store: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """A flushed store (or one restarted without persistence, or an empty node failed over to)
    has no numbers: the visitor who finds that out gets the overflow number, the next ones
    their own again, and the log says what happened."""
    assert visit(pool_client, vid(1))["phone"]["number"] in POOL
    store.flushall()
    assert visit(pool_client, vid(2))["phone"]["number"] == OVERFLOW
    wait_for("a leased number after the flush", lambda: visit(pool_client, vid(3))["phone"]["number"] in POOL)
    assert any("lost number pools (pooltest/small)" in record.getMessage() for record in caplog.records)
    wait_for("the secret's fingerprint back", lambda: store.exists("sw:secret:fingerprint"))


def test_readiness_fails_while_the_pools_are_lost_and_brings_them_back(pool_client: TestClient,
                                                                       store: redis.Redis) -> None:
    assert pool_client.get("/readyz").status_code == 200
    store.flushall()
    lost = pool_client.get("/readyz")
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "pools_missing", lost.text
    assert "pooltest/small" in lost.json()["error"]["message"]
    wait_for("ready again", lambda: pool_client.get("/readyz").status_code == 200)
    assert visit(pool_client, vid(1))["phone"]["number"] in POOL


def test_a_full_store_is_told_of_as_a_failing_one(pool_client: TestClient, store: redis.Redis,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A store at its maxmemory (with noeviction, as DEPLOY.md asks) answers a PING, and refuses
    every lease: decisions go without numbers, and readiness, the log and the store errors
    metric (which Prometheus' SwaplineStoreFailing reads) say so, as for a store that is down."""
    def failures() -> float:
        metrics = pool_client.get("/metrics").text
        return float(re.search(r"^swapline_store_errors_total (\S+)$", metrics, re.MULTILINE).group(1))  # type: ignore[union-attr]

    nodes = servers(store)
    assert {node.config_get("maxmemory-policy")["maxmemory-policy"] for node in nodes} == {"noeviction"}
    before = failures()
    for node in nodes:
        node.config_set("maxmemory", 1)
    try:
        assert store.ping()
        answer = visit(pool_client, vid(1))
        ready = pool_client.get("/readyz")
    finally:
        for node in nodes:
            node.config_set("maxmemory", 0)
    assert answer["degraded"] is True and answer["phone"] is None  # the page keeps its own number
    said = ready.json()["error"]["message"]
    assert ready.status_code == 503 and said.startswith("the store refuses writes:") and "maxmemory" in said, said
    assert failures() > before
    assert any(record.getMessage().startswith("store unavailable: the store refuses writes: ")  # redis-py's reader
               and "maxmemory" in record.getMessage() for record in caplog.records)  # (a cluster's) drops the OOM
    assert pool_client.get("/readyz").status_code == 200


def test_a_store_that_evicts_is_named_at_start(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Managed stores often come with an LRU policy: full, they drop leases, visits and calls
    without a word, which nothing can tell from keys never written. Said once, at start."""
    nodes = servers(store)
    for node in nodes:
        node.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with TestClient(create_app(make_settings(valkey_url, rules_dir))):
            pass
    finally:
        for node in nodes:
            node.config_set("maxmemory-policy", "noeviction")
    (said,) = [record.getMessage() for record in caplog.records if "maxmemory-policy" in record.getMessage()]
    assert said.startswith("the store's maxmemory-policy is allkeys-lru:") and "set it to noeviction" in said
    caplog.clear()
    with TestClient(create_app(make_settings(valkey_url, rules_dir))):
        pass
    assert not [record for record in caplog.records if "the store's" in record.getMessage()]


def test_static_numbers_per_source(pool_client: TestClient, store: redis.Redis) -> None:
    phone = visit(pool_client, vid(1), url="/?utm_source=yandex")["phone"]
    assert phone["kind"] == "static" and phone["number"] == "+78005553536" and phone["pool"] == "yandex"
    assert store.zcard("sw:{pooltest:small}:held") == 0  # nothing leased


def test_pages_outside_the_pool_keep_the_page_number(pool_client: TestClient) -> None:
    assert visit(pool_client, vid(1), url="/contacts")["phone"] is None


def from_network(client: TestClient, n: int) -> Any:
    """Visitor `n`'s page view from a network of their own, as a crowd's visitors come."""
    return visit(client, vid(n), headers={"x-forwarded-for": f"203.0.113.{n}"})


def test_pool_statistics_and_recommended_size(pool_client: TestClient, clock: Clock) -> None:
    for n in range(1, 8):  # 7 visitors within a minute: 3 leased, 4 overflowed
        from_network(pool_client, n)
    clock.advance(20)
    for n in (5, 6):  # two who overflowed come back to the page: no more arrivals, nobody more waiting
        assert from_network(pool_client, n)["phone"]["kind"] == "overflow"
    clock.advance(41)
    from_network(pool_client, 8)  # reclaims the three ended holds
    response = pool_client.get("/v1/pools/pooltest", headers=REPORT)
    assert response.status_code == 200
    (stats,) = response.json()["pools"]
    assert stats["pool"] == "small" and stats["numbers"] == 3
    assert stats["held"] == 1 and stats["peak_held"] == 3
    assert stats["overflowed_visitors"] == 4 and stats["capped_visitors"] == 0
    assert stats["arrivals_peak_hour"] == 8
    assert (stats["average_hold_s"], stats["holds_ended"]) == (60.0, 3)
    # Little's law: 8 arrivals/hour × 60 s = 0.13 concurrent; 7 visitors wanted a number at once.
    assert stats["peak_wanted"] == 7
    assert stats["recommended_size"] == 7


def test_visitors_of_a_network_past_its_share_are_no_demand_to_size_the_pool_for(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """One address sends visitor after visitor (an office, or a script making up ids): past its
    share they get the overflow number, each an arrival once, and the pool is not told to grow."""
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE, network_share=34) as client:  # 1 of 3
        for n in range(1, 7):
            visit(client, vid(n))
        assert visit(client, vid(6))["phone"]["kind"] == "overflow"  # again: the same arrival
        (stats,) = client.get("/v1/pools/pooltest", headers=REPORT).json()["pools"]
        tab = numbers_tab(client)
    # Two numbers stayed free: those five were turned away by their network's share, and more
    # numbers would not have helped them.
    assert (stats["held"], stats["overflowed_visitors"], stats["capped_visitors"]) == (1, 0, 5)
    assert stats["arrivals_peak_hour"] == 6
    # Little's law: 6 arrivals an hour × 60 s is 0.1 at once, and three standard deviations: 2, not 6.
    assert stats["peak_wanted"] == 1 and stats["recommended_size"] == 2
    assert ("5 visitors in the last week got the overflow number while numbers were free: their network already held "
            "its share of the pool. More numbers would not have helped them.") in tab


def numbers_tab(client: TestClient, reader: str = "en") -> str:
    """The dashboard's Numbers tab of `pooltest` as its reader reads it: the words, one space apart."""
    response = client.get("/dashboard/pooltest/numbers", headers={**REPORT, "accept-language": reader})
    assert response.status_code == 200, response.text
    inline = re.sub(r"</?span[^>]*>", "", response.text.partition("<body>")[2])  # a number in a sentence
    return " ".join(re.sub(r"<[^>]+>", " ", inline).split())


def test_the_numbers_tab_says_whether_each_pool_has_numbers_enough_and_when_it_had_not(
        pool_client: TestClient, clock: Clock) -> None:
    """The owner's question, "are there numbers enough?", answered in words for each pool, with
    the days it ran short; the numbers as people read them."""
    assert 'name="token"' in pool_client.get("/dashboard/pooltest/numbers").text  # signed in only
    assert "No visitor has had a number from this pool in the last 30 days: do its conditions match" in numbers_tab(
        pool_client)  # a pool whose conditions match nobody
    visit(pool_client, vid(1))
    tab = numbers_tab(pool_client)
    assert "Enough numbers: at most 1 of 3 were held at once, and no visitor found them all held." in tab
    assert "3 numbers, each held for 60 s after the visitor's last page." in tab
    assert "With none free, a visitor gets the overflow number, +7 495 190-00-00." in tab
    assert "Fixed numbers Pool Number yandex +7 800 555-35-36" in tab
    for n in range(2, 8):  # 7 visitors at once: 3 hold the numbers, 4 find none free
        from_network(pool_client, n)
    tab = numbers_tab(pool_client)
    assert ("Too few numbers: in the last week 4 visitors found none free, and their calls are credited to nobody. "
            "Give the pool about 7 numbers.") in tab
    assert "shorten" not in tab  # a hold of 60 s is short already: a call after it would be nobody's
    assert "small 3 3 (100.0%) 3 7 7 60 s 4 7" in tab  # the pools' figures, as the API gives them
    assert "Found none free Turned away by their network's share 2026-11-18 3 7 4 0 2026-11-17 0 0 0 0" in tab
    russian = numbers_tab(pool_client, "ru")
    assert "Мало номеров: за последнюю неделю 4 посетителям не хватило номера" in russian
    assert "18.11.2026 3 7 4 0" in russian and "3 (100,0%)" in russian
    clock.advance(8 * 86_400)  # a week on, the shortage is history
    assert "No visitor found the numbers all held in the last week; 4 did in the last 30 days." in numbers_tab(
        pool_client)


def test_a_pool_short_of_numbers_with_a_long_hold_may_shorten_it_instead(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE.replace("hold: 60s", "hold: 15m")) as client:
        for n in range(1, 6):  # 5 visitors at once for 3 numbers
            from_network(client, n)
        assert "Give the pool about" in numbers_tab(client)
        assert "numbers. Or shorten its hold, which needs fewer." in numbers_tab(client)
        assert "Или сократите удержание: тогда номеров нужно меньше." in numbers_tab(client, "ru")


def test_the_numbers_tab_warns_of_chance_peaks_a_pool_would_not_cover(pool_client: TestClient, clock: Clock) -> None:
    """A pool that has not run short yet, but whose busiest hour's pace wants more numbers than
    it has (three standard deviations of chance peaks): said before a visitor finds none free."""
    for n in range(60):  # a new visitor a minute: each gets a number, none waits
        assert from_network(pool_client, n + 1)["phone"]["kind"] == "lease"
        clock.advance(61)
    (stats,) = pool_client.get("/v1/pools/pooltest", headers=REPORT).json()["pools"]
    assert stats["overflowed_visitors"] == 0 and stats["recommended_size"] > 3
    assert (f"No visitor has found the numbers all held yet, but at the busiest hour's pace "
            f"({stats['arrivals_peak_hour']} new visitors) chance peaks would want about "
            f"{stats['recommended_size']} numbers.") in numbers_tab(pool_client)


def test_the_numbers_tab_of_a_site_without_pools_says_where_pools_are_written(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    rules = "site: plain\norigins: [https://plain.example]\nreports: {token: plain-report-token-0001}\n"
    with site_client(valkey_url, rules_dir, clock, "plain", rules) as client:
        response = client.get("/dashboard/plain/numbers", headers={"authorization": "Bearer plain-report-token-0001"})
    assert response.status_code == 200
    assert "This site's rules give no tracking numbers" in " ".join(response.text.split())


def test_pool_statistics_need_the_report_token(pool_client: TestClient) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic test-report-token-0001"}):
        response = pool_client.get("/v1/pools/pooltest", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"


def test_events_refuse_forged_tokens_and_bad_bodies(pool_client: TestClient) -> None:
    body = visit(pool_client, vid(1))
    forged = TokenSigner(b"not-the-secret").sign({"s": "pooltest", "v": vid(1), "n": "small"})
    cases = [
        (f'{{"type": "heartbeat", "token": "{forged}"}}', 401, "invalid_token"),
        ('{"type": "heartbeat"}', 401, "invalid_token"),
        (f'{{"type": "dance", "token": "{body["token"]}"}}', 400, "unknown_event"),
        ("not json", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_json"),
        ("x" * 5000, 413, "body_too_large"),
    ]
    for content, status, code in cases:
        response = pool_client.post("/v1/events", content=content, headers={"content-type": "text/plain"})
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), content[:40]


def test_lease_history_is_kept_for_the_retention_only(pool_client: TestClient, clock: Clock,
                                                      store: redis.Redis) -> None:
    number = visit(pool_client, vid(1))["phone"]["number"]
    old = store.hkeys("sw:{pooltest:small}:leases")
    clock.advance(31 * 86400)  # past the default 30 days
    for n in (2, 3, 4):  # the three numbers go round again; the first one's new lease trims its history
        visit(pool_client, vid(n))
    history = store.zrange(f"sw:{{pooltest:small}}:history:{number}", 0, -1)
    assert old[0] not in history and not store.hexists("sw:{pooltest:small}:leases", old[0])
    assert len(history) == 1


def test_every_key_a_script_touches_is_in_its_scripts_slot(pool_client: TestClient, store: redis.Redis) -> None:
    from redis.crc import key_slot

    body = visit(pool_client, vid(1))
    heartbeat(pool_client, body["token"])
    for n in range(2, 6):
        visit(pool_client, vid(n))  # the fifth overflows
    untagged = (b"sw:secret", b"sw:secret:fingerprint", upgrade.DONE.encode(), sites.KNOWN.encode())
    keys = [key.decode() for key in store.scan_iter("sw:*") if key not in untagged]
    by_tag: dict[str, set[int]] = {}
    for key in keys:
        tag = key[key.index("{") + 1:key.index("}")]
        by_tag.setdefault(tag, set()).add(key_slot(key.encode()))
    assert {"pooltest:small", "pooltest/e"} <= set(by_tag)
    assert all(len(slots) == 1 for slots in by_tag.values()), by_tag
    assert any(":history:" in key for key in keys) and any(":overflowed:" in key for key in keys)
    # One big site still spreads: its pools and experiments hash to different slots.
    assert len({next(iter(slots)) for slots in by_tag.values()}) > 1


# The slots of the three masters `redis-cli --cluster create` makes.
THREE_MASTERS = (range(0, 5461), range(5461, 10923), range(10923, 16384))


def test_one_visitors_keys_share_a_slot_and_visitors_spread_over_three_masters(pool_client: TestClient, clock: Clock,
                                                                                store: redis.Redis) -> None:
    """The keys the service keeps for a visitor, their visits and journeys, are in one slot (an
    erasure or a call record's journey reads one shard), whichever visit; and the visitors of one
    site spread evenly over a cluster's masters. A visitor's assignment and lease link are fields
    of their experiment's and pool's hashes, in the slot of the script that writes them with the
    counts and the number (see the test above), not keys of the visitor."""
    from redis.crc import key_slot

    site = "http://localhost:8000"
    landing = visit(pool_client, vid(1), url=f"{site}/")
    clock.advance(20)
    inner = visit(pool_client, vid(1), url=f"{site}/prices", visit=landing["token"], ref=f"{site}/")
    heartbeat(pool_client, inner["token"])
    clock.advance(20)
    again = visit(pool_client, vid(1), url=f"{site}/?utm_source=google&utm_medium=cpc", visit=inner["token"])
    visit(pool_client, vid(2))  # another visitor, whose keys are not the first one's
    assert landing["visit"]["id"] == inner["visit"]["id"] != again["visit"]["id"]
    assert store.hexists(LedgerKeys.of("pooltest", "e").assign, vid(1))  # fields, not keys of the visitor
    assert store.hget(PoolKeys.of("pooltest", "small").visitor, vid(1)) == landing["phone"]["number"].encode()

    built = {command[1] for id_ in (landing["visit"]["id"], again["visit"]["id"])
             for command in visits.reads("pooltest", vid(1), id_)}
    # Every key that names the visitor, on every master of a cluster (KEYS asks one node).
    named = {key.decode() for key in store.scan_iter("*") if isinstance(key, bytes) and vid(1).encode() in key}
    assert named == built and len(named) == 4  # two visits' records and journeys, by the service's key builders
    assert len({key_slot(key.encode()) for key in named}) == 1

    pooltest = pool_client.app.state.runtime.site("pooltest")  # type: ignore[attr-defined]
    ids = random.Random(15)  # fixed ids: the spread is the same on every run
    visitors = [base64.urlsafe_b64encode(ids.randbytes(16)).rstrip(b"=").decode() for _ in range(3000)]
    on_master = [0, 0, 0]
    for visitor in visitors:  # 128 random bits in 22 url-safe characters, as the snippet makes them
        assert valid_vid(visitor)
        started, _ = visits.follow(None, visits.NO_LANDING, NO_REFERRAL, pooltest, int(clock.now), {})
        recorded = visits.record("pooltest", visitor, started, "/", int(clock.now * 1000), 86400, {"id": started.id})
        assert isinstance(recorded, ScriptCall)
        read = visits.reads("pooltest", visitor, started.id)
        (slot,) = {key_slot(key.encode()) for key in (*recorded.keys, read[0][1], read[1][1])}
        on_master[next(i for i, slots in enumerate(THREE_MASTERS) if slot in slots)] += 1
    assert all(0.25 * len(visitors) <= count <= 0.42 * len(visitors) for count in on_master), on_master
