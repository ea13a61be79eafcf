"""Call webhooks: signatures, crediting, idempotency, target calls, hashed callers, Twilio."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from service.integrations.calls import local_time
from service.rules import rulefiles
from tests.conftest import POOL_SITE, START, Clock, site_client
from tests.test_observability import metric

SECRET = b"test-calls-secret-0001"
TWILIO_TOKEN = "test-twilio-token-0001"
CALLER = "+79161234567"


def visit(client: TestClient, vid: str, url: str = "/") -> Any:
    return client.get("/v1/decide", params={"site": "pooltest", "url": url, "vid": vid}).json()


def post_call(client: TestClient, call: dict[str, Any], secret: bytes | None = SECRET,
              site: str = "pooltest") -> Any:
    raw = orjson.dumps(call)
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-swapline-signature"] = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    return client.post(f"/v1/calls?site={site}", content=raw, headers=headers)


def call(call_id: str, number: str, at: float, talk: int = 45, caller: str = CALLER) -> dict[str, Any]:
    return {"call_id": call_id, "called": number, "caller": caller, "start": at, "talk_seconds": talk,
            "status": "completed"}


def test_a_call_is_credited_to_the_visitor_holding_the_number(pool_client: TestClient, clock: Clock) -> None:
    body = visit(pool_client, "caller-visitor-000001", url="/?utm_term=x")
    clock.advance(30)
    answer = post_call(pool_client, call("c-1", body["phone"]["international"], clock.now)).json()
    assert answer["credited"] is True and answer["duplicate"] is False
    assert answer["visitor"] == "caller-visitor-000001" and answer["page"] == "/"
    assert answer["experiments"] == body["experiments"] and answer["pool"] == "small"
    assert answer["qualified"] is True and answer["unique"] is True
    assert answer["caller_last_digits"] == "4567"


def test_a_retried_call_counts_once(pool_client: TestClient, clock: Clock, store: redis.Redis) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    first = post_call(pool_client, call("c-1", number, clock.now)).json()
    again = post_call(pool_client, call("c-1", number, clock.now, talk=1)).json()
    assert again["duplicate"] is True
    assert {**again, "duplicate": False} == first  # the first record stands
    assert store.hlen("sw:{pooltest:calls}:calls") == 1


def test_an_id_that_already_names_another_call_is_a_conflict_not_a_retry(pool_client: TestClient, clock: Clock,
                                                                         store: redis.Redis) -> None:
    """Two PBXs' ids may meet (Asterisk's are a time and a counter): the second call is said to be
    refused, not answered as the first one's retry."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    first = post_call(pool_client, call("1796235790.50", number, clock.now)).json()
    other = post_call(pool_client, call("1796235790.50", "+74951900003", clock.now - 600, caller="+79990000008"))
    assert other.status_code == 409 and other.json()["error"]["code"] == "call_id_taken"
    assert post_call(pool_client, call("1796235790.50", number, clock.now)).json() == {**first, "duplicate": True}
    assert store.hlen("sw:{pooltest:calls}:calls") == 1


def test_calls_are_counted_on_the_metrics_by_outcome(pool_client: TestClient, clock: Clock) -> None:
    """An operator sees how many calls come and how many find their visitor, without the log."""
    def counted(outcome: str) -> float:
        line = next((line for line in pool_client.get("/metrics").text.splitlines()
                     if line.startswith(f'swapline_calls_total{{outcome="{outcome}",site="pooltest"}}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = {outcome: counted(outcome) for outcome in ("credited", "not_credited", "duplicate")}
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    post_call(pool_client, call("m-1", number, clock.now))
    post_call(pool_client, call("m-1", number, clock.now))
    post_call(pool_client, call("m-2", "+74959999999", clock.now))
    assert {outcome: counted(outcome) - before[outcome] for outcome in before} == {
        "credited": 1, "not_credited": 1, "duplicate": 1}


def test_calls_outside_any_hold_are_not_credited_and_say_how_near_one_they_came(pool_client: TestClient,
                                                                                clock: Clock) -> None:
    """A support engineer asked why a call is nobody's: one a second after the hold ended was made
    late; one hours from any hold has a clock or a zone written wrong. The call log says which."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]  # held from START for 60 s
    before = post_call(pool_client, call("early", number, START - 3 * 3600 - 120)).json()
    after = post_call(pool_client, call("late", number, START + 61)).json()
    for answer in (before, after):
        assert answer["credited"] is False and answer["visitor"] is None and answer["reason"] == "no_holder"
    assert before["holds_near"] == {"last_ended": None, "next_began": START * 1000}
    assert after["holds_near"] == {"last_ended": (START + 60) * 1000, "next_began": None}
    token = {"Authorization": "Bearer test-report-token-0001"}
    entries = pool_client.get("/v1/calls/pooltest", headers=token).json()["entries"]
    assert [entry["holds_near"] for entry in entries] == [after["holds_near"], before["holds_near"]]
    post_call(pool_client, call("just-late", number, START + 60.5, caller="+79035550004"))  # half a second after
    for language, late, early, clock_wrong, just in (
            ("en", "its number was freed 1 s before the call",
             "it was next given to a visitor 3 h 2 min after the call", "is the telephony's clock or time zone right?",
             "its number was freed a fraction of a second before the call"),
            ("ru", "номер освободился за 1 с до звонка",
             "следующему посетителю номер выдали через 3 ч 2 мин после звонка", "проверьте часы и часовой пояс АТС",
             "номер освободился за долю секунды до звонка")):
        page = pool_client.get("/dashboard/pooltest/calls", headers={**token, "accept-language": language}).text
        assert late in page and early in page and page.count(clock_wrong) == 1, language  # the early call's only
        assert just in page, language


def test_a_pool_whose_lease_ids_start_again_credits_no_call_to_another_numbers_lease(
        pool_client: TestClient, clock: Clock, store: redis.Redis) -> None:
    """A store that evicts keys (a maxmemory-policy other than noeviction) or is restored from an
    old copy may lose a pool's sequence: its lease ids start again, and an id in a number's
    history names a later lease of another number, another visitor's."""
    first = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    clock.advance(61)  # the first visitor's hold is over
    store.delete("sw:{pooltest:small}:seq")
    second = visit(pool_client, "caller-visitor-000002")["phone"]["number"]
    assert second != first
    answer = post_call(pool_client, call("after-the-loss", first, clock.now)).json()
    assert (answer["credited"], answer["visitor"], answer["reason"]) == (False, None, "no_holder")
    assert post_call(pool_client, call("to-the-second", second, clock.now)).json()["visitor"] == "caller-visitor-000002"


def test_a_call_stamped_in_the_second_its_number_was_shown_is_credited(pool_client: TestClient, clock: Clock) -> None:
    """A PBX gives the start to the second: a call the moment the number showed is stamped
    before its lease began, which a clock in milliseconds began at .806 s."""
    clock.now = START + 100.806
    number = visit(pool_client, "quick-caller-00000001")["phone"]["number"]
    quick = post_call(pool_client, call("same-second", number, START + 100)).json()
    assert (quick["credited"], quick["visitor"]) == (True, "quick-caller-00000001")
    for early, at in (("a-second-before", START + 99), ("stamped-in-ms", START + 100.5)):
        answer = post_call(pool_client, call(early, number, at, caller="+79990000009")).json()
        assert (answer["credited"], answer["reason"]) == (False, "no_holder"), early


def test_a_call_in_the_second_of_the_first_page_view_has_that_page_in_its_visit(pool_client: TestClient,
                                                                              clock: Clock) -> None:
    """A tap on a `tel:` link as the page shows: a PBX's start in whole seconds stands for any
    moment of it (docs/CALLS.md), so the page view at .806 s is in the visit's pages, in the
    answer, the call log and a retry's answer."""
    clock.now = START + 100.806
    number = visit(pool_client, "quick-caller-00000001")["phone"]["number"]
    answer = post_call(pool_client, call("in-the-pages-second", number, START + 100)).json()
    seen = [{"at": (START + 100) * 1000 + 806, "path": "/"}]
    assert answer["credited"] is True and answer["visit"]["pages"] == seen
    log = pool_client.get("/v1/calls/pooltest", headers={"Authorization": "Bearer test-report-token-0001"}).json()
    assert log["entries"][0]["visit"]["pages"] == seen
    again = post_call(pool_client, call("in-the-pages-second", number, START + 100)).json()
    assert again["visit"]["pages"] == seen  # as stored


def test_a_caller_who_calls_the_number_back_is_the_visitor_it_was_shown_to(pool_client: TestClient,
                                                                           clock: Clock) -> None:
    """A customer misses the manager, then calls back from their phone's list of calls after
    the hold ended, and again once the number is another visitor's: each call is the first
    visitor's (within calls.unique_within), as the caller is; other callers are the holder's."""
    shown = visit(pool_client, "first-visitor-0000001", url="/?utm_source=google&utm_medium=cpc&utm_campaign=win")
    number = shown["phone"]["number"]
    missed = post_call(pool_client, {**call("missed", number, clock.now + 10, talk=0), "status": "no-answer"}).json()
    assert (missed["visitor"], missed["reason"], missed["visit"]["campaign"]) == ("first-visitor-0000001", None, "win")
    clock.advance(3600)  # an hour later: the hold is long over, the number back in the pool
    back = post_call(pool_client, call("called-back", number, clock.now)).json()
    for vid in ("other-visitor-000001", "other-visitor-000002", "next-holder-00000001"):  # the longest free first
        taken = visit(pool_client, vid)["phone"]["number"]
    assert taken == number  # the next holder's now
    clock.advance(30)
    again = post_call(pool_client, call("called-back-again", number, clock.now)).json()
    stranger = post_call(pool_client, call("stranger", number, clock.now + 1, caller="+79035550000")).json()
    for answer in (back, again):
        assert (answer["credited"], answer["visitor"], answer["reason"]) == (True, "first-visitor-0000001",
                                                                             "called_back")
        assert answer["visit"] == missed["visit"] and answer["unique"] is False
    assert (back["qualified"], again["qualified"]) == (True, False)  # the first target call, after a missed one
    assert (stranger["visitor"], stranger["reason"]) == ("next-holder-00000001", None)
    assert (back["earlier_call"], again["earlier_call"], stranger["earlier_call"]) == ("missed", "called-back", None)
    page = pool_client.get("/dashboard/pooltest/calls", headers={"Authorization": "Bearer test-report-token-0001"}).text
    assert page.count('their earlier call: <a href="?call_id=called-back">called-back</a>') == 1  # a click away
    clock.advance(86_401)  # past calls.unique_within: a caller of long ago is the holder's, like anyone
    late = post_call(pool_client, call("a-day-later", number, clock.now)).json()
    assert (late["credited"], late["reason"]) == (False, "no_holder")


def test_the_next_holder_gets_calls_after_the_number_moves_on(pool_client: TestClient, clock: Clock) -> None:
    first = visit(pool_client, "first-visitor-0000001")["phone"]["number"]
    for n in (2, 3):
        visit(pool_client, f"other-visitor-000000{n}")
    clock.advance(61)
    assert visit(pool_client, "next-visitor-00000001")["phone"]["number"] == first
    assert post_call(pool_client, call("a", first, START + 30)).json()["visitor"] == "first-visitor-0000001"
    # Another caller: the first one calling back would be the first visitor's (called_back).
    assert post_call(pool_client, call("b", first, clock.now + 5, caller="+79035550001")).json()["visitor"] == \
        "next-visitor-00000001"


def test_a_number_taken_out_of_the_pool_is_credited_to_the_visitor_who_still_holds_it(
        pool_client: TestClient, clock: Clock, rules_dir: Path) -> None:
    """A marketer replaces a number in the rules while a visitor has it on their screen."""
    held = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    written = f'"+7 495 190-00-0{held[-1]}"'  # as POOL_SITE writes the number
    assert written in POOL_SITE
    (rules_dir / "pooltest.yaml").write_text(POOL_SITE.replace(written, '"+7 495 190-00-09"'))
    runtime = pool_client.app.state.runtime  # type: ignore[attr-defined]
    runtime.rules = rulefiles.load(rules_dir)  # what a reload does
    assert held not in runtime.rules.sites["pooltest"].tracking_numbers
    clock.advance(30)
    answer = post_call(pool_client, call("replaced", held, clock.now)).json()
    assert (answer["credited"], answer["visitor"], answer["pool"]) == (True, "caller-visitor-000001", "small")
    clock.advance(61)  # the hold is over: nobody holds it now
    late = post_call(pool_client, call("after-the-hold", held, clock.now, caller="+79990000007")).json()
    assert (late["credited"], late["reason"]) == (False, "unknown_number")


def test_overflow_static_and_page_numbers_are_not_credited_to_visitors(pool_client: TestClient) -> None:
    for number, kind, reason in [("+74951900000", "overflow", "overflow_number"),
                                 ("+78005553536", "static", "static_number"),
                                 ("+78005553535", "page", "page_number"),
                                 ("+74959999999", "unknown", "unknown_number")]:
        answer = post_call(pool_client, call(f"c-{kind}", number, START)).json()
        assert (answer["kind"], answer["reason"], answer["credited"]) == (kind, reason, False)
    post_call(pool_client, {**call("c-busy", "+74951900001", START), "status": "busy"})
    # The Calls tab says each in words, in English as in Russian; the API keeps the codes.
    for language, words in (("en", ["the pool's overflow number", "a static number", "the page's own number",
                                     "none of the site's numbers", "nobody held the number then", ">answered<",
                                     ">busy<"]),
                            ("ru", ["резервный номер пула", "статический номер", "номер самой страницы",
                                    "не номер сайта", "номер в это время ни у кого не был", ">отвечен<", ">занято<"])):
        page = pool_client.get("/dashboard/pooltest/calls", headers={"Authorization": "Bearer test-report-token-0001",
                                                                     "accept-language": language}).text
        assert [word for word in words if word not in page] == [], language
        assert not re.search(r"\((no_holder|static_number|overflow_number|page_number|unknown_number)\)|>completed<",
                             page)


def test_target_calls_need_talk_time_and_a_new_caller(pool_client: TestClient, clock: Clock) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    short = post_call(pool_client, call("short", number, clock.now, talk=10, caller="+79990000001")).json()
    assert short["unique"] is True and short["qualified"] is False
    first = post_call(pool_client, call("first", number, clock.now + 1, caller="+79990000002")).json()
    repeat = post_call(pool_client, call("repeat", number, clock.now + 20, caller="+79990000002")).json()
    assert first["qualified"] is True
    assert repeat["unique"] is False and repeat["qualified"] is False
    hidden = post_call(pool_client, call("hidden", number, clock.now + 30, caller="anonymous")).json()
    assert hidden["qualified"] is True and hidden["caller_last_digits"] is None
    clock.advance(20 + 86_401)
    next_day = post_call(pool_client, call("next-day", number, clock.now, caller="+79990000002"))
    assert next_day.json()["unique"] is True  # a day after the last call: the window is one day


def test_a_caller_who_gets_through_on_the_second_try_makes_a_target_call(pool_client: TestClient,
                                                                           clock: Clock) -> None:
    """A missed or short call first is no target call, and keeps none from the next: the first
    call that is one is the target call (Calltouch's «уникально-целевой»); `unique` still says
    the caller called before."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    clock.advance(150)
    missed = post_call(pool_client, {**call("cb-1", number, clock.now - 120, talk=0, caller="+79257770001"),
                                     "status": "no-answer"}).json()
    got_through = post_call(pool_client, call("cb-2", number, clock.now - 30, talk=90, caller="+79257770001")).json()
    again = post_call(pool_client, call("cb-3", number, clock.now, talk=90, caller="+79257770001")).json()
    assert (missed["unique"], missed["qualified"], missed["not_target"]) == (True, False, "missed")
    assert (got_through["unique"], got_through["qualified"], got_through["not_target"]) == (False, True, None)
    assert (again["unique"], again["qualified"], again["not_target"]) == (False, False, "repeat")  # one a window
    short = post_call(pool_client, call("short-1", number, clock.now, talk=10, caller="+79257770002")).json()
    longer = post_call(pool_client, call("long-1", number, clock.now + 5, talk=60, caller="+79257770002")).json()
    assert (short["qualified"], short["not_target"], longer["qualified"]) == (False, "short", True)
    # The call log says it, and the dashboard beside its "no", in the site's language.
    token = {"Authorization": "Bearer test-report-token-0001"}
    logged = pool_client.get("/v1/calls/pooltest", params={"caller": "0001"}, headers=token).json()["entries"]
    assert [entry["not_target"] for entry in logged] == ["repeat", None, "missed"]
    for language, short_talk, repeat in (("en", "talk under 30 s", "already a target call"),
                                         ("ru", "разговор короче 30 с", "уже был целевой")):
        page = pool_client.get("/dashboard/pooltest/calls", headers={**token, "accept-language": language}).text
        assert page.count(short_talk) == 1 and page.count(repeat) == 1, language


def test_a_callers_calls_within_the_window_make_one_target_call_whatever_order_they_come_in(
        pool_client: TestClient, clock: Clock) -> None:
    """A late retry, the spool's replay or a CDR import may bring the earlier call second."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    clock.advance(3000)
    later = post_call(pool_client, call("later", number, clock.now, caller="+79990000004")).json()
    earlier = post_call(pool_client, call("earlier", number, clock.now - 3000, caller="+79990000004")).json()
    same_second = post_call(pool_client, call("same-second", number, clock.now, caller="+79990000005")).json()
    twin = post_call(pool_client, call("twin", number, clock.now, caller="+79990000005")).json()
    assert [later["qualified"], earlier["qualified"]] == [True, False]
    assert [same_second["qualified"], twin["qualified"]] == [True, False]


def test_a_start_far_ahead_of_the_clock_is_refused_with_a_hint(pool_client: TestClient, clock: Clock) -> None:
    """A PBX that writes Moscow time as UTC sends calls three hours ahead: none would find its holder."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    refused = post_call(pool_client, call("ahead", number, clock.now + 3 * 3600))
    assert refused.status_code == 400 and refused.json()["error"] == {
        "code": "invalid_call", "message": "the call starts 3 h 0 min from now: are the telephony's clock and time "
                                           "zone right?"}
    drifted = post_call(pool_client, call("drifted", number, clock.now + 30)).json()  # a clock a little fast
    assert drifted["credited"] is True and drifted["visitor"] == "caller-visitor-000001"
    again = post_call(pool_client, call("ahead", number, clock.now)).json()
    assert again["duplicate"] is False  # the refused call burnt no id


@pytest.mark.parametrize(("status", "kind"), [("NO ANSWER", "missed_call"), ("no_answer", "missed_call"),
                                              ("NoAnswer", "missed_call"), ("Busy", "missed_call"),
                                              ("cancel", "missed_call"), ("CONGESTION", "missed_call"),
                                              ("ANSWERED", "call"), ("Completed", "call")])
def test_statuses_as_pbxs_write_them_are_read_and_a_missed_call_is_never_a_target_call(
        pool_client: TestClient, clock: Clock, status: str, kind: str) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    answer = post_call(pool_client, {**call("as-written", number, clock.now, talk=40), "status": status}).json()
    assert answer["credited"] is True
    assert answer["qualified"] is (kind == "call")  # a busy line's 40 seconds are not a conversation
    entry, = pool_client.get("/v1/conversions/pooltest", headers={"Authorization": "Bearer test-report-token-0001"}
                             ).json()["entries"]
    assert entry["kind"] == kind


def test_statuses_are_named_alike_whoever_reports_them(pool_client: TestClient, clock: Clock) -> None:
    """The JSON webhook maps Asterisk's and Zadarma's words as the CDR import and Zadarma's
    adapter do: one status a call, in the log and its filters."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    named = {given: post_call(pool_client, {**call(f"as-{given}", number, clock.now + n, caller=f"+7999000002{n}"),
                                            "status": given}).json()["status"]
             for n, given in enumerate(("cancel", "CONGESTION", "ANSWERED", "NOANSWER", "DONTCALL", "TORTURE"))}
    assert named == {"cancel": "canceled", "CONGESTION": "failed", "ANSWERED": "completed", "NOANSWER": "no-answer",
                     "DONTCALL": "failed", "TORTURE": "failed"}  # Asterisk's privacy manager's, too


def test_a_dialplans_empty_variables_are_read_as_not_given(pool_client: TestClient, clock: Clock) -> None:
    """Asterisk's ${DIALSTATUS} is empty when the caller hangs up before the dial, and
    ${ANSWEREDTIME} when nobody answered: a dialplan posts them as they are."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    hung_up = post_call(pool_client, {**call("hung-up", number, clock.now), "status": "", "talk_seconds": ""})
    talked = post_call(pool_client, {**call("talked", number, clock.now + 1, caller="+79990000099"), "status": ""})
    assert (hung_up.status_code, hung_up.json()["status"], hung_up.json()["talk_seconds"]) == (200, "missed", 0)
    assert (talked.status_code, talked.json()["status"], talked.json()["talk_seconds"]) == (200, "completed", 45)
    unquoted = post_call(pool_client, {**call("x", number, clock.now), "call_id": 1733212345.123})
    assert unquoted.status_code == 400 and unquoted.json()["error"]["message"] == \
        'call_id must be a string: quote it ("1733212345.123")'


@pytest.mark.parametrize("talk", ["45", 45.0, "45.0", 45])
def test_talk_time_written_as_text_or_a_whole_float_is_read(pool_client: TestClient, clock: Clock,
                                                            talk: Any) -> None:
    """JSON templates quote every value (as UIS's does), and some scripts write floats."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    answer = post_call(pool_client, {**call("as-written", number, clock.now), "talk_seconds": talk})
    assert answer.status_code == 200 and answer.json()["talk_seconds"] == 45


def test_numbers_sent_as_json_numbers_are_read(pool_client: TestClient, clock: Clock) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    first = post_call(pool_client, {**call("numeric-1", number, clock.now), "called": int(number[1:]),
                                    "caller": 79990000006}).json()
    again = post_call(pool_client, call("numeric-2", number, clock.now + 5, caller="+79990000006")).json()
    assert first["credited"] is True and first["caller_last_digits"] == "0006"
    assert again["unique"] is False  # the same caller, however sent


@pytest.mark.parametrize("written", ["8{digits}", "7{digits}", "{digits}", "8 ({code}) {rest}"])
def test_numbers_written_as_russian_pbxs_write_them_are_read(pool_client: TestClient, clock: Clock,
                                                             written: str) -> None:
    """Mango Office and Zadarma write numbers without `+`, with the trunk prefix 8, or bare:
    the called number is the pool's all the same, and the caller the same repeat caller."""
    held = visit(pool_client, "caller-visitor-000001")["phone"]["number"]  # +7XXXXXXXXXX
    digits = held[2:]
    called = written.format(digits=digits, code=digits[:3], rest=digits[3:])
    first = post_call(pool_client, call("as-written-1", called, clock.now, caller="+79990000003")).json()
    assert first["credited"] is True and first["visitor"] == "caller-visitor-000001"
    again = post_call(pool_client, call("as-written-2", held, clock.now + 5, caller="89990000003")).json()
    assert again["unique"] is False and again["caller_last_digits"] == "0003"  # one caller, however written


@pytest.mark.parametrize("written", ["0{digits}", "98{digits}", "9 8 ({code}) {rest}", "{local}", "sip:0{digits}@pbx"])
def test_a_number_dialled_after_a_pbxs_trunk_prefix_or_as_a_local_did_is_the_sites(pool_client: TestClient,
                                                                                   clock: Clock, written: str) -> None:
    """A PBX that writes the number dialled after its own trunk prefix (0, 9 for a line out), or
    only the DID's seven local digits, names one of the site's numbers all the same: its calls
    used to be refused, and lost."""
    held = visit(pool_client, "caller-visitor-000001")["phone"]["number"]  # +7 495 190-00-0N
    digits = held[2:]
    called = written.format(digits=digits, code=digits[:3], rest=digits[3:], local=digits[3:])
    answer = post_call(pool_client, call("trunk-1", called, clock.now)).json()
    assert (answer["number"], answer["credited"], answer["visitor"]) == (held, True, "caller-visitor-000001")
    static = post_call(pool_client, call("trunk-2", "0 800 555-35-36", clock.now)).json()  # a fixed number too
    assert (static["number"], static["reason"]) == ("+78005553536", "static_number")


def test_only_a_number_written_without_its_country_is_read_as_the_sites_by_its_last_digits(
        valkey_url: str, rules_dir: Path, clock: Clock) -> None:
    """Two of the site's numbers that end alike leave a local DID nobody's; a number written with
    its `+` is only itself; a mobile's number is a mobile's, whatever its last digits."""
    site = POOL_SITE.replace('"+7 495 190-00-03"', '"+7 812 190-00-01"')
    with site_client(valkey_url, rules_dir, clock, "pooltest", site) as client:
        ambiguous = post_call(client, call("local-1", "1900001", clock.now))
        assert ambiguous.status_code == 400 and "'1900001'" in ambiguous.json()["error"]["message"]
        foreign = post_call(client, call("plus-1", "+375 29 190-00-02", clock.now)).json()
        assert (foreign["number"], foreign["reason"]) == ("…0002", "unknown_number")
        assert post_call(client, call("plus-2", "+1 495 190-00-02", clock.now)).status_code == 400  # no such number
        mobile = post_call(client, call("mobile-1", "8 916 190-00-02", clock.now)).json()
        assert (mobile["number"], mobile["reason"]) == ("…0002", "unknown_number")
        spelt_out = post_call(client, call("full-1", "0 812 190-00-01", clock.now)).json()
        assert spelt_out["number"] == "+78121900001"
        # Two numbers in one field, or digits no trunk prefix has before one: not the last one's.
        for written in ("4951900001,4951900002", "9999999999 495 190-00-02"):
            refused = post_call(client, call("two-1", written, clock.now))
            assert refused.status_code == 400 and "is not a valid phone number" in refused.text, written


@pytest.mark.parametrize("withheld", ["+266696687", "Anonymous", "Restricted", "Unknown", "Private", "0000000000"])
def test_a_withheld_caller_id_is_no_caller_to_remember(pool_client: TestClient, clock: Clock, withheld: str) -> None:
    """Twilio spells a withheld number on the keypad (+266696687 is ANONYMOUS) or in words, a PBX
    writes zeros: many customers, none of them a repeat caller."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    first, second = (post_call(pool_client, call(f"hidden-{n}", number, clock.now + n, caller=withheld)).json()
                     for n in (1, 2))
    for answer in (first, second):
        assert (answer["caller_last_digits"], answer["unique"], answer["qualified"]) == (None, True, True)


@pytest.mark.parametrize("written", ["+7.916.555.12.34", "tel:+79165551234", "+7 916 555\u201112\u201134",
                                     "+7 916 555\u201312\u201334", "+79165551234 (моб.)",
                                     "sip:+79165551234@pbx.example", "79165551234;tag=as6f0e", "0079165551234"])
def test_a_caller_is_read_however_the_pbx_writes_the_number(pool_client: TestClient, clock: Clock,
                                                            written: str) -> None:
    """Dots, a URI, non-breaking hyphens and dashes, a note, a SIP tag, the international prefix
    00: the caller, as a called number is read. The last two used to be read as a withheld number."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    first = post_call(pool_client, call("written-1", number, clock.now, caller=written)).json()
    again = post_call(pool_client, call("written-2", number, clock.now + 5, caller="89165551234")).json()
    assert (first["caller_last_digits"], first["unique"]) == ("1234", True)
    assert (again["caller_last_digits"], again["unique"]) == ("1234", False)


@pytest.mark.parametrize(("written", "again"), [("375291234567", "+375 29 123-45-67"),  # Belarus
                                                ("380501234567", "380501234567"),  # Ukraine
                                                ("998901234567", "+998901234567"),  # Uzbekistan
                                                ("00375291234567", "810375291234567")])  # as Europe and Russia dial out
def test_a_foreign_caller_written_without_its_plus_is_a_caller(pool_client: TestClient, clock: Clock,
                                                               written: str, again: str) -> None:
    """Mango Office writes every number in full without its +: a foreign customer's is none in
    the site's country, and was taken for a withheld number (each call a new target call)."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    first = post_call(pool_client, call("abroad-1", number, clock.now, caller=written)).json()
    second = post_call(pool_client, call("abroad-2", number, clock.now + 5, caller=again)).json()
    assert (first["caller_last_digits"], first["unique"], first["qualified"]) == ("4567", True, True)
    assert (second["caller_last_digits"], second["unique"], second["qualified"]) == ("4567", False, False)


def test_a_called_sip_uri_is_read_as_its_number(pool_client: TestClient, clock: Clock) -> None:
    """A PBX behind a SIP trunk, and Twilio's SIP domains, name the called number in a URI."""
    held = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    clock.advance(50)  # Twilio's call without a Timestamp started CallDuration before now
    generic = post_call(pool_client, call("sip-1", f"sip:{held}@pbx.example", clock.now)).json()
    twilio = twilio_post(pool_client, {"CallSid": "CA-sip", "From": CALLER, "To": f"sip:{held}@swapline.sip.twilio.com",
                                       "CallStatus": "completed", "CallDuration": "40"}).json()
    dialplan = post_call(pool_client, call("exten-1", f"{held[1:]}@from-trunk", clock.now + 1)).json()  # Asterisk's
    for answer in (generic, twilio, dialplan):
        assert (answer["number"], answer["credited"], answer["visitor"]) == (held, True, "caller-visitor-000001")


def test_caller_numbers_are_not_stored_raw(pool_client: TestClient, store: redis.Redis) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    post_call(pool_client, call("c-1", number, START, caller="+7 (916) 123-45-67"))
    # Rate-limit counters are named by hex hashes and minute numbers, where any three digits may stand.
    dump = b"".join(key + store.dump(key) for key in store.keys("*") if not key.startswith(b"sw:{limit:"))
    # Not as written, nor its digits past the last four kept (three digits alone turn up in random ids).
    assert not any(part in dump for part in (b"9161234567", b"(916) 123", b"123-45", b"9161234", b"916123"))


def test_a_number_that_is_none_of_the_sites_is_kept_as_a_callers_is(pool_client: TestClient, clock: Clock,
                                                                    store: redis.Redis) -> None:
    """A PBX that posts every call reports the manager's mobile, or the customer's own number as
    the one called: only its last digits are kept, in the record, the log and its files."""
    post_call(pool_client, call("to-a-mobile", "+7 903 555-01-01", clock.now, caller="+79990000010"))
    answer = post_call(pool_client, call("to-a-mobile", "+79035550101", clock.now, caller="+79990000010")).json()
    assert (answer["duplicate"], answer["number"], answer["reason"]) == (True, "…0101", "unknown_number")
    other = post_call(pool_client, call("to-a-mobile", "+79035550202", clock.now, caller="+79990000010"))
    assert other.status_code == 409  # the same id for a call to another number is still no retry
    tracked = post_call(pool_client, call("to-the-site", "+74951900001", clock.now)).json()
    assert tracked["number"] == "+74951900001"  # the site's own numbers are no secret
    log = pool_client.get("/v1/calls/pooltest.csv", headers={"Authorization": "Bearer test-report-token-0001"}).text
    assert "…0101" in log and "+74951900001" in log
    dump = b"".join(key + store.dump(key) for key in store.keys("*") if not key.startswith(b"sw:{limit:"))
    assert b"903555" not in dump


def test_a_refused_call_leaves_a_line_in_the_log_once_a_minute_for_each_reason(
        pool_client: TestClient, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Whoever sets up the PBX reads why its calls are refused in the service's log, with the
    numbers' digits hidden but their last four; a PBX that retries adds a count, not lines, and
    each site has lines of its own."""
    caplog.set_level(logging.WARNING, logger="swapline")
    refused = {"site": "pooltest", "outcome": "refused"}
    before = metric(pool_client.get("/metrics").text, "swapline_calls_total", **refused)
    for n in range(3):  # a number one digit short, and its retries
        assert post_call(pool_client, call(f"short-{n}", "8 916 123-45-6", clock.now)).status_code == 400
    # Wrong another way meanwhile, under the same code: a line of its own.
    assert post_call(pool_client, {**call("ringing", "+74951900001", clock.now), "status": "ringing"}
                     ).status_code == 400
    assert post_call(pool_client, call("short-x", "8 916 123-45-7", clock.now)).status_code == 400  # counted
    assert post_call(pool_client, call("unsigned", "+74951900001", clock.now), secret=None).status_code == 401
    # Another client's PBX, wrong the same way meanwhile: a line of its own, not one of the count.
    assert post_call(pool_client, call("unsigned", "+74951900001", clock.now), secret=None,
                     site="demo").status_code == 401
    clock.advance(61)
    post_call(pool_client, call("short-3", "8 916 123-45-6", clock.now))
    lines = [record.getMessage() for record in caplog.records if "call refused" in record.getMessage()]
    assert lines == [
        "call refused (site 'pooltest', /v1/calls): 400 invalid_call: called is not a valid phone number: "
        "'• ••• ••3-45-6'",
        "call refused (site 'pooltest', /v1/calls): 400 invalid_call: status must be completed or answered for an "
        "answered call, or one of missed, busy, no-answer, failed, canceled, cancelled, noanswer, cancel, congestion, "
        "chanunavail, dontcall, torture, invalidargs for a call nobody answered",
        "call refused (site 'pooltest', /v1/calls): 401 invalid_signature: X-Swapline-Signature is missing",
        "call refused (site 'demo', /v1/calls): 401 invalid_signature: X-Swapline-Signature is missing",
        "call refused (site 'pooltest', /v1/calls): 400 invalid_call: called is not a valid phone number: "
        "'• ••• ••3-45-6' (and 3 more since the last such line)",
    ]
    after = metric(pool_client.get("/metrics").text, "swapline_calls_total", **refused)
    assert after - before == 7  # each counted for its site (demo's apart): whose PBX fails shows


def test_a_call_heard_of_before_it_could_have_ended_says_the_pbxs_clock_is_ahead(
        pool_client: TestClient, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A PBX's clock 20 s ahead credits a call to whoever held the number 20 s after it started:
    nothing shows it in the answer, so the log says so, once a minute."""
    caplog.set_level(logging.WARNING, logger="swapline")
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    post_call(pool_client, call("on-time", number, clock.now - 47, talk=45))  # rang 2 s, ended just now
    post_call(pool_client, call("ahead-1", number, clock.now - 25, talk=45))  # ends 20 s from now
    post_call(pool_client, call("ahead-2", number, clock.now - 20, talk=45))
    lines = [record.getMessage() for record in caplog.records if "clock" in record.getMessage()]
    assert lines == ["a call to site 'pooltest' ends 20 s after the service's clock says now: the telephony's "
                     "clock is ahead, and a call may be credited to whoever held its number next; set it by NTP "
                     "(docs/CALLS.md)"]


@pytest.mark.parametrize(("secret", "says"), [(None, "is missing"), (b"wrong-secret-0000000000", "--data-binary")])
def test_unsigned_or_badly_signed_calls_are_refused(pool_client: TestClient, secret: bytes | None,
                                                    says: str, store: redis.Redis) -> None:
    response = post_call(pool_client, call("c-1", "+74951900001", START), secret=secret)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_signature"
    assert says in response.json()["error"]["message"]  # what an integrator can mend
    assert not store.exists("sw:{pooltest:calls}:calls")
    raw = orjson.dumps(call("c-1", "+74951900001", START))
    shouting = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest().upper()
    refused = pool_client.post("/v1/calls?site=pooltest", content=raw, headers={"x-swapline-signature": shouting})
    assert refused.status_code == 401 and "lower-case hex" in refused.json()["error"]["message"]


def test_site_without_a_calls_secret_refuses_calls(pool_client: TestClient) -> None:
    response = post_call(pool_client, call("c-1", "+74951200001", START), site="demo", secret=b"anything")
    assert response.status_code == 401  # demo's secret differs; the signature fails


@pytest.mark.parametrize(("body", "code"), [
    ({"called": "+74951900001", "start": START}, "invalid_call"),
    ({"call_id": "x", "start": START}, "invalid_call"),
    ({"call_id": "x", "called": "12", "start": START}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": "yesterday"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": "2026-11-22T10:00:00"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "talk_seconds": -5}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "talk_seconds": 45.5}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "talk_seconds": "45 s"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "talk_seconds": "86400"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "talk_seconds": True}, "invalid_call"),
    ({"call_id": "x" * 200, "called": "+74951900001", "start": START}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "status": "weird"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "status": "unanswered"}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "status": 3}, "invalid_call"),
    ({"call_id": "x", "called": "+74951900001", "start": START, "status": "x" * 5000}, "invalid_call"),
])
def test_malformed_calls_get_a_clear_400(pool_client: TestClient, body: dict[str, Any], code: str) -> None:
    response = post_call(pool_client, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_a_start_in_unix_seconds_written_as_text_is_read(pool_client: TestClient, clock: Clock) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    answer = post_call(pool_client, {**call("as-text", number, clock.now), "start": f" {int(clock.now)} "}).json()
    assert answer["credited"] is True and answer["start"] == int(clock.now) * 1000


@pytest.mark.parametrize("written", ["2026-12-04 09:05:30", "2026-12-04T09:05:30+03:00", "04.12.2026 09:05:30",
                                     "4.12.2026 9:05:30"])
def test_a_local_time_is_read_as_pbxs_and_russian_spreadsheets_write_it(written: str) -> None:
    moment = datetime.datetime(2026, 12, 4, 9, 5, 30, tzinfo=ZoneInfo("Europe/Moscow"))
    assert local_time(written, "start", ZoneInfo("Europe/Moscow")) == int(moment.timestamp()) * 1000


def test_a_moment_out_of_range_is_named_as_it_was_written(pool_client: TestClient) -> None:
    """An ISO time of 2100 is no 'unix seconds', and the field is the one given."""
    iso = post_call(pool_client, {**call("far-1", "+74951900001", START), "start": "2100-01-01T00:00:00Z"})
    assert iso.json()["error"]["message"] == "start must be a moment from 2000 to 2099"
    view = pool_client.get("/v1/numbers/pooltest/+74951900001", params={"at": "1999-12-31T23:00:00Z"},
                           headers={"Authorization": "Bearer test-report-token-0001"})
    assert view.json()["error"] == {"code": "invalid_filter", "message": "at must be a moment from 2000 to 2099"}


def test_an_absurd_number_is_not_echoed_whole(pool_client: TestClient) -> None:
    refused = post_call(pool_client, call("long", "9" * 5000, START)).json()["error"]["message"]
    assert refused == f"called is not a valid phone number: '{'9' * 40}'"


ABSURD_STARTS = [1e17, -1e17, 1e20, 1e308, -1e308, 1795000000123, "9999-12-31T23:59:59+00:00",
                 "0001-01-01T00:00:00+00:00", 0, 2**63 - 1]


@pytest.mark.parametrize("start", ABSURD_STARTS)
def test_absurd_moments_get_a_clear_400_and_burn_no_call_id(pool_client: TestClient, store: redis.Redis,
                                                            start: Any) -> None:
    number = visit(pool_client, "absurd-visitor-000001")["phone"]["number"]
    response = post_call(pool_client, call("absurd-1", number, start))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_call"
    assert "2000 to 2099" in response.json()["error"]["message"]
    assert post_call(pool_client, call("absurd-1", number, START)).json()["duplicate"] is False  # not burnt


def test_a_start_in_milliseconds_is_named_as_such(pool_client: TestClient) -> None:
    response = post_call(pool_client, call("ms-1", "+74951900001", START * 1000))
    assert "(this looks like milliseconds)" in response.json()["error"]["message"]


def test_a_start_of_a_day_without_its_time_is_refused(pool_client: TestClient) -> None:
    """Read as its midnight, it would credit whoever held the number then."""
    response = post_call(pool_client, {**call("day-1", "+74951900001", START), "start": "2026-11-18"})
    assert response.status_code == 400 and "the time of day" in response.json()["error"]["message"]


@pytest.mark.parametrize("duration", ["²", "1" * 23, "-1", "86400", "4.5", " 42", "٤٢"])
def test_twilio_durations_that_are_no_whole_seconds_get_a_clear_400(pool_client: TestClient, duration: str) -> None:
    params = {"CallSid": "CA77", "From": CALLER, "To": "+74951900001", "CallStatus": "completed",
              "CallDuration": duration}
    response = twilio_post(pool_client, params)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_call"


def test_bodies_over_the_limit_are_refused(pool_client: TestClient) -> None:
    response = pool_client.post("/v1/calls?site=pooltest", content=b"{" + b" " * 20_000 + b"}")
    assert response.status_code == 413


def twilio_post(client: TestClient, params: dict[str, str], token: str = TWILIO_TOKEN) -> Any:
    url = "http://testserver/v1/calls/twilio?site=pooltest"
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(url, content=urlencode(params),
                       headers={"content-type": "application/x-www-form-urlencoded",
                                "x-twilio-signature": signature})


def test_twilio_status_callbacks_verified_with_twilios_own_validator(pool_client: TestClient,
                                                                    clock: Clock) -> None:
    number = visit(pool_client, "twilio-visitor-000001")["phone"]["number"]
    clock.advance(100)  # the call starts 58 s after the page view and lasts 42 s
    params = {"CallSid": "CA123", "AccountSid": "AC1", "From": CALLER, "To": number, "CallStatus": "completed",
              "CallDuration": "42", "Direction": "inbound", "ApiVersion": "2010-04-01",
              "Timestamp": email.utils.formatdate(clock.now, usegmt=True)}
    answer = twilio_post(pool_client, params).json()
    assert answer["credited"] is True and answer["visitor"] == "twilio-visitor-000001"
    assert answer["talk_seconds"] == 42 and answer["qualified"] is True
    assert twilio_post(pool_client, params).json()["duplicate"] is True


@pytest.mark.parametrize("leg", [{"Direction": "outbound-dial", "ParentCallSid": "CA-inbound"},
                                 {"Direction": "outbound-api"}, {"ParentCallSid": "CA-inbound"}])
def test_twilio_legs_no_visitor_dialled_are_ignored(pool_client: TestClient, clock: Clock,
                                                    leg: dict[str, str]) -> None:
    """<Dial> to the manager's mobile, and calls placed through the API, post their own status
    callbacks: From is the caller or the site's number, To someone's phone. None is a call to
    the site, and none may make the real inbound call a repeat."""
    number = visit(pool_client, "twilio-visitor-000001")["phone"]["number"]
    clock.advance(60)
    child = {"CallSid": "CA-child", "From": CALLER, "To": "+79035550101", "CallStatus": "completed",
             "CallDuration": "50", "Timestamp": email.utils.formatdate(clock.now - 1, usegmt=True), **leg}
    ignored = twilio_post(pool_client, child)
    assert ignored.status_code == 200 and ignored.json() == {"call_id": "CA-child", "ignored": "not an incoming call"}
    inbound = {"CallSid": "CA-inbound", "From": CALLER, "To": number, "CallStatus": "completed", "CallDuration": "55",
               "Direction": "inbound", "Timestamp": email.utils.formatdate(clock.now, usegmt=True)}
    answer = twilio_post(pool_client, inbound).json()
    assert (answer["credited"], answer["unique"], answer["qualified"]) == (True, True, True)
    log = pool_client.get("/v1/calls/pooltest", headers={"Authorization": "Bearer test-report-token-0001"}).json()
    assert [entry["number"] for entry in log["entries"]] == [number]


def test_a_call_to_none_of_the_sites_numbers_is_no_call_to_the_site(pool_client: TestClient, clock: Clock) -> None:
    """A PBX that posts every call (the manager's mobile, a colleague's line) spends no caller's
    first call, nor target call, on them."""
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    clock.advance(60)
    elsewhere = post_call(pool_client, call("elsewhere", "+79035550101", clock.now - 30, talk=60)).json()
    assert (elsewhere["kind"], elsewhere["unique"], elsewhere["qualified"], elsewhere["not_target"]) == (
        "unknown", False, False, "not_site_number")
    answer = post_call(pool_client, call("to-the-site", number, clock.now, talk=60)).json()
    assert (answer["unique"], answer["qualified"]) == (True, True)


def test_twilios_dial_action_says_whether_anyone_answered_and_how_long_they_talked(pool_client: TestClient,
                                                                                 clock: Clock) -> None:
    """The inbound call is `completed` once its TwiML ran, and its CallDuration counts the menu
    and the ringing: <Dial>'s action callback carries how the Dial went. Twilio then runs the
    TwiML it is answered: an empty one ends the call."""
    number = visit(pool_client, "twilio-visitor-000001")["phone"]["number"]
    clock.advance(120)
    action = {"From": CALLER, "To": number, "CallStatus": "completed", "CallDuration": "70", "Direction": "inbound"}
    unanswered = twilio_post(pool_client, {**action, "CallSid": "CA-nobody", "DialCallStatus": "no-answer",
                                           "DialCallDuration": "0"})
    assert unanswered.status_code == 200 and unanswered.headers["content-type"].startswith("text/xml")
    assert unanswered.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    answered = twilio_post(pool_client, {**action, "CallSid": "CA-talked", "DialCallStatus": "completed",
                                         "DialCallDuration": "42", "DialCallSid": "CA-leg"})
    assert answered.status_code == 200
    log = pool_client.get("/v1/calls/pooltest", headers={"Authorization": "Bearer test-report-token-0001"}).json()
    calls = {entry["call_id"]: entry for entry in log["entries"]}
    assert (calls["CA-nobody"]["status"], calls["CA-nobody"]["talk_seconds"], calls["CA-nobody"]["qualified"]) == (
        "no-answer", 0, False)
    assert (calls["CA-talked"]["status"], calls["CA-talked"]["talk_seconds"], calls["CA-talked"]["qualified"]) == (
        "completed", 42, True)
    conversions = pool_client.get("/v1/conversions/pooltest",
                                  headers={"Authorization": "Bearer test-report-token-0001"}).json()["entries"]
    assert sorted(entry["kind"] for entry in conversions) == ["call", "missed_call"]


def test_twilio_refuses_a_wrong_signature_and_ignores_unfinished_calls(pool_client: TestClient) -> None:
    params = {"CallSid": "CA9", "From": CALLER, "To": "+74951900001", "CallStatus": "completed"}
    forged = twilio_post(pool_client, params, token="someone-elses-token")
    assert forged.status_code == 401
    ringing = twilio_post(pool_client, {**params, "CallStatus": "ringing"})
    assert ringing.status_code == 200 and ringing.json()["ignored"] == "ringing"


def test_twilio_behind_a_proxy_uses_the_public_url(valkey_url: str, rules_dir: Any, store: redis.Redis) -> None:
    from service.app import create_app
    from tests.conftest import POOL_SITE, make_settings

    (rules_dir / "pooltest.yaml").write_text(POOL_SITE)
    app = create_app(make_settings(valkey_url, rules_dir, public_url="https://calls.example.com"))
    public = "https://calls.example.com/v1/calls/twilio?site=pooltest"
    params = {"CallSid": "CA7", "From": CALLER, "To": "+74951900001", "CallStatus": "busy"}
    with TestClient(app) as client:
        signed_for_public = RequestValidator(TWILIO_TOKEN).compute_signature(public, params)
        ok = client.post("/v1/calls/twilio?site=pooltest", content=urlencode(params),
                         headers={"x-twilio-signature": signed_for_public})
        internal = RequestValidator(TWILIO_TOKEN).compute_signature(
            "http://testserver/v1/calls/twilio?site=pooltest", params)
        refused = client.post("/v1/calls/twilio?site=pooltest", content=urlencode(params),
                              headers={"x-twilio-signature": internal})
    assert ok.status_code == 200 and ok.json()["status"] == "busy"
    assert refused.status_code == 401
