"""A bounded store: past its window every kind of record goes, and the reports' figures stay for
as long as theirs (service.tracking.retention, docs/STORAGE.md "Retention")."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.tracking import sites, upgrade
from service.tracking.moves import registry_key
from service.tracking.pools import PoolKeys
from service.tracking.retention import Retention
from service.tracking.store import FINGERPRINT
from tests.conftest import Clock
from tests.test_calls import call, post_call
from tests.test_reports import beacon

REPORT = {"authorization": "Bearer test-report-token-0001"}
DAY = 86_400


def visit(client: TestClient, vid: str, **headers: str) -> Any:
    response = client.get("/v1/decide", params={"site": "pooltest", "url": "/", "vid": vid}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def report(client: TestClient, day: str) -> Any:
    response = client.get("/v1/reports/pooltest", params={"from": day, "to": day}, headers=REPORT)
    assert response.status_code == 200, response.text
    return response.json()


def compact(client: TestClient) -> int:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return int(client.portal.call(Retention.of(runtime.store, runtime.settings).compact, runtime.now_ms()))  # type: ignore[union-attr]


def visitors(report: Any) -> int:
    return sum(page["visitors"] for page in report["pages"])


def keys(store: redis.Redis) -> set[str]:
    return {key.decode() for key in store.scan_iter("sw:*")}


def test_records_go_after_their_window_and_the_reports_figures_stay(pool_client: TestClient, clock: Clock,
                                                                    store: redis.Redis) -> None:
    day = "2026-11-18"  # the test clock's first day
    answers = [visit(pool_client, f"kept-visitor-{n:04d}") for n in range(4)]  # three numbers, one overflow
    assert answers[3]["phone"]["kind"] == "overflow"
    beacon(pool_client, answers[0]["token"], "form", "form-0001")
    beacon(pool_client, answers[1]["token"], "goal", "goal-0001", name="quote")
    clock.advance(30)
    assert post_call(pool_client, call("call-0001", answers[2]["phone"]["number"], clock.now)).json()["credited"]
    visit(pool_client, "kept-bot-0001", **{"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
    before = report(pool_client, day)
    assert before["excluded"]["bot_page_views"] == 1 and visitors(before) == 3
    assert {"sw:{pooltest/e}:assign", "sw:{pooltest/e}:converted", "sw:{pooltest/e}:overflowed",
            "sw:{pooltest:small}:leases"} <= keys(store)
    # A caller is wanted for the site's uniqueness window (a day) only.
    caller_keys = [key for key in keys(store) if ":caller:" in key]
    assert caller_keys and all(0 < store.pttl(key) <= DAY * 1000 for key in caller_keys)

    clock.advance(32 * DAY)  # past the attribution and lease windows (30 days each) after the day ends everywhere
    assert compact(pool_client) > 0
    left = keys(store)
    for family in ("assign", "converted", "overflowed"):
        assert not any(key.endswith(f"}}:{family}") for key in left), family
    assert not any(":history:" in key for key in left) and "sw:{pooltest:small}:leases" not in left
    assert not any(key.startswith((b"arrivals", b"peak"))
                   for key in store.hkeys("sw:{pooltest:small}:stats"))
    assert report(pool_client, day) == before  # the counters the report reads are all there
    # A visitor back after the window is new to the experiment again, in a new cohort.
    visit(pool_client, "kept-visitor-0000")
    assert visitors(report(pool_client, "2026-12-20")) == 1

    clock.advance(401 * DAY)  # past the report window too
    compact(pool_client)
    after = report(pool_client, day)
    assert after["excluded"]["bot_page_views"] == 0 and visitors(after) == 0
    assert store.hlen("sw:{pooltest:calls}:calls") == 0
    # What is left is bounded by the rules (the pools' state, and the pool each number is in:
    # service.tracking.moves), not by the traffic, or expires by itself.
    state = ("numbers", "free", "held", "holder", "visitor", "seq", "clock", "stats", "networks")
    serving = pool_client.app.state.runtime.rules.sites.values()  # type: ignore[attr-defined]
    listed = {registry_key(number) for site in serving for pool in site.pools for number in pool.numbers}
    left = {key for key in keys(store) if key.rpartition(":")[2] not in state and store.ttl(key) < 0} - listed
    # The mark of an upgraded store, the signing secret's fingerprint (the secret itself comes
    # from the settings here), and the sites of the rules; and the registry of where each
    # listed number is (one key a number, bounded by the rules).
    assert left == {upgrade.DONE, FINGERPRINT, sites.KNOWN}


def test_a_pool_nobody_comes_to_gives_its_numbers_back(pool_client: TestClient, clock: Clock,
                                                        store: redis.Redis) -> None:
    """A client's pool that nobody visits for a month (ads paused): the daily compaction gives
    back the holds that ended, as the pool's next lease would, so the last holders and their
    networks are named only in the lease records a late call is credited by, which go after
    the lease window. A holder back after that is a new visitor; the numbers are whole."""
    pool = PoolKeys.of("pooltest", "small")
    held = sorted(visit(pool_client, f"quiet-visitor-{n:04d}")["phone"]["number"] for n in range(3))
    clock.advance(DAY)
    compact(pool_client)
    assert [store.hlen(pool.visitor), store.hlen(pool.holder), store.hlen(pool.networks), store.zcard(pool.held)] == [
        0, 0, 0, 0]
    assert store.zcard(pool.free) == 3 and store.hlen(pool.leases) == 3
    clock.advance(31 * DAY)
    compact(pool_client)
    assert store.hlen(pool.leases) == 0 and not [key for key in keys(store) if ":history:" in key]
    taken = sorted(visit(pool_client, f"new-visitor-{n:04d}", **{"x-forwarded-for": f"95.161.1.{n}"})["phone"]["number"]
                   for n in range(3))
    assert taken == held
    assert visit(pool_client, "quiet-visitor-0000")["phone"]["kind"] == "overflow"  # each number is another's


def test_a_holder_whose_lease_record_was_lost_never_takes_anothers_number(pool_client: TestClient, clock: Clock,
                                                                          store: redis.Redis) -> None:
    """A store that lost the lease records while holds were out (as a compaction of the
    version before this one could, in a pool quiet for a month) left each number's last holder
    in the pool's map of visitors. Back after others took the numbers, such a holder used to
    be given the number another visitor held, and their heartbeat renewed the other's hold."""
    pool = PoolKeys.of("pooltest", "small")
    first = [visit(pool_client, f"lost-visitor-{n:04d}") for n in range(3)]
    clock.advance(120)  # the holds (60 s) ended
    store.delete(pool.leases)
    others = [visit(pool_client, f"next-visitor-{n:04d}", **{"x-forwarded-for": f"95.161.2.{n}"}) for n in range(3)]
    assert sorted(o["phone"]["number"] for o in others) == sorted(f["phone"]["number"] for f in first)
    assert visit(pool_client, "lost-visitor-0000")["phone"]["kind"] == "overflow"
    beat = pool_client.post("/v1/events", content=orjson.dumps({"type": "heartbeat", "token": first[1]["token"]}),
                            headers={"content-type": "text/plain"})
    assert beat.status_code == 205  # the page shows a number its visitor no longer holds: it asks again
    assert {store.hget(pool.visitor, other["vid"]).decode() for other in others} == {
        other["phone"]["number"] for other in others}
    clock.advance(DAY)
    compact(pool_client)  # the holds ended: what the lost records left counted goes too
    assert store.hlen(pool.visitor) == store.hlen(pool.networks) == 0
    assert visit(pool_client, "lost-visitor-0000")["phone"]["kind"] == "lease"


@pytest.mark.parametrize(("key", "value"), [
    ("sw:{pooltest/e}:converted", b"1"),  # written before records named their day
    ("sw:{pooltest/e}:converted", b"not|a|day"),
    ("sw:{pooltest/e}:assign", b"\xff\xfe"),
    ("sw:{pooltest:calls}:calls", b"[1, 2]"),
    ("sw:{pooltest:calls}:calls", b'{"start": 99999999999999999999}'),
    ("sw:{pooltest:calls}:calls", b"{not json"),
])
def test_records_that_name_no_day_are_kept_not_crashed_on(pool_client: TestClient, clock: Clock,
                                                          store: redis.Redis, key: str, value: bytes) -> None:
    store.hset(key, "odd-record", value)
    clock.advance(500 * DAY)
    compact(pool_client)
    assert store.hget(key, "odd-record") == value
