"""Operators' view: Prometheus metrics, request ids in answers and logs, JSON log lines."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from service.observability import REQUEST_ID, JSONFormatter
from tests.conftest import BROWSER_HEADERS, Clock, output, start, stop
from tests.test_abuse import app_client, beacon, decide, scripted
from tests.test_reports import SHOP


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match[1] or "") for k, v in labels.items()):
            total += float(match[2])
    return total


def test_metrics_cover_latency_leases_pools_spool_and_store(client: TestClient) -> None:
    before = client.get("/metrics").text
    for n in range(3):
        client.get("/v1/decide", params={"site": "demo", "url": "/", "vid": f"metrics-visitor-{n:05d}"},
                   headers={"x-forwarded-for": "46.242.0.1"})
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    decided = metric(text, "swapline_request_seconds_count", route="/v1/decide", status="2xx")
    assert decided - metric(before, "swapline_request_seconds_count", route="/v1/decide", status="2xx") == 3
    assert 'swapline_request_seconds_bucket{le="0.005",method="GET",route="/v1/decide",status="2xx"}' in text
    assert metric(text, "swapline_leases_total", site="demo", pool="moscow", status="new") >= 3
    assert metric(text, "swapline_pool_held", site="demo", pool="moscow") == 3
    assert metric(text, "swapline_pool_size", site="demo", pool="moscow") == 5
    assert metric(text, "swapline_spool_depth") == 0
    assert "swapline_store_errors_total" in text and "_created" not in text  # no twin of each series


def test_decisions_and_beacons_are_counted_by_site_and_outcome(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                              clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """An installation of many clients' sites shows whose pages are flooded, refused or gone quiet:
    each decision and beacon counts for its site, a refusal by its error code; a script that names
    a site counts as a bot, and its refusals for no site."""
    (rules_dir / "shop.yaml").write_text(SHOP)
    client = app_client(valkey_url, rules_dir, clock, decision_rate=5, beacon_rate=3)
    shop = {"origin": "https://shop.example"}
    try:
        before = client.get("/metrics").text
        tokens = [decide(client, f"counted-visitor-{n:04d}", ip="203.0.113.9", **shop).json()["token"]
                  for n in range(5)]
        decide(client, "counted-visitor-late", ip="203.0.113.9", **shop)  # the network's sixth this minute
        decide(client, "counted-visitor-script", ip="203.0.113.9")  # from none of the site's pages
        with caplog.at_level(logging.WARNING, logger="swapline"):
            for n in range(3):  # a site that moved
                decide(client, f"counted-visitor-moved{n}", origin="https://new-shop.example")
        client.get("/v1/decide", params={"site": "no-such-site", "url": "/"})
        with scripted(client):
            decide(client, "counted-visitor-probe")  # an uptime probe: a bot's decision
        beacons = [beacon(client, tokens[n], f"form-{n}").status_code for n in (0, 0, 1, 2)]  # and a retry
        beacon(client, "forged.token", "form-9", ip="198.51.100.1")
        after = client.get("/metrics").text
    finally:
        client.__exit__(None, None, None)
    assert beacons == [202, 202, 202, 429]

    def counted(name: str, site: str, outcome: str) -> float:
        return metric(after, name, site=site, outcome=outcome) - metric(before, name, site=site, outcome=outcome)

    assert [counted("swapline_decisions_total", *labels) for labels in (
        ("shop", "answered"), ("shop", "bot"), ("shop", "rate_limited"), ("", "rate_limited"),
        ("shop", "origin_not_allowed"), ("", "unknown_site"))] == [5, 1, 1, 1, 3, 1]
    # A beacon past the limit is refused unread: it names no site.
    assert [counted("swapline_beacons_total", *labels) for labels in (
        ("shop", "counted"), ("shop", "duplicate"), ("", "rate_limited"), ("", "invalid_token"))] == [2, 1, 1, 1]
    # The log names the address the alert on it asks for, once a minute.
    (line,) = [record.getMessage() for record in caplog.records if "not in its origins" in record.getMessage()]
    assert line.startswith("decisions of site 'shop' refused to pages of 'https://new-shop.example'"), line


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", request_id) for request_id in made)
    assert client.get("/healthz", headers={"x-request-id": "lb-1234.abc"}).headers["x-request-id"] == "lb-1234.abc"
    assert client.get("/healthz", headers={"x-request-id": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_log_lines_are_json_with_the_request_id() -> None:
    record = logging.LogRecord("swapline", logging.WARNING, __file__, 1, "store unavailable: %s", ("x",), None)
    token = REQUEST_ID.set("req-42")
    try:
        line = json.loads(JSONFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "store unavailable: x" and line["request_id"] == "req-42" and line["level"] == "warning"


def test_leases_reach_their_counter_in_a_worker_nobody_scrapes(client: TestClient) -> None:
    """Leases are added to `swapline_leases_total` every second (`Tally`), not only as /metrics answers."""
    def leased() -> float:
        total = 0.0
        for status in ("new", "kept", "overflow", "capped"):
            labels = {"site": "demo", "pool": "moscow", "status": status}
            total += REGISTRY.get_sample_value("swapline_leases_total", labels) or 0.0
        return total

    before = leased()
    for n in range(3):
        client.get("/v1/decide", params={"site": "demo", "url": "/", "vid": f"unscraped-visitor-{n:05d}"},
                   headers={"x-forwarded-for": "46.242.0.1"})
    deadline = time.monotonic() + 30
    while leased() - before < 3:
        assert time.monotonic() < deadline, f"{leased() - before} of 3 leases counted"
        time.sleep(0.05)
    assert leased() - before == 3


def test_serve_logs_json_and_two_workers_report_all_requests(tmp_path: Path, valkey_url: str,
                                                            store: redis.Redis) -> None:
    process, base = start(tmp_path, "--workers", "2", SWAPLINE_REDIS_URL=valkey_url,
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        for n in range(20):  # from Moscow: each page view leases a number, or gets the overflow one
            httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": f"workers-visitor-{n:04d}"},
                      headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"})
        scrapes = [httpx.get(f"{base}/metrics").text for _ in range(4)]
        # Each worker adds its leases to the shared counter within a second (`Tally`).
        deadline = time.monotonic() + 30
        while (leased := metric(httpx.get(f"{base}/metrics").text, "swapline_leases_total")) < 20:
            assert time.monotonic() < deadline, f"{leased} of 20 leases counted"
            time.sleep(0.1)
    finally:
        stop(process)
    counts = {metric(text, "swapline_request_seconds_count", route="/v1/decide") for text in scrapes}
    assert counts == {20.0}  # whichever worker answers, it counts both workers' requests
    assert leased == 20
    lines = [line for line in output(process).splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["level"] for line in lines)
    assert any("Started server process" in json.loads(line)["message"] for line in lines)
