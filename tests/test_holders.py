"""A tracking number's holds around a moment, and whom a call then goes to (`GET /v1/numbers/…`),
and the call log by the number called: what support reads when a client asks about a call."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

import pytest
import redis
from starlette.testclient import TestClient

from tests.conftest import START, Clock
from tests.test_calls import call, post_call, visit

TOKEN = {"Authorization": "Bearer test-report-token-0001"}


def holders(client: TestClient, number: str, at: float | str | None = None, **headers: str) -> Any:
    return client.get(f"/v1/numbers/pooltest/{quote(number, safe='')}", params={} if at is None else {"at": at},
                      headers=headers or TOKEN)


def snapshot(store: redis.Redis) -> dict[bytes, bytes]:
    return {key: store.dump(key) for key in store.scan_iter("sw:*")}


def test_support_sees_who_held_a_number_around_a_call_and_whom_a_call_then_goes_to(
        pool_client: TestClient, clock: Clock, store: redis.Redis) -> None:
    """A client asks why a call went to the wrong campaign: the number changed hands a second
    before it. The view shows both holds, how each visitor came, and whom a call at any moment
    goes to, from the code that credits calls."""
    number = visit(pool_client, "first-holder-00000001", url="/?utm_source=google&utm_campaign=win")["phone"]["number"]
    for n in (2, 3):
        visit(pool_client, f"other-visitor-000000{n}")
    clock.advance(61)  # the first hold (60 s) is over, and the number goes to the next visitor
    assert visit(pool_client, "next-holder-000000001", url="/?utm_source=bing&utm_campaign=spring")["phone"][
        "number"] == number
    first = post_call(pool_client, call("first", number, START + 30)).json()
    late = post_call(pool_client, call("late", number, START + 62, caller="+79035550001")).json()
    post_call(pool_client, call("elsewhere", "+74951900002" if number != "+74951900002" else "+74951900003",
                                START + 62, caller="+79035550002"))
    kept = snapshot(store)

    view = holders(pool_client, number, START + 60.5)
    assert view.status_code == 200, view.text
    body = view.json()
    assert (body["number"], body["at"], body["time_zone"]) == (number, int((START + 60.5) * 1000), "UTC")
    assert [(hold["visitor"], hold["began"], hold["until"], hold["over"], hold["visit"]["campaign"])
            for hold in body["holds"]] == [
        ("first-holder-00000001", START * 1000, (START + 60) * 1000, True, "win"),
        ("next-holder-000000001", (START + 61) * 1000, (START + 121) * 1000, False, "spring")]
    assert body["holds"][0]["pool"] == "small" and body["holds"][0]["page"] == "/"
    # Between the holds: nobody's, and how near each hold the moment is.
    assert body["a_call_then"] == {"credited": False, "kind": "lease", "pool": "small", "visitor": None, "page": None,
                                   "visit": None, "reason": "no_holder",
                                   "holds_near": {"last_ended": (START + 60) * 1000, "next_began": (START + 61) * 1000}}
    # Within each hold: its visitor, with the visit a call then would carry.
    for at, answer in ((START + 30, first), (START + 62, late)):
        then = holders(pool_client, number, at).json()["a_call_then"]
        assert (then["credited"], then["visitor"], then["visit"]) == (True, answer["visitor"], answer["visit"])
    # The calls to it those days, by the call log's new filter: not the call to another number.
    calls = pool_client.get(body["calls"], headers=TOKEN).json()["entries"]
    assert [(entry["call_id"], entry["visitor"]) for entry in calls] == [
        ("late", "next-holder-000000001"), ("first", "first-holder-00000001")]
    # Written as the client or the PBX writes it; at a time with its zone; now, by default.
    local = f"8 ({number[2:5]}) {number[5:8]}-{number[8:10]}-{number[10:]}"
    assert holders(pool_client, local, "2026-11-18T14:07:10+03:00").json()["a_call_then"]["visitor"] == \
        "first-holder-00000001"  # START + 30, in Moscow
    assert holders(pool_client, number).json()["a_call_then"]["visitor"] == "next-holder-000000001"
    for slashed in (f"{number[2:5]}/{number[5:]}", quote(f"{number[2:5]}/{number[5:]}", safe="")):
        assert pool_client.get(f"/v1/numbers/pooltest/{slashed}", headers=TOKEN).json()["number"] == number
    assert snapshot(store) == kept  # it only reads


def test_a_number_nobody_leases_says_what_it_is_and_has_no_holds(pool_client: TestClient) -> None:
    post_call(pool_client, call("mobile", "+74959999999", START))
    for number, kind, reason in (("+7 800 555-35-36", "static", "static_number"),
                                 ("+7 495 190-00-00", "overflow", "overflow_number"),
                                 ("+7 495 999-99-99", "unknown", "unknown_number")):
        body = holders(pool_client, number, START).json()
        assert (body["a_call_then"]["kind"], body["a_call_then"]["reason"], body["holds"]) == (kind, reason, []), number
    unknown = holders(pool_client, "+7 495 999-99-99", START).json()
    assert unknown["number"] == "…9999"  # as a call to it is kept
    assert [entry["call_id"] for entry in pool_client.get(unknown["calls"], headers=TOKEN).json()["entries"]] == [
        "mobile"]


def test_the_view_of_a_number_that_changed_hands_many_times_shows_those_nearest_the_moment(
        pool_client: TestClient, clock: Clock) -> None:
    """A busy number's history holds hundreds of holds: the view lists five each side."""
    for n in range(14):
        for taker in range(3):  # the pool's three numbers, one each
            visit(pool_client, f"holder-{n:02d}-{taker}-000000000")
        clock.advance(61)
    number = "+74951900001"
    body = holders(pool_client, number, START + 7 * 61 + 1).json()
    began = [hold["began"] for hold in body["holds"]]
    assert len(began) == 10 and began == sorted(began)
    assert began[4] == (START + 7 * 61) * 1000 and body["a_call_then"]["visitor"] == body["holds"][4]["visitor"]


@pytest.mark.parametrize(("number", "params", "status", "code"), [
    ("not-a-number", {}, 400, "invalid_number"),
    ("+74951900001", {"at": "yesterday"}, 400, "invalid_filter"),
    ("+74951900001", {"at": "2026-11-18 14:05"}, 400, "invalid_filter"),  # the site has no time zone to read it in
    ("+74951900001", {"at": "1795000000000"}, 400, "invalid_filter"),  # milliseconds
    ("+74951900001", {"at": "2026-11-18"}, 400, "invalid_filter"),  # a day, not a moment
    ("+74951900001", {"at": "2026-11-18T14:07:10 03:00"}, 400, "invalid_filter"),  # a + sent unescaped
    ("+74951900001", {"when": "1795000000"}, 400, "invalid_filter"),
    ("9" * 5000, {}, 400, "invalid_number"),
])
def test_a_view_asked_wrong_gets_a_clear_400(pool_client: TestClient, number: str, params: dict[str, str],
                                             status: int, code: str) -> None:
    answer = pool_client.get(f"/v1/numbers/pooltest/{number}", params=params, headers=TOKEN)
    assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    assert len(answer.text) < 400  # nothing asked is echoed whole
    assert ("write %2B" in answer.text) == params.get("at", "").endswith(" 03:00")


def test_the_view_needs_a_token_and_a_known_site(pool_client: TestClient) -> None:
    assert holders(pool_client, "+74951900001", Authorization="Bearer wrong").status_code == 401
    assert pool_client.get("/v1/numbers/pooltest/+74951900001").status_code == 401
    assert pool_client.get("/v1/numbers/nosuch/+74951900001", headers=TOKEN).status_code == 404


def test_the_call_log_lists_the_calls_to_a_number_however_it_is_written(pool_client: TestClient, clock: Clock) -> None:
    number = visit(pool_client, "caller-visitor-000001")["phone"]["number"]
    post_call(pool_client, call("ours", number, clock.now))
    post_call(pool_client, call("mobile", "+79261112233", clock.now, caller="+79035550003"))
    for written, ids in ((number, ["ours"]), (number[1:], ["ours"]), (f"8{number[2:]}", ["ours"]),
                         ("8 926 111-22-33", ["mobile"]), ("+74951900009", [])):
        entries = pool_client.get("/v1/calls/pooltest", params={"number": written}, headers=TOKEN).json()["entries"]
        assert [entry["call_id"] for entry in entries] == ids, written
    refused = pool_client.get("/v1/calls/pooltest", params={"number": "twelve"}, headers=TOKEN)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_filter"


def test_the_calls_tab_shows_who_held_the_number_around_one_call_and_lists_the_calls_to_a_number(
        pool_client: TestClient, clock: Clock) -> None:
    number = visit(pool_client, "first-holder-00000001", url="/?utm_source=google&utm_campaign=win")["phone"]["number"]
    for n in (2, 3):
        visit(pool_client, f"other-visitor-000000{n}")
    clock.advance(61)
    visit(pool_client, "next-holder-000000001", url="/?utm_source=bing&utm_campaign=spring")
    post_call(pool_client, call("late", number, START + 62))
    post_call(pool_client, call("mobile", "+79261112233", START + 62, caller="+79035550003"))
    for language, title in (("en", "Who held"), ("ru", "У кого был номер")):
        page = pool_client.get("/dashboard/pooltest/calls", params={"call_id": "late"},
                               headers={**TOKEN, "accept-language": language}).text
        holds = page.split(title, 1)[1].split("</table>", 1)[0]
        rows = holds.split("<tr")[2:]  # after the heading's
        assert [("first-holder-00000001" in row, "next-holder-000000001" in row, 'class="credited"' in row)
                for row in rows] == [(True, False, False), (False, True, True)], language
        assert "win" in rows[0] and "spring" in rows[1]
        assert rows[1].count("<strong>") == 1 and "<strong>" not in rows[0]  # said in words, not by colour alone
    listed = pool_client.get("/dashboard/pooltest/calls", headers=TOKEN).text
    assert f'href="?number={quote(number)}"' in listed and "…2233</td>" in listed  # none of the site's: no link
    by_number = pool_client.get(f"/dashboard/pooltest/calls?number={quote(number)}", headers=TOKEN).text
    assert 'data-call="late"' in by_number and 'data-call="mobile"' not in by_number
    assert f'name="number" value="{number}"' in by_number
    everyone = pool_client.get("/dashboard/pooltest/calls", params={"call_id": "mobile"}, headers=TOKEN).text
    assert "Who held" not in everyone
    nowhere = pool_client.get("/dashboard/pooltest/calls", params={"call_id": "no-such-call"}, headers=TOKEN).text
    assert "No call with this id in the log" in nowhere and "Who held" not in nowhere
    # A caller's number typed as the number called; a number mistyped, said in the reader's words.
    callers = pool_client.get("/dashboard/pooltest/calls", params={"number": "+7 916 123-45-67"}, headers=TOKEN).text
    assert "A caller's number goes in the field of the caller's last digits." in callers
    for language, said in (("en", "number must be a phone number, as the telephony or a client writes it: 'twelve'"),
                           ("ru", "укажите номер телефона, как его пишут АТС или клиент: 'twelve'")):
        mistyped = pool_client.get("/dashboard/pooltest/calls", params={"number": "twelve"},
                                   headers={**TOKEN, "accept-language": language})
        assert mistyped.status_code == 400 and said in html.unescape(mistyped.text), language


def test_the_hold_of_a_visitor_erased_since_names_nobody(pool_client: TestClient, clock: Clock) -> None:
    number = visit(pool_client, "erased-holder-0000001", url="/?utm_source=google&utm_campaign=win")["phone"]["number"]
    post_call(pool_client, call("theirs", number, START + 10))
    assert pool_client.delete("/v1/visitors/pooltest/erased-holder-0000001", headers=TOKEN).status_code == 200
    body = holders(pool_client, number, START + 10).json()
    assert [(hold["visitor"], hold["visit"]) for hold in body["holds"]] == [(None, None)]
    assert (body["a_call_then"]["visitor"], body["a_call_then"]["reason"]) == (None, "erased_holder")
    for language, erased in (("en", "(erased)"), ("ru", "(удалён)")):
        page = pool_client.get("/dashboard/pooltest/calls", params={"call_id": "theirs"},
                               headers={**TOKEN, "accept-language": language}).text
        assert f"<td>{erased}</td>" in page.split('id="holds"')[1] and 'class="credited"' not in page, language
