"""Outgoing webhooks through the real service, store and a local receiver that fails, times out
and recovers: every conversion arrives, signed as docs/WEBHOOKS.md says, none lost across a
restart, each id once after the receiver's dedupe."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import orjson
import pytest
import redis
import trustme

from service.integrations.webhook_posts import Sender
from service.rules.settings import Webhook
from tests.conftest import BROWSER_HEADERS, ROOT, one_site, output, start, stop, wait_for
from tests.receiver import Answer, Receiver, Request
from tests.test_visits import AD, ORIGIN, REPORT, SECRET, SITE

HOOK_SECRET = "hook-secret-00000001"
SCHEMA = json.loads((ROOT / "docs" / "webhook.schema.json").read_text())


class CRM:
    """A CRM's endpoint: answers as `script` says (a status, or "hang" past the service's
    timeout), then 200."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.receiver = Receiver(self.respond)

    def respond(self, request: Request) -> Answer:
        action = self.script.pop(0) if self.script else "200"
        return Answer(200, delay=3) if action == "hang" else Answer(int(action))  # the service waits 1 s

    def delivered(self, path: str) -> set[str]:
        """The ids the endpoint took (answered 2xx), deduped as a receiver would."""
        return {orjson.loads(request.body)["id"] for request in self.receiver.taken(path)}

    def wait_for(self, path: str, ids: set[str]) -> None:
        self.receiver.wait(lambda: ids <= self.delivered(path))


@pytest.fixture
def crm() -> Iterator[CRM]:
    endpoint = CRM()
    yield endpoint
    endpoint.receiver.close()


def verify(headers: dict[str, str], body: bytes, secret: str = HOOK_SECRET) -> bool:
    """The receiver's check, as docs/WEBHOOKS.md shows it."""
    parts = dict(part.split("=", 1) for part in headers["x-swapline-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= 300


def test_every_conversion_reaches_the_endpoints_through_failures_timeouts_and_a_restart(
        tmp_path: Path, valkey_url: str, store: redis.Redis, crm: CRM) -> None:
    rules = one_site(tmp_path, "climate", SITE + f"""webhooks:
  - url: {crm.receiver.url}/crm
    secret: {HOOK_SECRET}
  - url: {crm.receiver.url}/calls-only
    secret: {HOOK_SECRET}
    kinds: [call]
""")
    env = {"SWAPLINE_REDIS_URL": valkey_url, "SWAPLINE_RULES_DIR": str(rules),
           "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_WEBHOOK_TIMEOUT": "1",
           "SWAPLINE_WEBHOOK_RETRY_MS": "200"}
    crm.script = ["500", "hang", "503"]  # the first three attempts fail
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
        crm.wait_for("/crm", sent)
        crm.wait_for("/calls-only", {"call:hook-call-1"})

        crm.script = ["503"] * 1000  # the CRM goes down; two more forms wait for it
        conversions(3, 2)
        crm.receiver.wait(lambda: sum(answer.status == 503 and request.path == "/crm"
                                      for request, answer in crm.receiver.requests) >= 4)
        stop(service)  # and so does Swapline, with its deliveries pending
        crm.script = []  # the CRM is back
        service, base = start(tmp_path, **env)  # another process takes the waiting deliveries over
        crm.wait_for("/crm", sent)
        status = httpx.get(f"{base}/v1/webhooks/climate", headers={"authorization": "Bearer climate-report-token-0001"})
    finally:
        http.close()
        stop(service)

    assert crm.delivered("/crm") == sent  # every one, and (deduped by id) nothing else
    assert crm.delivered("/calls-only") == {"call:hook-call-1"}  # this endpoint's kinds only
    for request, _ in crm.receiver.requests:
        delivery = orjson.loads(request.body)
        assert verify(request.headers, request.body) and not verify(request.headers, request.body, "another-secret-01")
        assert request.headers["x-swapline-id"] == delivery["id"] and delivery["site"] == "climate"
        jsonschema.validate(delivery, SCHEMA)
    call = orjson.loads(crm.receiver.taken("/calls-only")[0].body)
    assert call["conversion"]["visit"]["source"] == "yandex" and call["conversion"]["call"]["qualified"] is True
    assert call["conversion"]["visit"]["geo"]["city"] == shown["geo"]["city"] == answer.json()["visit"]["geo"]["city"]
    attempts = [orjson.loads(request.body)["attempt"] for request, _ in crm.receiver.requests if request.path == "/crm"]
    assert max(attempts) >= 3  # retried, and said so
    report = status.json()
    assert [endpoint["waiting"] for endpoint in report["endpoints"]] == [0, 0]
    assert {"500", "timeout", "503", "200"} <= {delivery["status"] for delivery in report["deliveries"]}


def endpoint(url: str, named: str | None = None) -> str:
    """The `webhooks:` of one endpoint, with an id if `named`."""
    return f"webhooks:\n  - {{{f'id: {named}, ' if named else ''}url: \"{url}\", secret: {HOOK_SECRET}}}\n"


def ids(requests: Iterable[Request]) -> set[str]:
    return {orjson.loads(request.body)["id"] for request in requests}


class Running:
    """The service on a site whose `webhooks:` a test writes, and what a browser and a marketer do to it."""

    def __init__(self, service: subprocess.Popen[bytes], base: str, rules: Path) -> None:
        self.service, self.rules = service, rules
        self.http = httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"},
                                 timeout=30)

    def form(self, name: str) -> str:
        """A visitor from the ad sends a form; its conversion's id."""
        shown = self.http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"hook-visitor-{name}"}).json()
        form = orjson.dumps({"type": "form", "id": name, "token": shown["token"]})
        assert self.http.post("/v1/events", content=form, headers={"origin": ORIGIN}).status_code == 202
        return f"form:{name}"

    def call(self, name: str) -> str:
        """A visitor from the ad calls the number shown, as the PBX posts it; the call's id."""
        shown = self.http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"hook-caller-{name}"}).json()
        raw = orjson.dumps({"call_id": name, "called": shown["phone"]["number"], "caller": "+79161234567",
                            "start": time.time() + 1, "talk_seconds": 60})
        signed = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        answer = self.http.post("/v1/calls?site=climate", content=raw, headers={"x-swapline-signature": signed})
        assert answer.status_code == 200, answer.text
        return f"call:{name}"

    def attempts(self) -> set[tuple[str, str]]:
        """The latest deliveries' urls and statuses, as the status page lists them."""
        return {(delivery["url"], delivery["status"]) for delivery in self.status()["deliveries"]}

    def status(self) -> dict[str, Any]:
        answer = self.http.get("/v1/webhooks/climate", headers=REPORT)
        assert answer.status_code == 200, answer.text
        return cast(dict[str, Any], answer.json())

    def edit(self, webhooks: str) -> None:
        """New webhooks, as a marketer's upload: written aside, then renamed (docs/DEPLOY.md)."""
        aside = self.rules.with_name(".climate.yaml")
        aside.write_text(SITE + webhooks)
        aside.rename(self.rules)
        urls = re.findall(r'url: "([^"]+)"', webhooks)
        wait_for("the new rules", lambda: [hook["url"] for hook in self.status()["endpoints"]] == urls)


@contextmanager
def serving(tmp_path: Path, valkey_url: str, webhooks: str, retry_ms: int = 200) -> Iterator[Running]:
    rules = one_site(tmp_path, "climate", SITE + webhooks)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32", SWAPLINE_WEBHOOK_TIMEOUT="1",
                          SWAPLINE_WEBHOOK_RETRY_MS=str(retry_ms))
    running = Running(service, base, rules / "climate.yaml")
    try:
        yield running
    finally:
        running.http.close()
        stop(service)


def test_a_fixed_crm_address_gets_what_waited_for_the_old_one(tmp_path: Path, valkey_url: str,
                                                               store: redis.Redis) -> None:
    """The CRM's address was wrong: the conversions waiting for it are kept when the url changes,
    said so as the rules load and on the status page, and reach the right address the way
    docs/WEBHOOKS.md says (an id, then the new url) at once, not at their next retry (ten
    minutes away here); nothing goes to the new one twice."""
    wrong, right = Receiver(lambda request: Answer(404)), Receiver()
    try:
        with serving(tmp_path, valkey_url, endpoint(f"{wrong.url}/crm"), retry_ms=600_000) as site:
            waiting = {site.form(f"early-{n}") for n in range(3)}
            wrong.wait(lambda: ids(request for request, _ in wrong.requests) == waiting)

            site.edit(endpoint(f"{right.url}/crm"))  # without an id
            wait_for("the warning", lambda: "no longer in the rules" in output(site.service))
            warning = next(line for line in output(site.service).splitlines() if "no longer in the rules" in line)
            assert "site climate" in warning and f"{wrong.url}/crm" in warning and "3 conversions" in warning
            (orphan,) = site.status()["orphaned"]
            assert (orphan["url"], orphan["waiting"], orphan["undelivered"]) == (f"{wrong.url}/crm", 3, 0)

            site.edit(endpoint(f"{wrong.url}/crm", "crm"))  # back, named
            wait_for("the old queue, now the id's", lambda: site.status()["orphaned"] == [])
            assert [(hook["id"], hook["waiting"]) for hook in site.status()["endpoints"]] == [("crm", 3)]

            site.edit(endpoint(f"{right.url}/crm", "crm"))
            later = site.form("later")
            right.wait(lambda: ids(right.taken("/crm")) == {*waiting, later})
            assert site.status()["orphaned"] == []
    finally:
        wrong.close()
        right.close()
    assert len(right.taken("/crm")) == 4  # each once


def test_a_relay_with_one_address_for_calls_and_forms_gets_both(tmp_path: Path, valkey_url: str,
                                                                store: redis.Redis) -> None:
    """Two endpoints at one url, calls to one pipeline and forms to another: each has a queue of
    its own (their ids'), so a form is not taken and dropped by the calls' endpoint, nor a call
    by the forms'."""
    relay = Receiver()
    webhooks = f"""webhooks:
  - {{id: calls, url: "{relay.url}/relay", secret: {HOOK_SECRET}, kinds: [call]}}
  - {{id: forms, url: "{relay.url}/relay", secret: {HOOK_SECRET}, kinds: [form]}}
"""
    try:
        with serving(tmp_path, valkey_url, webhooks) as site:
            sent = {site.form(f"relayed-{n}") for n in range(3)} | {site.call("relayed-call")}
            relay.wait(lambda: ids(relay.taken("/relay")) == sent)
    finally:
        relay.close()
    assert sorted(orjson.loads(request.body)["type"] for request in relay.taken("/relay")) == ["call", *["form"] * 3]


def test_an_endpoint_that_trickles_its_answer_holds_up_no_other(tmp_path: Path, valkey_url: str,
                                                                store: redis.Redis) -> None:
    """An endpoint that answers a byte at a time, each in less than the timeout: its deliveries
    time out as a whole (SWAPLINE_WEBHOOK_TIMEOUT), and the healthy endpoint listed after it
    gets every conversion while it is still at it."""
    slow = Receiver(lambda request: Answer(200, b'{"ok": true, "note": "a byte at a time"}', trickle=0.5))
    healthy = Receiver()
    webhooks = f"""webhooks:
  - {{url: "{slow.url}/slow", secret: {HOOK_SECRET}}}
  - {{url: "{healthy.url}/healthy", secret: {HOOK_SECRET}}}
"""
    try:
        with serving(tmp_path, valkey_url, webhooks) as site:
            sent = {site.form(f"trickled-{n}") for n in range(5)}
            slow.wait(lambda: bool(slow.requests))
            healthy.wait(lambda: ids(healthy.taken("/healthy")) == sent)
            assert not slow.finished  # still trickling (each answer takes 20 s)
            wait_for("a timeout", lambda: (f"{slow.url}/slow", "timeout") in site.attempts())
    finally:
        slow.close()
        healthy.close()


def test_a_huge_answer_is_hung_up_on_not_read(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """An endpoint that answers 200 with 256 MB: the delivery counts, and the service hangs up
    after the answer's first bytes instead of holding them all in memory."""
    huge = 256 << 20
    flood = Receiver(lambda request: Answer(200, filler=huge))
    try:
        with serving(tmp_path, valkey_url, endpoint(f"{flood.url}/flood")) as site:
            site.form("flooded")
            flood.wait(lambda: bool(flood.hung_up))
            wait_for("the delivery", lambda: site.attempts() == {(f"{flood.url}/flood", "200")})
    finally:
        flood.close()
    (_, taken), = flood.hung_up
    assert taken < huge // 8 and not flood.finished  # what the sockets' buffers held, not the answer


def test_a_delivery_that_cannot_be_made_says_why() -> None:
    """What the status page shows of an attempt that got no answer: a destination refused as
    link-local (where cloud metadata answers) once its name is resolved, and a certificate the
    service does not trust, by name rather than as a bare ConnectError."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(tls)
    untrusted = Receiver(tls=tls)
    # No name resolves to 169.254.169.254 without a DNS server: the resolver's own reading of
    # 2852039166 stands in for one (the rules refuse it as written: tests/test_rules_check.py).
    hooks = [Webhook("http://2852039166/latest/meta-data/", HOOK_SECRET), Webhook(f"{untrusted.url}/crm", HOOK_SECRET)]
    entry: dict[str, Any] = {"id": "form:f-1", "kind": "form", "at": 1_795_000_000_000}

    async def attempts() -> list[tuple[str, bool]]:
        async with Sender(timeout=5) as sender:
            return [await sender.post(hook, "climate", entry, 1, entry["at"]) for hook in hooks]

    try:
        (metadata, sent_there), (certificate, sent_to_crm) = asyncio.run(attempts())
    finally:
        untrusted.close()
    assert metadata == ("refused: 2852039166 is 169.254.169.254, a link-local address (cloud metadata): "
                        "no webhook posts there") and not sent_there
    assert certificate == "error: certificate verify failed: unable to get local issuer certificate"
    assert not sent_to_crm and untrusted.requests == []
