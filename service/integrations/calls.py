"""Calls: how a finished call is credited, and `POST /v1/calls?site=` (Swapline's signed JSON).

Each call is credited to the visitor whose hold window on the called number contains the
call's start, or, from a caller who called that number before (`calls.unique_within`), to
that call's visitor: a customer calling back; and recorded once per call id: a telephony
system that retries gets the same answer again. Caller numbers are kept only as a keyed hash
and their last four digits, and called numbers that are none of the site's by their last four
digits (`kept_number`). What each vendor posts (Twilio, Mango Office, Zadarma, UIS, Telphin) is
read into a `Call` by `service.integrations.telephony`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

import orjson
from starlette.requests import Request

from service.errors import BadRequest, Conflict, HTTPError, Unauthorized
from service.front import bodies
from service.front.responses import JSON
from service.observability import CALLS
from service.rules import phones
from service.rules.engine import Site
from service.runtime import Runtime
from service.tracking import visits
from service.tracking.pools import slack_ms
from service.tracking.store import STORE_ERRORS, Script

MAX_BODY = 16_384
MAX_TALK = 86_400  # seconds: no call lasts a day
EARLIEST, LATEST = 946_684_800, 4_102_444_800  # unix seconds of 2000-01-01 and 2100-01-01
AHEAD_MS = 15 * 60_000  # how far a call's start may be ahead of the service's clock: a PBX's drift
CLOCKS_APART_MS = 3_000  # how far a call's end may seem ahead of it, of whole seconds and two clocks' NTP
log = logging.getLogger("swapline")
CALL, RECALL = Script.named("call"), Script.named("recall")
Credential = TypeVar("Credential", str, bytes)
# A call's status, as Twilio and PBXs write them (`status_of`): one nobody answered is a
# `missed_call`, not a `call`, and never a target call whatever its talk time says.
ANSWERED = ("completed", "answered")
MISSED = ("missed", "busy", "no-answer", "failed", "canceled", "cancelled")
# The same, in the other words PBXs write: Asterisk's dispositions and DIALSTATUS, Zadarma's and
# Telphin's dispositions. One status a call, whoever reported it.
SYNONYMS = {"answered": "completed", "answer": "completed", "noanswer": "no-answer", "cancelled": "canceled",
            "cancel": "canceled", "congestion": "failed", "chanunavail": "failed", "dontcall": "failed",
            "torture": "failed", "invalidargs": "failed"}
# A number as PBXs write it beside the digits: a URI (`sip:+74951200001@pbx.example`,
# `tel:+7…;ext=1`), and a note after it (`+79165551234 (моб.)`).
_URI = re.compile(r"(?:sips?|tel):([^@;]*)", re.IGNORECASE)
_NOTE = re.compile(r"\s*\([^()0-9]*\)$")
SECONDS = re.compile(r"[0-9]{1,20}(\.[0-9]{1,9})?")  # unix seconds as text, whole or not
SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
TRUNK_PREFIX = 3  # digits a PBX may write before a national number (0, 9 8, 7): more are another number, or two
# Why a call to a number of each kind is credited to nobody, when nobody held it (or called it before).
UNCREDITED = {"lease": "no_holder", "static": "static_number", "overflow": "overflow_number", "page": "page_number"}
# A moment as Excel in Russian writes it: 22.11.2026 14:05, 4.12.2026 9:05:30
_RUSSIAN_DAY = re.compile(r"([0-3]?[0-9])\.([01]?[0-9])\.([0-9]{4})[ T]([0-2]?[0-9])(:[0-5][0-9].*)")
_SPACED_ZONE = re.compile(r".*[0-9]:[0-5][0-9] [01][0-9]:?[0-5][0-9]")  # +03:00 whose + a query string made a space
_NUMBER = re.compile(r"\d[-\d\s().]{4,}\d")  # what may be a phone number in a message: digits and separators
_HIDDEN = re.compile(r"\d(?=(?:\D*\d){4})")  # a number's digits but its last four
_VALUES = re.compile(r"[0-9]+|'[^']*'|\"[^\"]*\"")  # what a message names: numbers, quoted values


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    called: str  # E.164
    caller_hash: str  # keyed hash of the caller's number: recognises repeat callers; "" when hidden
    caller_last: str | None  # the last four digits, the only readable part kept
    start_ms: int
    talk: int  # seconds
    status: str


async def calls_endpoint(request: Request) -> JSON:
    runtime, site = site_of(request)
    raw = await bodies.read(request, MAX_BODY)
    expected = signature(configured(site, site.calls.secret, "secret"), raw)
    given = request.headers.get("x-swapline-signature", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("invalid_signature", _wrong(given))
    return await reply(runtime, site, parse_call(bodies.json_object(raw), runtime.caller_key, site))


def log_refused(request: Request, exc: HTTPError) -> None:
    """A line in the service's log for a call refused, for whoever sets up the PBX: its site, the
    address and why, with a number's digits hidden but its last four."""
    runtime: Runtime = request.app.state.runtime
    site = request.path_params.get("site") or request.query_params.get("site", "")
    # Each site's own lines: one client's PBX posting wrong calls hides no other's. Sites not in
    # the rules share theirs, so that made-up ones cannot grow the count. One line a minute for
    # each kind of refusal: its code, and its message before the values it names.
    known = site if site in runtime.rules.sites else ""
    if known:
        CALLS.labels(known, "refused").inc()
    kind = _VALUES.sub("", exc.message.partition(":")[0])[:80]
    runtime.now_and_then(f"{known}:{exc.code}:{kind}", "call refused (site %r, %s): %s %s: %s", site[:40],
                         request.url.path[:80], exc.status, exc.code,
                         _NUMBER.sub(lambda number: _HIDDEN.sub("•", number[0]), exc.message))


def _wrong(given: str) -> str:
    """What is wrong with a signature, as far as its shape tells: nothing of the secret."""
    if not given:
        return "X-Swapline-Signature is missing"
    if not SIGNATURE.fullmatch(given):
        return "X-Swapline-Signature must be sha256= and 64 lower-case hex digits"
    return ("X-Swapline-Signature is not the HMAC-SHA256 of this body with the site's calls.secret: "
            "sign the body's bytes as sent (curl --data-binary, not --data, which drops line breaks)")


def configured(site: Site, credential: Credential | None, name: str) -> Credential:
    """The site's `calls.NAME`, else the vendor's webhook is refused."""
    if credential is None:
        raise Unauthorized("calls_not_configured",
                           f"site {site.id!r} has no calls.{name} (or the environment variable it names is not set)")
    return credential


def signature(secret: bytes, body: bytes) -> str:
    """`X-Swapline-Signature` of a JSON webhook's raw body: `sha256=` and its hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse_call(data: dict[str, Any], caller_key: bytes, site: Site) -> Call:
    """The call a JSON webhook to `site` describes; its numbers may be written as people in the
    site's region write them, without a country code, and its start without a zone, in its
    `calls.time_zone`."""
    call_id = _required(data, "call_id")
    if len(call_id) > 128:
        raise BadRequest("invalid_call", "call_id is longer than 128 characters")
    start_ms = moment(data.get("start"), "start", site)
    # A dialplan's empty variable: ${ANSWEREDTIME} of a missed call is no talk; ${DIALSTATUS} of a
    # caller who hung up before the dial is a call answered only if it was talked on.
    talk = whole_seconds(data.get("talk_seconds") or 0, "talk_seconds")
    status = data.get("status", "completed")
    if status == "":
        status = "completed" if talk else "missed"
    if not isinstance(status, str) or status_of(status) not in (*ANSWERED, *MISSED):
        missed = dict.fromkeys((*MISSED, *(word for word, said in SYNONYMS.items() if said in MISSED)))
        raise BadRequest("invalid_call", f"status must be {' or '.join(ANSWERED)} for an answered call, "
                                         f"or one of {', '.join(missed)} for a call nobody answered")
    called = phone_text(data.get("called"))
    if not called or not called.strip():
        raise BadRequest("invalid_call", "called is required")
    caller = kept_caller(caller_key, phone_text(data.get("caller")), home_region(site))
    return Call(call_id, called_number(site, called, "called"), *caller, start_ms, talk, status_of(status))


def moment(given: Any, name: str, site: Site) -> int:
    """A moment as telephony writes a call's start, in unix milliseconds: unix seconds (as JSON or
    as a CSV writes them), or ISO 8601, in the site's `calls.time_zone` if written without a zone."""
    if isinstance(given, int | float) and not isinstance(given, bool):
        return unix_ms(given, name)
    if isinstance(given, str) and SECONDS.fullmatch(given.strip()):
        return unix_ms(float(given), name)
    if isinstance(given, str):
        return local_time(given, name, site.calls.time_zone)
    raise BadRequest("invalid_call", f"{name} is required: ISO 8601 or unix seconds")


def _duration(ms: int) -> str:
    minutes = ms // 60_000
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def status_of(given: str) -> str:
    """A status in the words `ANSWERED` and `MISSED` use: «NO ANSWER», «no_answer», «NoAnswer»
    are «no-answer», «CANCEL» «canceled», «CONGESTION» «failed» (`SYNONYMS`)."""
    status = "-".join(given[:32].lower().replace("_", " ").replace("-", " ").split())
    return SYNONYMS.get(status.replace("-", ""), status)


def phone_text(value: Any) -> str | None:
    """A phone number as text: some PBXs and JSON templates write it as a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


async def reply(runtime: Runtime, site: Site, call: Call) -> JSON:
    if (ahead := call.start_ms - runtime.now_ms()) > AHEAD_MS:  # a zone written wrong would credit nobody
        raise BadRequest("invalid_call", f"the call starts {_duration(ahead)} from now: "
                                         "are the telephony's clock and time zone right?")
    if (ended := ahead + call.talk * 1000) > CLOCKS_APART_MS:  # no call is heard of before it ends
        runtime.now_and_then(f"{site.id}:clock_ahead", "a call to site %r ends %d s after the service's clock "
                             "says now: the telephony's clock is ahead, and a call may be credited to whoever held "
                             "its number next; set it by NTP (docs/CALLS.md)", site.id, ended // 1000)
    try:
        answer = await credit(runtime, site, call)
    except STORE_ERRORS as exc:  # accepted all the same, once on disk: credited when the store is back
        log.debug("call %s spooled: %s", call.id, exc)
        await runtime.spool.keep({"site": site.id, "call": asdict(call)})
        CALLS.labels(site.id, "spooled").inc()
        return JSON({"call_id": call.id, "spooled": True}, status_code=202)
    if answer["duplicate"] and answer["number"] not in (call.called, kept_number(call.called)):
        # Not a retry: two PBXs, or a PBX and a vendor, whose ids met. Said, not swallowed. (Its
        # start may differ on a retry: Twilio's is the time the callback came, without a Timestamp.)
        raise Conflict("call_id_taken", f"call_id {call.id!r} already names a call to another number "
                                        f"({answer['number']}): give each call an id of its own")
    CALLS.labels(site.id, "duplicate" if answer["duplicate"] else "credited" if answer["credited"]
                 else "not_credited").inc()
    await visits.learn_city_names(runtime.store, runtime.geo)
    return JSON(visits.city_named(answer, runtime.geo, site.language))


async def credit(runtime: Runtime, site: Site, call: Call) -> dict[str, Any]:
    """Whom the call goes to; recorded once, answered the same way on every retry."""
    found = await attribution(runtime, site, call)
    visitor = found["visitor"]
    record = {
        "call_id": call.id,
        "number": found["number"],
        "pool": found["pool"],
        "kind": found["kind"],
        "start": call.start_ms,
        "talk_seconds": call.talk,
        "status": call.status,
        "caller_last_digits": call.caller_last,
        "credited": visitor is not None,
        "visitor": visitor,
        "page": found["page"],
        # Every variant the caller was exposed to, on any page: what the call counts for.
        "experiments": await runtime.ledger.variants(site.id, visitor, site.experiment_ids) if visitor else {},
        "visit": found["visit"],
        "reason": found["reason"],
        "earlier_call": found["earlier_call"],  # for `called_back`: the call whose visitor it went to
        "holds_near": found["holds_near"],  # for `no_holder`: how near a hold the call came
    }
    prefix, missed = calls_prefix(site), status_of(call.status) in MISSED
    # Why the call is no target call, whatever the caller did before (call.lua adds `repeat`).
    not_target = ("not_site_number" if found["kind"] == "unknown" else "missed" if missed
                  else "short" if call.talk < site.calls.qualify_after else "")
    (stored, seen), = await runtime.store.batcher.submit(CALL(
        (prefix + "calls",),
        (call.id, orjson.dumps(record), call.caller_hash, call.start_ms, site.calls.unique_within * 1000,
         0 if missed else call.talk, site.calls.qualify_after, prefix, int(found["kind"] != "unknown"), not_target),
    ))
    answer = {**orjson.loads(stored), "duplicate": bool(seen)}
    if answer["credited"] and not answer["duplicate"]:
        await runtime.ledger.convert(site.id, answer["visitor"], site.experiment_ids, f"call:{call.id}",
                                     _conversions(answer), runtime.now_ms(), site.time_zone)
    # Logged once, a retry's too: it may be the first to get there.
    await runtime.journal.add(site.id, _logged(answer), runtime.now_ms(), site.time_zone)
    return answer


async def attribution(runtime: Runtime, site: Site, call: Call) -> dict[str, Any]:
    """Whom `call` goes to as the store stands, and why: the number as kept, its kind and pool,
    the visitor with their page and visit, or the `reason` it goes to nobody, and for a number
    nobody held, the holds nearest it. Reads only: `credit` records it, and the number view
    (service.integrations.holders) shows it for a moment a client asks about."""
    pool = site.tracking_numbers.get(call.called)
    holder = await runtime.pools.holder(site.id, pool, call.called, call.start_ms) if pool else None
    kind, pool_id = _kind(site, call.called) if pool is None else ("lease", pool.id)
    # A number taken out of a pool, or moved to another of the site's, stays with its holder
    # until their hold ends (the new pool waits: service.tracking.moves).
    if not holder and kind in ("unknown", "lease") and (
            former := await runtime.pools.former_holder(site, call.called, call.start_ms)):
        kind, pool_id, holder = "lease", former[0].id, former[1]
    earlier = await _called_back(runtime, site, call, calls_prefix(site)) if kind == "lease" else None
    if earlier and (holder is None or holder["v"] != earlier["visitor"]):  # the caller's, not the number's
        visitor, page, visit, reason = earlier["visitor"], earlier["page"], earlier["visit"], "called_back"
    elif holder and holder["v"]:
        visitor, page, reason = holder["v"], holder["p"], None
        visit = await _visit(runtime, site, holder, call.start_ms)
    else:  # nobody held it, or a visitor erased since (their lease names nobody: service.front.personal)
        visitor, page, visit = None, None, None
        reason = "erased_holder" if holder else UNCREDITED.get(kind, "unknown_number")
    near = await runtime.pools.nearest(site.id, pool, call.called, call.start_ms) if reason == "no_holder" and pool \
        else None
    return {"number": call.called if kind != "unknown" else kept_number(call.called), "pool": pool_id, "kind": kind,
            "visitor": visitor, "page": page, "visit": visit, "reason": reason,
            "earlier_call": earlier["call_id"] if earlier and reason == "called_back" else None, "holds_near": near}


def calls_prefix(site: Site) -> str:
    """Where the site's call records and callers' histories are kept (one hash tag)."""
    return f"sw:{{{site.id}:calls}}:"


def _logged(answer: dict[str, Any]) -> dict[str, Any]:
    """A call as the conversion log keeps it (service.tracking.journal)."""
    call = {name: answer.get(name) for name in ("number", "pool", "kind", "talk_seconds", "status", "unique",
                                                "qualified", "not_target", "caller_last_digits", "credited", "reason",
                                                "earlier_call", "holds_near")}
    return {"id": f"call:{answer['call_id']}", "kind": _conversions(answer)[0], "at": answer["start"],
            "visitor": answer["visitor"], "page": answer["page"], "experiments": answer["experiments"],
            "visit": answer["visit"], "call": call}


def _conversions(answer: dict[str, Any]) -> list[str]:
    """What a credited call counts as: a missed call, or an answered one (and a target call)."""
    if status_of(answer["status"]) in MISSED:
        return ["missed_call"]
    return ["call", "qualified_call"] if answer["qualified"] else ["call"]


async def _visit(runtime: Runtime, site: Site, holder: dict[str, Any], start_ms: int) -> dict[str, Any] | None:
    """The caller's visit: how they came (source, campaign, phrase, ad click ids, landing page)
    and the pages they saw before the call (in the second it started, if given to the second)."""
    if not holder.get("w"):
        return None
    return await visits.journey(runtime.store, site.id, holder["v"], holder["w"], start_ms + slack_ms(start_ms))


async def _called_back(runtime: Runtime, site: Site, call: Call, prefix: str) -> dict[str, Any] | None:
    """The caller's latest call to this number within `calls.unique_within`, if it was credited
    (recall.lua): a customer calling back is the visitor who was shown the number, whoever holds
    it now."""
    if not call.caller_hash or not site.calls.unique_within:
        return None
    record, = await runtime.store.batcher.submit(RECALL(
        (prefix + "calls", prefix + "caller:" + call.caller_hash),
        (call.called, call.start_ms, site.calls.unique_within * 1000)))
    return cast(dict[str, Any], orjson.loads(record)) if record else None


def _kind(site: Site, number: str) -> tuple[str, str | None]:
    """What an untracked number is to the site: a static or overflow number, or the page's own."""
    for pool in site.pools:
        if number == pool.static:
            return "static", pool.id
        if number == pool.overflow:
            return "overflow", pool.id
    return ("page", None) if number == site.phone else ("unknown", None)


def site_of(request: Request) -> tuple[Runtime, Site]:
    runtime: Runtime = request.app.state.runtime
    return runtime, runtime.site(request.query_params.get("site"))


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise BadRequest("invalid_call", f"{name} must be a string: quote it (\"{value}\")")
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("invalid_call", f"{name} is required")
    return value.strip()


def phone_number(value: str, home: str | None = None) -> str | None:
    """A called or calling number in E.164, written as people and PBXs write it (`+7 916 555‑12‑34`
    with any dashes, `+7.916.555.12.34`, `84951200001`, a `sip:` or `tel:` URI, Asterisk's
    `74951200001@from-trunk`, a note after it); None for what is no valid number."""
    return phones.e164(_bare(value), home)


def _bare(value: str) -> str:
    """The number itself, out of a URI, a context, a SIP parameter (`;tag=…`), a note."""
    text = value.strip()[:64]
    if uri := _URI.match(text):
        text = uri.group(1)
    return _NOTE.sub("", text.partition("@")[0].partition(";")[0])


def read_number(value: str, name: str, home: str | None = None) -> str:
    number = phone_number(value, home)
    if number is None:
        raise BadRequest("invalid_call", f"{name} is not a valid phone number: {value[:40]!r}")
    return number


def site_number(site: Site, value: str) -> str | None:
    """Which of the site's numbers `value` names: written as `phone_number` reads it, or after a
    PBX's own trunk prefix (`0495…`, `9 8495…`: `TRUNK_PREFIX`), or as a local DID's last seven digits, where
    just one of the site's numbers ends so. A number written with its `+` is only itself."""
    text = _bare(value)
    number = phones.e164(text, home_region(site))
    if number is not None and number in site.endings.get(number[-7:], ()):
        return number
    digits = "".join(filter(str.isdigit, text))
    if text.startswith("+") or len(digits) < 7:
        return None
    named = [number for number in site.endings.get(digits[-7:], ())
             if (digits.endswith(national := phones.formats(number)["digits"]) and len(digits) - len(national)
                 <= TRUNK_PREFIX) or national.endswith(digits)]
    return named[0] if len(named) == 1 else None


def called_number(site: Site, value: str, name: str) -> str:
    """The number a call was made to: one of the site's (`site_number`), else any valid number
    (a manager's mobile: the call is no call to the site)."""
    return site_number(site, value) or read_number(value, name, home_region(site))


def home_region(site: Site) -> str | None:
    """Where the site's numbers are: a number written without its country code is from there."""
    number = site.phone or next(iter(site.tracking_numbers), None)
    return phones.home(number) if number else None


def kept_caller(key: bytes, value: str | None, home: str | None = None) -> tuple[str, str | None]:
    """What is kept of a caller's number: a keyed hash and the last four digits. One caller
    is one hash however the telephony writes the number (`+7…`, `8…`, `7…`: `phone_number`).

    A withheld number is no caller to remember, and keeps nothing: what PBXs write for one is no
    valid number ('anonymous', 'restricted', '', '0000000000', and Twilio's keypad spellings of
    the words: `+266696687` is ANONYMOUS).
    """
    number = phone_number(value or "", home)
    if number is None:
        return "", None
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:32], number[-4:]


def kept_number(number: str) -> str:
    """What is kept of a called number that is none of the site's: a PBX that reports every call
    reports calls to a manager's mobile, or the customer's number as called. As of a caller's
    number, the last four digits only."""
    return "…" + number[-4:]


def ended_as(given: str) -> str:
    """A vendor's or a CDR's status of a call (`status_of`): whatever else it says, nobody answered."""
    status = status_of(given)
    return status if status in (*ANSWERED, *MISSED) else "failed"


def whole_seconds(value: Any, name: str) -> int:
    """A duration as telephony systems and JSON templates write it, under a day: a number, or
    ASCII digits, whole (`45`, `45.0`, `"45"`)."""
    if isinstance(value, str) and SECONDS.fullmatch(value):
        value = float(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_TALK:
        raise BadRequest("invalid_call", f"{name} must be a whole number of seconds below {MAX_TALK}")
    return value


def unix_ms(seconds: float, name: str = "start", written: str = " in unix seconds") -> int:
    """Unix seconds as milliseconds, if they fall in this century (which also refuses
    milliseconds sent as seconds, and numbers no clock can hold)."""
    if not EARLIEST <= seconds < LATEST:  # NaN fails both comparisons
        hint = " (this looks like milliseconds)" if EARLIEST * 1000 <= seconds < LATEST * 1000 else ""
        raise BadRequest("invalid_call", f"{name} must be a moment from 2000 to 2099{written}{hint}")
    return int(seconds * 1000)


def local_time(text: str, name: str, zone: ZoneInfo | None) -> int:
    """ISO 8601 (`2026-11-22T14:05:00+03:00`, or `2026-11-22 14:05:00` as PBXs write it), or a
    day as Russian spreadsheets write it (`22.11.2026 14:05`), in unix milliseconds; a time
    without its zone is in `zone`, the site's `calls.time_zone` (by default its `time_zone`)."""
    text = text.strip()[:64]
    if russian := _RUSSIAN_DAY.fullmatch(text):
        day, month, year, hour, rest = russian.groups()
        text = f"{year}-{int(month):02d}-{int(day):02d} {int(hour):02d}{rest}"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        hint = ": a + in a query string is a space, write %2B" if _SPACED_ZONE.fullmatch(text) else ""
        raise BadRequest("invalid_call", f"{name} must be ISO 8601 or unix seconds{hint}") from None
    if len(text) <= len("2026-11-22"):  # a day, read as its midnight, would credit whoever held the number then
        raise BadRequest("invalid_call", f"{name} must name the time of day, not the day alone")
    if moment.tzinfo is None:
        if zone is None:
            raise BadRequest("invalid_call", f"{name} needs a time zone (2026-11-22T14:05:00+03:00), or the site's "
                                             "time_zone for times written without one")
        moment = moment.replace(tzinfo=zone)
    return unix_ms(moment.timestamp(), name, "")
