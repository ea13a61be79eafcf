"""A number that moves to another pool (of another site, a renamed site, or the same site) is
not handed out there while the visitor who holds it keeps it: one number, one visitor."""

from __future__ import annotations

import hashlib
import hmac
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.app import create_app
from service.rules import rulefiles
from service.tracking.moves import registry_key
from tests.conftest import BROWSER_HEADERS, Clock, make_settings

N1, N2, N3 = "+74951970001", "+74951970002", "+74951970003"
HOLD = 60  # seconds, every pool's here


def site_rules(site: str, **pools: list[str]) -> str:
    """A site whose pool P is shown on the page /P, with a 60 s hold and no overflow number
    (a visitor who finds none free gets the page's own, as an overflow)."""
    listed = "".join(f"  - id: {pool}\n    page: /{pool}\n    numbers: {orjson.dumps(numbers).decode()}\n"
                     f"    hold: {HOLD}s\n" for pool, numbers in pools.items())
    return (f"site: {site}\norigins: [http://localhost:8000]\nphone: \"+7 800 555-35-35\"\n"
            f"calls:\n  secret: {site}-calls-secret-0001\npools:\n{listed}")


def write(rules_dir: Path, site: str, **pools: list[str]) -> None:
    (rules_dir / f"{site}.yaml").write_text(site_rules(site, **pools))


@contextmanager
def replica(valkey_url: str, rules_dir: Path, clock: Clock) -> Iterator[TestClient]:
    """A service process on the rules folder, started (its pools synced) and on the test clock."""
    app = create_app(make_settings(valkey_url, rules_dir))
    with TestClient(app, client=("127.0.0.1", 40000), headers=BROWSER_HEADERS) as client:
        app.state.runtime.clock = clock
        yield client


def reload(client: TestClient, rules_dir: Path) -> None:
    """What the rules watcher does after an edit: the new rules serve, then the pools sync."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.rules = rulefiles.load(rules_dir)
    client.portal.call(runtime.sync_pools)  # type: ignore[union-attr]


def vid(name: str) -> str:
    return f"a-visitor-{name}"


def decide(client: TestClient, site: str, name: str, pool: str) -> Any:
    """A page view of the pool's page by the visitor `name`, each from a network of their own
    (one network may hold no more than its share of a pool)."""
    address = "198.18.{}.{}".format(*hashlib.sha256(name.encode()).digest()[:2])
    response = client.get("/v1/decide", params={"site": site, "url": f"/{pool}", "vid": vid(name)},
                          headers={"x-forwarded-for": address})
    assert response.status_code == 200, response.text
    return response.json()


def number(client: TestClient, site: str, name: str, pool: str = "main") -> str | None:
    """The tracking number the visitor sees on the pool's page; None: none was free."""
    phone = decide(client, site, name, pool)["phone"]
    return phone["number"] if phone["kind"] == "lease" else None


def heartbeat(client: TestClient, token: str) -> str | None:
    """The number a heartbeat kept for the token's page; None: it answered 205, the page asks again."""
    response = client.post("/v1/events", content=orjson.dumps({"type": "heartbeat", "token": token}),
                           headers={"content-type": "text/plain"})
    if response.status_code == 205:
        return None
    assert response.status_code == 202, response.text
    return response.json()["number"]  # type: ignore[no-any-return]


def call(client: TestClient, site: str, called: str, at: float, call_id: str) -> str:
    """A call to `called` at `at`, as the site's PBX posts it, from a caller of its own (one who
    called the number before would be that call's visitor's), and whom it was credited to."""
    caller = f"+7916{zlib.crc32(call_id.encode()) % 10**7:07d}"
    raw = orjson.dumps({"call_id": call_id, "called": called, "caller": caller, "start": at,
                        "talk_seconds": 45, "status": "completed"})
    signature = hmac.new(f"{site}-calls-secret-0001".encode(), raw, hashlib.sha256).hexdigest()
    response = client.post(f"/v1/calls?site={site}", content=raw, headers={
        "content-type": "application/json", "x-swapline-signature": f"sha256={signature}"})
    assert response.status_code == 200, response.text
    answer = response.json()
    return str(answer["visitor"].removeprefix(vid("")) if answer["credited"] else answer["reason"])


def test_a_number_moved_to_another_site_waits_until_its_holder_lets_it_go(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """The agency's trial: a number moves from client13's pool to client12's while a visitor of
    client13 has it on their page. client12 does not hand it out until that hold ends."""
    write(rules_dir, "client13", main=[N1])
    write(rules_dir, "client12", main=[N2])
    with replica(valkey_url, rules_dir, clock) as client:
        page = decide(client, "client13", "reader-13", "main")
        assert page["phone"]["number"] == N1
        assert number(client, "client12", "first-12") == N2
        write(rules_dir, "client13", main=[N3])
        write(rules_dir, "client12", main=[N2, N1])
        reload(client, rules_dir)
        clock.advance(20)
        assert number(client, "client12", "second-12") is None  # N2 is held, N1 is still client13's
        assert heartbeat(client, page["token"]) == N1  # the reader keeps it on their page...
        clock.advance(20)
        assert number(client, "client13", "reader-13") == N1  # ...and on the next one
        # client12's PBX now gets the calls to N1: none is client12's visitor's, none of them saw it.
        assert call(client, "client12", N1, clock.now, "to-12-while-held") == "no_holder"
        assert call(client, "client13", N1, clock.now, "to-13-while-held") == "reader-13"
        clock.advance(HOLD - 40 + 1)  # past the hold, which neither the heartbeat nor the page view renewed
        assert heartbeat(client, page["token"]) is None
        assert number(client, "client12", "second-12") == N1
        assert call(client, "client12", N1, clock.now + 5, "to-12-after") == "second-12"
        assert number(client, "client13", "reader-13") == N3  # client13 gave N1 up for good


def test_a_renamed_site_gets_its_numbers_as_the_old_sites_holds_end(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """client14 becomes client14b (its file renamed, the key edited): client14's visitors keep
    their numbers until their holds end, one by one, and only then are they client14b's."""
    write(rules_dir, "client14", main=[N1, N2])
    with replica(valkey_url, rules_dir, clock) as client:
        first = number(client, "client14", "early-14")
        clock.advance(30)
        second = number(client, "client14", "later-14")
        assert {first, second} == {N1, N2}
        (rules_dir / "client14.yaml").unlink()
        write(rules_dir, "client14b", main=[N1, N2])
        reload(client, rules_dir)
        assert number(client, "client14b", "new-14b-1") is None
        clock.advance(31)  # the early visitor's hold is over, the later one's is not
        assert number(client, "client14b", "new-14b-1") == first
        assert number(client, "client14b", "new-14b-2") is None
        clock.advance(30)
        assert number(client, "client14b", "new-14b-2") == second


def test_a_number_whose_hold_ended_is_free_in_its_new_pool_at_once(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    write(rules_dir, "client13", main=[N1])
    write(rules_dir, "client12", main=[N2])
    with replica(valkey_url, rules_dir, clock) as client:
        assert number(client, "client13", "gone-13") == N1
        clock.advance(HOLD + 1)  # the visitor left: nobody holds N1, though client13 has not reclaimed it
        write(rules_dir, "client13", main=[N3])
        write(rules_dir, "client12", main=[N2, N1])
        reload(client, rules_dir)
        assert {number(client, "client12", "new-12-1"), number(client, "client12", "new-12-2")} == {N1, N2}


def test_a_number_moved_between_two_pools_of_one_site_waits_too(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """Pool north's number goes to pool south of the same site while a visitor holds it: south
    waits, and a call meanwhile is the holder's, though the rules list the number in south now."""
    write(rules_dir, "shop", north=[N1], south=[N2])
    with replica(valkey_url, rules_dir, clock) as client:
        assert number(client, "shop", "north-reader", "north") == N1
        assert number(client, "shop", "south-reader", "south") == N2
        write(rules_dir, "shop", north=[N3], south=[N2, N1])
        reload(client, rules_dir)
        clock.advance(30)
        assert number(client, "shop", "south-newcomer", "south") is None
        assert call(client, "shop", N1, clock.now, "to-moved-number") == "north-reader"
        clock.advance(HOLD - 30 + 1)
        assert number(client, "shop", "south-newcomer", "south") == N1
        assert call(client, "shop", N1, clock.now + 5, "to-moved-number-after") == "south-newcomer"


@pytest.mark.parametrize("registry", ["kept", "none yet"])
def test_a_move_made_while_the_service_was_down_waits_as_well(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, registry: str) -> None:
    """The rules before the edit are gone with the process: the store remembers which pool
    listed each number (`sw:number:{E164}`). A version before that registry kept none: then the
    number's pool is read from the pools the store holds, or a number moved in the same deploy
    as the upgrade was free at once in its new pool while its reader still saw it (an upgrade
    trial found this)."""
    write(rules_dir, "client13", main=[N1])
    write(rules_dir, "client12", main=[N2])
    with replica(valkey_url, rules_dir, clock) as client:
        assert number(client, "client13", "reader-13") == N1
    if registry == "none yet":  # as a version before the registry left the store
        for key in store.scan_iter("sw:number:*"):
            store.delete(key)
    write(rules_dir, "client13", main=[N3])
    write(rules_dir, "client12", main=[N2, N1])
    clock.advance(30)
    with replica(valkey_url, rules_dir, clock) as client:
        assert number(client, "client12", "first-12") == N2
        assert number(client, "client12", "second-12") is None
        assert call(client, "client13", N1, clock.now, "call-while-it-waits") == "reader-13"
        clock.advance(HOLD - 30 + 1)
        assert number(client, "client12", "second-12") == N1
    assert store.get(registry_key(N1)) == b"client12:main" and store.get(registry_key(N2)) == b"client12:main"


def test_two_replicas_that_sync_the_same_move_at_once_agree(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """Both replicas reload the edit at the same moments, again and again: the number waits for
    its holder in its new pool, and is handed out once, by either, when the hold ends."""
    write(rules_dir, "client13", main=[N1])
    write(rules_dir, "client12", main=[N2])
    with replica(valkey_url, rules_dir, clock) as one, replica(valkey_url, rules_dir, clock) as two:
        assert number(one, "client13", "reader-13") == N1
        assert number(two, "client12", "first-12") == N2
        write(rules_dir, "client13", main=[N3])
        write(rules_dir, "client12", main=[N2, N1])
        for _ in range(5):
            syncs = [threading.Thread(target=reload, args=(service, rules_dir)) for service in (one, two)]
            for thread in syncs:
                thread.start()
            for thread in syncs:
                thread.join()
        assert [number(service, "client12", f"waiting-{n}") for n, service in enumerate((one, two))] == [None, None]
        assert [number(service, "client13", f"new-13-{n}") for n, service in enumerate((one, two))] == [N3, None]
        clock.advance(HOLD + 1)
        assert [number(service, "client12", f"after-{n}") for n, service in enumerate((two, one, two))] == [
            N1, N2, None]  # N2's hold ended too; then the pool is held whole
    assert store.get(registry_key(N1)) == b"client12:main"
