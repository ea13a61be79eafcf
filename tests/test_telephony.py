"""The telephony vendors' own notifications, as their documentation and SDKs shape and sign them.

Sources (docs/CALLS.md names them): Mango Office's VPBX API (v1.10) for its summary event and
`sign`; Zadarma's PHP SDK (zadarma/user-api-v1, of which classic Novofon's is a copy) for
NOTIFY_END and its `Signature`; UIS's integration guides for the "call finished" template;
Telphin's extension events. None of them has a Python SDK on PyPI, so each signature here is
written from the vendor's published code (quoted beside it), not from the service's.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import redis
from starlette.testclient import TestClient

from tests.conftest import Clock, site_client

MANGO_KEY, MANGO_SALT = "tel-mango-key-0001", "tel-mango-salt-0001"
ZADARMA_SECRET = "tel-zadarma-secret-0001"
UIS_TOKEN, TELPHIN_TOKEN = "tel-uis-token-00000001", "tel-telphin-token-00001"
MOSCOW = ZoneInfo("Europe/Moscow")
SITE = f"""
site: tel
origins: [http://localhost:8000]
calls:
  secret: tel-calls-secret-000001
  mango_api_key: {MANGO_KEY}
  mango_api_salt: {MANGO_SALT}
  zadarma_secret: {ZADARMA_SECRET}
  uis_token: {UIS_TOKEN}
  telphin_token: {TELPHIN_TOKEN}
  time_zone: Europe/Moscow
  qualify_after: 30s
reports:
  token: tel-report-token-000001
pools:
  - id: city
    numbers: ["+7 495 191-00-01", "+7 495 191-00-02"]
    hold: 15m
"""


@pytest.fixture
def tel(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "tel", SITE) as client:
        yield client


def lease(client: TestClient, vid: str = "tel-visitor-00000001") -> str:
    """The number a visitor is shown, as Russian PBXs write it: digits, no `+`."""
    return client.get("/v1/decide", params={"site": "tel", "url": "/", "vid": vid}).json()["phone"]["number"][1:]


def moscow(unix: float) -> str:
    """A moment as Zadarma and UIS write it: local time, no zone."""
    return datetime.datetime.fromtimestamp(unix, MOSCOW).strftime("%Y-%m-%d %H:%M:%S")


# Mango Office: form fields vpbx_api_key, sign and json; PHP's reference receiver checks
# hash('sha256', $apiKey . $json . $apiSalt) === $_POST['sign'].


def mango(client: TestClient, summary: dict[str, Any], event: str = "summary", key: str = MANGO_KEY,
          salt: str = MANGO_SALT) -> Any:
    raw = json.dumps(summary)
    sign = hashlib.sha256((key + raw + salt).encode()).hexdigest()
    return client.post(f"/v1/calls/mango/tel/events/{event}", data={"vpbx_api_key": key, "sign": sign, "json": raw})


def mango_summary(number: str, created: float, **changes: Any) -> dict[str, Any]:
    """The VPBX API's own example of an answered incoming call, on our number and clock."""
    return {"entry_id": "232wc3e3w3s222", "call_direction": 1, "from": {"number": "79161234567"},
            "to": {"extension": "123", "number": number}, "line_number": number, "create_time": int(created),
            "forward_time": int(created) + 2, "talk_time": int(created) + 4, "end_time": int(created) + 49,
            "entry_result": 1, "disconnect_reason": 1100, **changes}


def test_a_mango_summary_credits_the_visitor_holding_the_line(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    clock.advance(20)
    answer = mango(tel, mango_summary(number, clock.now))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["credited"] is True and body["visitor"] == "tel-visitor-00000001"
    assert body["number"] == "+" + number and body["start"] == clock.now * 1000
    assert body["talk_seconds"] == 45 and body["status"] == "completed" and body["qualified"] is True
    assert body["caller_last_digits"] == "4567"
    assert mango(tel, mango_summary(number, clock.now)).json()["duplicate"] is True  # Mango retries: once


def test_a_mango_call_that_ended_in_the_menu_is_missed(tel: TestClient, clock: Clock) -> None:
    """The API's second example: an incoming call that ended in the IVR, `entry_result: 1` as
    printed there, but no talk: a missed call."""
    number = lease(tel)
    body = mango(tel, mango_summary(number, clock.now + 5, to={}, forward_time=0, talk_time=0,
                                    disconnect_reason=1170)).json()
    assert body["credited"] is True and body["status"] == "missed" and body["talk_seconds"] == 0
    assert body["qualified"] is False


def test_mango_events_that_end_no_incoming_call_are_signed_and_ignored(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    assert mango(tel, {"entry_id": "e1", "call_state": "Appeared"}, event="call").json() == {"ignored": "call"}
    outgoing = mango(tel, mango_summary(number, clock.now, call_direction=2)).json()
    assert outgoing == {"call_id": "232wc3e3w3s222", "ignored": "not an incoming call"}


@pytest.mark.parametrize(("key", "salt", "code"), [
    (MANGO_KEY, "another-salt", "invalid_signature"), ("another-key-0001", MANGO_SALT, "invalid_signature"),
])
def test_a_mango_notification_not_signed_by_the_site_is_refused(tel: TestClient, clock: Clock, key: str, salt: str,
                                                                  code: str) -> None:
    refused = mango(tel, mango_summary(lease(tel), clock.now), key=key, salt=salt)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == code


def test_a_mango_summary_that_is_not_an_object_is_a_clear_400(tel: TestClient) -> None:
    raw = "[1, 2]"
    sign = hashlib.sha256((MANGO_KEY + raw + MANGO_SALT).encode()).hexdigest()
    refused = tel.post("/v1/calls/mango/tel/events/summary", data={"vpbx_api_key": MANGO_KEY, "sign": sign,
                                                                   "json": raw})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_json"


# Zadarma: $_POST fields; the SDK's Client::encodeSignature is
# base64_encode(hash_hmac('sha1', $signatureString, $this->secret)): base64 of the *hex* digest.


def zadarma(client: TestClient, form: dict[str, str], secret: str = ZADARMA_SECRET) -> Any:
    signed = {"NOTIFY_END": ("caller_id", "called_did", "call_start"),
              "NOTIFY_START": ("caller_id", "called_did", "call_start"),
              "NOTIFY_OUT_END": ("internal", "destination", "call_start")}[form["event"]]
    hex_digest = hmac.new(secret.encode(), "".join(form[name] for name in signed).encode(), hashlib.sha1).hexdigest()
    return client.post("/v1/calls/zadarma?site=tel", data=form,
                       headers={"Signature": base64.b64encode(hex_digest.encode()).decode()})


def notify_end(number: str, start: float, **changes: str) -> dict[str, str]:
    return {"event": "NOTIFY_END", "call_start": moscow(start), "pbx_call_id": "in_1a2b3c", "caller_id": "79161234567",
            "called_did": number, "internal": "100", "duration": "45", "disposition": "answered",
            "status_code": "16", "is_recorded": "0", "call_id_with_rec": "", **changes}


def test_zadarma_checks_the_address_with_zd_echo(tel: TestClient) -> None:
    echoed = tel.get("/v1/calls/zadarma?zd_echo=8dfb0f3a")
    assert echoed.status_code == 200 and echoed.text == "8dfb0f3a"
    assert echoed.headers["content-type"].startswith("text/plain")


def test_a_zadarma_notify_end_credits_the_visitor_at_the_local_time_it_gives(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    clock.advance(20)
    body = zadarma(tel, notify_end(number, clock.now)).json()
    assert body["credited"] is True and body["visitor"] == "tel-visitor-00000001"
    assert body["start"] == clock.now * 1000  # read in the site's zone: as UTC it would be 3 h off, nobody's hold
    assert body["talk_seconds"] == 45 and body["qualified"] is True


def test_a_captured_zadarma_signature_forges_no_other_call(tel: TestClient, clock: Clock) -> None:
    """Zadarma signs caller_id, called_did and call_start only: a call is named by them, so
    the notification sent again with another pbx_call_id (or other unsigned fields) is the same
    call, and its retry and its NOTIFY_START change nothing."""
    number = lease(tel)
    clock.advance(20)
    start = {"event": "NOTIFY_START", "call_start": moscow(clock.now), "pbx_call_id": "in_1a2b3c",
             "caller_id": "79161234567", "called_did": number}
    assert zadarma(tel, start).json() == {"ignored": "NOTIFY_START"}
    real = zadarma(tel, notify_end(number, clock.now)).json()
    assert real["credited"] is True and real["duplicate"] is False and real["call_id"].startswith("zadarma-")
    assert zadarma(tel, notify_end(number, clock.now)).json() == {**real, "duplicate": True}  # Zadarma's retry
    for n in range(3):
        forged = zadarma(tel, notify_end(number, clock.now, pbx_call_id=f"forged-{n}", duration="300")).json()
        assert forged == {**real, "duplicate": True}
    log = tel.get("/v1/calls/tel", headers={"Authorization": "Bearer tel-report-token-000001"}).json()
    assert len(log["entries"]) == 1
    other = zadarma(tel, notify_end(number, clock.now + 60, caller_id="79161234568")).json()
    assert other["duplicate"] is False  # another caller's call: another call


@pytest.mark.parametrize(("disposition", "status"), [("no answer", "no-answer"), ("busy", "busy"),
                                                      ("cancel", "canceled"), ("no money", "failed")])
def test_a_zadarma_call_nobody_answered_is_missed(tel: TestClient, clock: Clock, disposition: str,
                                                  status: str) -> None:
    body = zadarma(tel, notify_end(lease(tel), clock.now + 5, disposition=disposition, duration="20")).json()
    assert body["credited"] is True and body["status"] == status and body["talk_seconds"] == 0


def test_zadarma_signatures_follow_its_sdk(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    start = {"event": "NOTIFY_START", "call_start": moscow(clock.now), "pbx_call_id": "in_1",
             "caller_id": "79161234567", "called_did": number}
    assert zadarma(tel, start).json() == {"ignored": "NOTIFY_START"}
    outgoing = {"event": "NOTIFY_OUT_END", "call_start": moscow(clock.now), "pbx_call_id": "out_1", "internal": "100",
                "destination": "79161234567", "duration": "5", "disposition": "answered"}
    assert zadarma(tel, outgoing).json() == {"ignored": "NOTIFY_OUT_END"}
    raw_digest = hmac.new(ZADARMA_SECRET.encode(), f"79161234567{number}{moscow(clock.now)}".encode(),
                          hashlib.sha1).digest()
    for signature in (base64.b64encode(raw_digest).decode(), ""):  # base64 of the raw digest is not Zadarma's
        refused = tel.post("/v1/calls/zadarma?site=tel", data=notify_end(number, clock.now),
                           headers={"Signature": signature})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_signature"
    unknown = tel.post("/v1/calls/zadarma?site=tel", data={"event": "NOTIFY_SOMETHING"})
    assert unknown.status_code == 400 and "unknown event" in unknown.json()["error"]["message"]


def test_a_multipart_form_reads_as_its_url_encoded_twin(tel: TestClient, clock: Clock) -> None:
    """Zadarma posts its notifications as multipart/form-data too: the same fields, the same
    call (it was read as an empty form: "unknown event ''")."""
    number = lease(tel)
    clock.advance(20)
    form = notify_end(number, clock.now)
    hex_digest = hmac.new(ZADARMA_SECRET.encode(), f"79161234567{number}{form['call_start']}".encode(),
                          hashlib.sha1).hexdigest()
    signature = {"Signature": base64.b64encode(hex_digest.encode()).decode()}
    sent = tel.post("/v1/calls/zadarma?site=tel", files={name: (None, value) for name, value in form.items()},
                    headers=signature)
    assert sent.status_code == 200 and sent.json()["credited"] is True and sent.json()["talk_seconds"] == 45
    again = tel.post("/v1/calls/zadarma?site=tel", data=form, headers=signature)  # its URL-encoded retry
    assert again.json()["duplicate"] is True and again.json()["call_id"] == sent.json()["call_id"]


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"event=NOTIFY_END"),  # no boundary
    ("multipart/form-data; boundary=x", b"--x\r\n" + b"".join(
        b'Content-Disposition: form-data; name="f%d"\r\n\r\nv\r\n--x\r\n' % n for n in range(101)) + b"--"),
])
def test_a_malformed_or_huge_multipart_form_is_a_clear_400(tel: TestClient, content_type: str, body: bytes) -> None:
    refused = tel.post("/v1/calls/zadarma?site=tel", content=body, headers={"content-type": content_type})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_call"
    big = tel.post("/v1/calls/zadarma?site=tel", content=b"x" * 20_000, headers={"content-type": content_type})
    assert big.status_code == 413  # the body's limit stands


# UIS / CoMagic: the notification's body is the user's template (docs/CALLS.md), values
# filled in by UIS; its guides write them unquoted, so numbers may come as JSON numbers.


def uis(client: TestClient, fields: dict[str, Any], token: str = UIS_TOKEN, method: str = "POST") -> Any:
    address = f"/v1/calls/uis?{urlencode({'site': 'tel', 'token': token})}"
    if method == "GET":
        return client.get(f"{address}&{urlencode(fields)}")
    return client.post(address, content=json.dumps(fields), headers={"content-type": "application/json"})


def call_finished(number: str, start: float, talk: int = 45) -> dict[str, Any]:
    return {"notification_name": "Завершение звонка", "virtual_phone_number": int(number), "notification_time":
            moscow(start + talk + 10), "contact_phone_number": 79161234567, "direction": "in",
            "call_session_id": 2417036715, "start_time": moscow(start), "talk_time_duration": talk,
            "total_time_duration": talk + 10, "wait_time_duration": 10}


def test_a_uis_call_finished_notification_credits_the_visitor(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    clock.advance(20)
    body = uis(tel, call_finished(number, clock.now)).json()
    assert body["credited"] is True and body["call_id"] == "2417036715" and body["start"] == clock.now * 1000
    assert body["talk_seconds"] == 45 and body["status"] == "completed" and body["caller_last_digits"] == "4567"
    as_query = uis(tel, {**call_finished(number, clock.now), "call_session_id": 2417036716}, method="GET").json()
    assert as_query["credited"] is True and as_query["talk_seconds"] == 45
    # The docs' template puts every value in quotes: all text, seconds with a fraction too.
    quoted = {name: str(value) for name, value in call_finished(number, clock.now).items()}
    as_text = uis(tel, {**quoted, "call_session_id": "2417036717", "start_time": f"{int(clock.now)}.5"}).json()
    assert as_text["credited"] is True and as_text["talk_seconds"] == 45 and as_text["start"] == clock.now * 1000 + 500


@pytest.mark.parametrize(("start", "message"), [
    (None, "start_time (or notification_time) is required"), ("yesterday", "start_time must be ISO 8601"),
    ("1795000000123", "this looks like milliseconds"), (1e300, "start must be a moment from 2000 to 2099"),
])
def test_a_uis_start_that_is_no_time_is_a_clear_400(tel: TestClient, clock: Clock, start: Any, message: str) -> None:
    fields = {key: value for key, value in call_finished(lease(tel), clock.now).items()
              if key not in ("start_time", "notification_time")}
    refused = uis(tel, fields if start is None else {**fields, "start_time": start})
    assert refused.status_code == 400 and message in refused.json()["error"]["message"]


def test_a_uis_call_without_talk_is_missed_and_outgoing_calls_are_ignored(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    assert uis(tel, call_finished(number, clock.now, talk=0)).json()["status"] == "missed"
    outgoing = uis(tel, {**call_finished(number, clock.now), "direction": "out"}).json()
    assert outgoing == {"call_id": "2417036715", "ignored": "not an incoming call"}


# Telphin: the extension's events as a form (POST) or query (GET); EventTime in microseconds.


def telphin(client: TestClient, fields: dict[str, str], token: str = TELPHIN_TOKEN, method: str = "POST") -> Any:
    address = f"/v1/calls/telphin?{urlencode({'site': 'tel', 'token': token})}"
    if method == "GET":
        return client.get(f"{address}&{urlencode(fields)}")
    return client.post(address, data=fields)


def hangup(number: str, end: float, **changes: str) -> dict[str, str]:
    return {"EventType": "hangup", "CallID": "7bfa3c0e4b9d11ef", "CallFlow": "in", "CalledDID": number,
            "CalledNumber": "100", "CallerIDNum": "79161234567", "EventTime": str(int(end * 1_000_000)),
            "Duration": "45", "CallStatus": "ANSWER", **changes}


def test_a_telphin_hangup_credits_the_visitor(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    clock.advance(20)
    body = telphin(tel, hangup(number, clock.now + 45)).json()
    assert body["credited"] is True and body["start"] == clock.now * 1000 and body["talk_seconds"] == 45
    missed = telphin(tel, hangup(number, clock.now + 60, CallID="second", CallStatus="NOANSWER"), method="GET").json()
    assert missed["status"] == "no-answer" and missed["talk_seconds"] == 0
    assert telphin(tel, hangup(number, clock.now, EventType="dial-in")).json()["ignored"] == "dial-in"
    assert telphin(tel, hangup(number, clock.now + 45, CallID="third", CallFlow="IN")).json()["credited"] is True
    assert telphin(tel, hangup(number, clock.now, CallID="fourth", CallFlow="out")).json()["ignored"] == \
        "not an incoming call"


@pytest.mark.parametrize("post", [uis, telphin])
def test_a_vendor_that_signs_nothing_needs_the_sites_token(tel: TestClient, clock: Clock, post: Any) -> None:
    fields = call_finished(lease(tel), clock.now) if post is uis else hangup(lease(tel), clock.now)
    for token in ("", "tel-wrong-token-0000001"):
        refused = post(tel, fields, token=token)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"


def vendor_post(client: TestClient, vendor: str, number: str, start: float, n: int, right: bool) -> Any:
    """Call `n` to `number`, posted as `vendor` posts it, with the site's credential or a guess."""
    guess = f"tel-guessed-token-{n:05d}"
    if vendor == "uis":
        return uis(client, {**call_finished(number, start), "call_session_id": n}, token=UIS_TOKEN if right else guess)
    if vendor == "telphin":
        return telphin(client, hangup(number, start + 45, CallID=f"guess-{n}"), token=TELPHIN_TOKEN if right else guess)
    return mango(client, mango_summary(number, start, entry_id=f"guess-{n}"), key=MANGO_KEY if right else guess)


@pytest.mark.parametrize("vendor", ["uis", "telphin", "mango"])
def test_wrong_vendor_credentials_are_throttled_per_network(tel: TestClient, clock: Clock, vendor: str) -> None:
    """A credential the vendor sends as it is can be guessed: after SWAPLINE_SIGNIN_ATTEMPTS (10)
    different wrong ones in 15 minutes the network waits, the right one too, as a report token's
    guesser does. Other networks' calls, and the site's sign-ins from that network, go on."""
    number = lease(tel)
    guesser, vendor_network = {"x-forwarded-for": "203.0.113.70"}, {"x-forwarded-for": "203.0.113.71"}
    tel.headers.update(guesser)
    wrong = [vendor_post(tel, vendor, number, clock.now, n, right=False).status_code for n in range(10)]
    locked = vendor_post(tel, vendor, number, clock.now, 10, right=True)
    report = tel.get("/v1/reports/tel", headers={"authorization": "Bearer tel-report-token-000001"})
    tel.headers.update(vendor_network)
    elsewhere = vendor_post(tel, vendor, number, clock.now, 11, right=True)
    clock.advance(15 * 60)
    tel.headers.update(guesser)
    later = vendor_post(tel, vendor, number, clock.now, 12, right=True)
    assert wrong == [401] * 10
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(locked.headers["retry-after"]) <= 900
    assert "too many wrong call credentials" in locked.json()["error"]["message"]
    assert elsewhere.status_code == 200 and elsewhere.json()["credited"] is True
    assert report.status_code == 200  # a count of its own: the site's analysts there are not locked out
    assert later.status_code == 200


@pytest.mark.parametrize("vendor", ["uis", "telphin", "mango"])
def test_another_account_posting_the_sites_address_holds_up_none_of_its_calls(tel: TestClient, clock: Clock,
                                                                              vendor: str) -> None:
    """The agency's slip: one client's address pasted into another client's account at the
    same vendor. That account's every call comes from the vendor's network with its own token,
    the same wrong one each time: it counts once, so the site's own calls from there go on."""
    number = lease(tel)
    tel.headers.update({"x-forwarded-for": "203.0.113.72"})  # the vendor's network, every account's
    stranger = "another-accounts-token-01"
    posted = [(uis(tel, {**call_finished(number, clock.now), "call_session_id": 100 + n}, token=stranger)
               if vendor == "uis" else
               telphin(tel, hangup(number, clock.now + 45, CallID=f"stranger-{n}"), token=stranger)
               if vendor == "telphin" else
               mango(tel, mango_summary(number, clock.now, entry_id=f"stranger-{n}"), key=stranger)).status_code
              for n in range(30)]
    own = vendor_post(tel, vendor, number, clock.now, 1, right=True)
    assert posted == [401] * 30
    assert own.status_code == 200 and own.json()["credited"] is True


def test_a_site_without_a_vendors_credentials_refuses_its_calls(valkey_url: str, rules_dir: Path,
                                                                store: redis.Redis, clock: Clock) -> None:
    bare = "\n".join(line for line in SITE.replace("site: tel", "site: bare").replace("191-00", "192-00").split("\n")
                     if not line.strip().startswith(("mango", "zadarma", "uis", "telphin")))
    with site_client(valkey_url, rules_dir, clock, "bare", bare) as client:
        answers = [client.post(address, data={"event": "NOTIFY_END"}) for address in (
            "/v1/calls/mango/bare/events/summary", "/v1/calls/zadarma?site=bare", "/v1/calls/uis?site=bare&token=x",
            "/v1/calls/telphin?site=bare&token=x")]
    for answer in answers:
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "calls_not_configured"


def test_a_json_webhook_may_write_its_start_in_the_sites_time_zone(tel: TestClient, clock: Clock) -> None:
    number = lease(tel)
    raw = json.dumps({"call_id": "pbx-local-1", "called": number, "start": moscow(clock.now + 5).replace(" ", "T"),
                      "talk_seconds": 40}).encode()
    signature = "sha256=" + hmac.new(b"tel-calls-secret-000001", raw, hashlib.sha256).hexdigest()
    body = tel.post("/v1/calls?site=tel", content=raw, headers={"x-swapline-signature": signature}).json()
    assert body["credited"] is True and body["start"] == (clock.now + 5) * 1000
