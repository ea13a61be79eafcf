"""Outgoing webhooks through the real service, store and a local receiver that fails, times out
and recovers: every conversion arrives, signed as docs/WEBHOOKS.md says, none lost across a
restart, each id once after the receiver's dedupe."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
import redis

from tests.conftest import BROWSER_HEADERS, ROOT, start
from tests.test_visits import AD, ORIGIN, SECRET, SITE

HOOK_SECRET = "hook-secret-00000001"
SCHEMA = json.loads((ROOT / "docs" / "webhook.schema.json").read_text())


class Receiver:
    """A CRM's endpoint: answers as `script` says (a status, or "hang" past the service's
    timeout), then 200; keeps every request."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []  # path, headers, body, status
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    action = receiver.script.pop(0) if receiver.script else "200"
                if action == "hang":
                    time.sleep(3)  # the service gives up after 1 s
                status = 200 if action == "hang" else int(action)
                with receiver.lock:
                    receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, path: str) -> set[str]:
        """The ids the endpoint took (answered 2xx), deduped as a receiver would."""
        with self.lock:
            return {orjson.loads(body)["id"] for at, _, body, status in self.requests if at == path and status == 200}

    def wait_for(self, path: str, ids: set[str], deadline: float = 60) -> None:
        """Until the endpoint has taken `ids` (a safety net of a deadline, never a sleep to pass)."""
        until = time.monotonic() + deadline
        while not ids <= self.delivered(path):
            assert time.monotonic() < until, f"{path}: {ids - self.delivered(path)} never arrived"
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()


def verify(headers: dict[str, str], body: bytes, secret: str = HOOK_SECRET) -> bool:
    """The receiver's check, as docs/WEBHOOKS.md shows it."""
    parts = dict(part.split("=", 1) for part in headers["x-swapline-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= 300


def test_every_conversion_reaches_the_endpoints_through_failures_timeouts_and_a_restart(
        tmp_path: Path, valkey_url: str, store: redis.Redis, receiver: Receiver) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "climate.yaml").write_text(SITE + f"""webhooks:
  - url: {receiver.url}/crm
    secret: {HOOK_SECRET}
  - url: {receiver.url}/calls-only
    secret: {HOOK_SECRET}
    kinds: [call]
""")
    env = {"SWAPLINE_REDIS_URL": valkey_url, "SWAPLINE_RULES_DIR": str(rules),
           "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_WEBHOOK_TIMEOUT": "1",
           "SWAPLINE_WEBHOOK_RETRY_MS": "200"}
    receiver.script = ["500", "hang", "503"]  # the first three attempts fail
    service, base = start(tmp_path, **env)
    http = httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}, timeout=30)
    sent: set[str] = set()

    def conversions(first: int, count: int) -> None:
        for n in range(first, first + count):
            shown = http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"hook-visitor-{n:08d}"}).json()
            form = orjson.dumps({"type": "form", "id": f"hook-form-{n}", "token": shown["token"]})
            assert http.post("/v1/events", content=form, headers={"origin": ORIGIN}).status_code == 202
            sent.add(f"form:hook-form-{n}")

    try:
        shown = http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": "hook-caller-000001"}).json()
        conversions(0, 3)
        raw = orjson.dumps({"call_id": "hook-call-1", "called": shown["phone"]["number"], "caller": "+79161234567",
                            "start": time.time() + 1, "talk_seconds": 60})
        signed = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        answer = http.post("/v1/calls?site=climate", content=raw, headers={"x-swapline-signature": signed})
        assert answer.status_code == 200, answer.text
        sent.add("call:hook-call-1")
        receiver.wait_for("/crm", sent)
        receiver.wait_for("/calls-only", {"call:hook-call-1"})

        receiver.script = ["503"] * 1000  # the CRM goes down; two more forms wait for it
        conversions(3, 2)
        until = time.monotonic() + 60
        while sum(1 for at, _, body, status in receiver.requests if status == 503 and at == "/crm") < 4:
            assert time.monotonic() < until
            time.sleep(0.05)
        service.send_signal(signal.SIGINT)  # and so does Swapline, with its deliveries pending
        service.communicate(timeout=20)
        receiver.script = []  # the CRM is back
        service, base = start(tmp_path, **env)  # another process takes the waiting deliveries over
        receiver.wait_for("/crm", sent)
        status = httpx.get(f"{base}/v1/webhooks/climate", headers={"authorization": "Bearer climate-report-token-0001"})
    finally:
        http.close()
        service.send_signal(signal.SIGINT)
        service.communicate(timeout=20)

    assert receiver.delivered("/crm") == sent  # every one, and (deduped by id) nothing else
    assert receiver.delivered("/calls-only") == {"call:hook-call-1"}  # this endpoint's kinds only
    for _, headers, body, _ in receiver.requests:
        delivery = orjson.loads(body)
        assert verify(headers, body) and not verify(headers, body, secret="another-secret-0001")
        assert headers["x-swapline-id"] == delivery["id"] and delivery["site"] == "climate"
        jsonschema.validate(delivery, SCHEMA)
    call = next(orjson.loads(body) for path, _, body, status in receiver.requests if path == "/calls-only")
    assert call["conversion"]["visit"]["source"] == "yandex" and call["conversion"]["call"]["qualified"] is True
    attempts = [orjson.loads(body)["attempt"] for path, _, body, _ in receiver.requests if path == "/crm"]
    assert max(attempts) >= 3  # retried, and said so
    report = status.json()
    assert [endpoint["waiting"] for endpoint in report["endpoints"]] == [0, 0]
    assert {"500", "timeout", "503", "200"} <= {delivery["status"] for delivery in report["deliveries"]}
