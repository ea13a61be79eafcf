"""The store behind Sentinel (`SWAPLINE_REDIS_URL=redis+sentinel://…`): the service finds the
primary through it and follows it to another when the primary dies or an operator moves it;
nothing accepted meanwhile is lost or counted twice, and visitors keep their numbers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from service.tracking.store import Store, connect
from tests.conftest import BROWSER_HEADERS, free_port, one_site, start, stop, wait_for, whole_decision
from tests.sentinel import local_sentinel
from tests.test_reports import SECRET, SHOP, TOKEN

SEEN = "sw:{shop/hero}:seen"  # the ids of the conversions the experiment has counted
AD = "https://shop.example/?utm_source=yandex&utm_medium=cpc&utm_term=купить+чайник"


class Visitors:
    """A shop's visitors from an ad, their forms (each beacon sent twice) and their calls."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.decisions: dict[str, dict[str, Any]] = {}

    def decide(self, vid: str) -> dict[str, Any]:
        response = self.http.get("/v1/decide", params={"site": "shop", "url": AD, "vid": vid})
        assert response.status_code == 200, response.text
        decision: dict[str, Any] = response.json()
        return decision

    def whole(self, vid: str) -> dict[str, Any]:
        """The visitor's decision, once the store answered it; the first is the one their forms carry."""
        decision = whole_decision(self.http, site="shop", url=AD, vid=vid)
        self.decisions.setdefault(vid, decision)
        return decision

    def form(self, vid: str, event_id: str, token: str | None = None) -> list[int]:
        """A form from the visitor's first page view, or from the page view of `token`."""
        body = orjson.dumps({"type": "form", "id": event_id, "token": token or self.decisions[vid]["token"]})
        return [self.http.post("/v1/events", content=body).status_code for _ in range(2)]

    def call(self, vid: str, call_id: str) -> int:
        raw = orjson.dumps({"call_id": call_id, "called": self.decisions[vid]["phone"]["number"],
                            "start": time.time(), "caller": "+79161234567", "talk_seconds": 40})
        signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        headers = {"x-swapline-signature": signature}
        return self.http.post("/v1/calls?site=shop", content=raw, headers=headers).status_code

    def forms_counted(self) -> int:
        report = self.http.get("/v1/reports/shop", headers=TOKEN).json()
        return sum(row["totals"]["form"] for experiment in report["experiments"] for row in experiment["variants"])

    def spooled(self) -> int:
        metrics = self.http.get("/metrics").text
        return int(next(line.split()[1] for line in metrics.splitlines() if line.startswith("swapline_spool_depth ")))


def serve(tmp_path: Path, url: str) -> tuple[Any, Visitors]:
    rules = one_site(tmp_path, "shop", SHOP)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_SECRET="sentinel-test-secret", SWAPLINE_BEACON_RATE="100000",
                          SWAPLINE_DECISION_RATE="100000")  # a page view a form, under load
    visitors = Visitors(httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=10))
    # A batch has the store's 0.2 s: on a busy machine one may miss it, and its page degrades.
    visitors.whole("warm-up")
    return service, visitors


def stop_all(service: Any, visitors: Visitors) -> None:
    visitors.http.close()
    stop(service)


def test_when_the_primary_dies_the_service_follows_sentinel_to_the_new_one(tmp_path: Path) -> None:
    with local_sentinel(tmp_path / "store") as store:
        first = store.primary()
        # Two Sentinels named, as production names several; the first of them is down.
        service, visitors = serve(tmp_path, store.url.replace("@", f"@127.0.0.1:{free_port()},"))
        try:
            assert "Redis/Valkey primary found through Sentinel" in visitors.http.get("/").text
            vids = [f"sentinel-visitor-{n:04d}" for n in range(5)]
            numbers = {vid: visitors.whole(vid)["phone"]["number"] for vid in vids}
            assert len(set(numbers.values())) == 5  # five leases
            assert all(visitors.form(vid, f"before-{vid}") == [202, 202] for vid in vids)
            assert store.node(first).exists("sw:{shop:calls}:calls") == 0  # nothing called yet: the primary is ours
            wait_for("the replicas have every write", store.caught_up)

            process = store.nodes[first]._process
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            # Before and while the Sentinel fails over: accepted all the same, kept in the spool.
            during = [status for vid in vids for status in visitors.form(vid, f"during-{vid}")]
            called = visitors.call(vids[0], "call-during-failover")
            assert set(during) == {202} and called in (200, 202)

            wait_for("the Sentinel names another primary", lambda: store.primary() != first)
            store.steady()
            visitors.whole("sentinel-later")  # decisions are whole again
            wait_for("the spool is replayed", lambda: visitors.spooled() == 0 and visitors.forms_counted() == 10)
            assert visitors.forms_counted() == 10  # each form once, though each beacon came twice
            second = store.primary()
            assert store.role(second) == "master"
            calls = [orjson.loads(record) for record in store.node(second).hvals("sw:{shop:calls}:calls")]
            assert [call["credited"] for call in calls] == [True]
            # The leases came through the failover: every visitor keeps the number they were shown.
            assert {vid: visitors.whole(vid)["phone"]["number"] for vid in vids} == numbers
        finally:
            stop_all(service, visitors)


def test_an_operator_moves_the_primary_and_nothing_is_written_to_the_old_one(tmp_path: Path) -> None:
    """`SENTINEL FAILOVER`, the primary alive: until the Sentinel turns the old primary into a
    replica (seconds later), it still takes writes, which its turning would throw away. With
    `min-replicas-to-write 1` (docs/DEPLOY.md) it refuses them once its replicas follow the new
    primary; the service drops the connection that heard so and asks the Sentinel again."""
    with local_sentinel(tmp_path / "store", **{"min-replicas-to-write": 1, "min-replicas-max-lag": 10}) as store:
        first = store.primary()
        # The Sentinel turns a demoted primary after four publish periods: a minute here, so that
        # the test sees the service move on while the old primary is still one.
        store.sentinel.execute_command("SENTINEL", "DEBUG", "PUBLISH-PERIOD", 15000)
        service, visitors = serve(tmp_path, store.url)
        # redis-py's own connections, which the reports, webhooks and exports use, as the service makes them.
        loop = asyncio.new_event_loop()
        client = connect(store.url)
        try:
            vids = [f"moved-visitor-{n:04d}" for n in range(3)]
            numbers = {vid: visitors.whole(vid)["phone"]["number"] for vid in vids}
            assert all(visitors.form(vid, f"before-{vid}") == [202, 202] for vid in vids)
            assert loop.run_until_complete(client.set("sw:test:before", 1))
            wait_for("the replicas have every write", store.caught_up)

            store.sentinel.execute_command("SENTINEL", "FAILOVER", "swapline")
            wait_for("the Sentinel names another primary", lambda: store.primary() != first)
            second = store.primary()
            wait_for("the other replica follows it", lambda: store.caught_up(replicas=1))
            assert loop.run_until_complete(client.set("sw:test:after", 1))
            assert store.node(second).exists("sw:test:after") and not store.node(first).exists("sw:test:after")
            after = [status for vid in vids for status in visitors.form(vid, f"after-{vid}")]
            assert set(after) == {202}
            visitors.whole("moved-later")  # decisions are whole again
            wait_for("the spool is replayed", lambda: visitors.spooled() == 0 and visitors.forms_counted() == 6)
            assert store.role(first) == "master"  # not turned yet: the service found the new primary itself
            assert visitors.forms_counted() == 6

            def forms(port: int) -> list[str]:  # the form ids a node has counted
                return sorted(event.decode().rpartition(":")[2] for event in store.node(port).zrange(SEEN, 0, -1))

            assert forms(first) == sorted(f"before-{vid}" for vid in vids)
            assert forms(second) == sorted(f"{when}-{vid}" for when in ("after", "before") for vid in vids)
            assert {vid: visitors.whole(vid)["phone"]["number"] for vid in vids} == numbers
        finally:
            loop.run_until_complete(Store(client).close())
            loop.close()
            stop_all(service, visitors)


def test_a_coordinated_move_under_load_loses_nothing(tmp_path: Path) -> None:
    """Valkey's `SENTINEL FAILOVER … COORDINATED` pauses the primary's writes until a replica
    has them all, then swaps them: forms keep coming all along, and every one accepted counts."""
    with local_sentinel(tmp_path / "store") as store:
        first = store.primary()
        service, visitors = serve(tmp_path, store.url)
        vid = "coordinated-visitor-0001"
        accepted: list[str] = []
        done = threading.Event()

        def traffic() -> None:
            for n in itertools.count():
                if done.is_set():
                    return
                # Each from a page of its own: a page view adds at most five (SWAPLINE_CONVERSIONS_PER_VIEW).
                page = visitors.http.get("/v1/decide", params={"site": "shop", "url": f"/contacts/{n}", "vid": vid})
                if page.status_code == 200 and 202 in visitors.form(vid, f"form-{n}", page.json()["token"]):
                    accepted.append(f"form-{n}")

        sender = threading.Thread(target=traffic)
        try:
            visitors.whole(vid)
            sender.start()
            wait_for("forms are coming", lambda: len(accepted) >= 20)
            store.sentinel.execute_command("SENTINEL", "FAILOVER", "swapline", "COORDINATED")
            wait_for("the Sentinel names another primary", lambda: store.primary() != first)
            switched = len(accepted)
            visitors.whole("coordinated-later")  # decisions are whole again
            wait_for("forms come after the move", lambda: len(accepted) >= switched + 20)
            done.set()
            sender.join()
            wait_for("the spool is replayed",
                     lambda: visitors.spooled() == 0 and visitors.forms_counted() >= len(accepted))
            assert visitors.forms_counted() == len(accepted) == len(set(accepted))
            assert store.role(first) == "slave"
        finally:
            done.set()
            if sender.is_alive():
                sender.join()
            stop_all(service, visitors)
