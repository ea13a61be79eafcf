"""What each telephony vendor posts when a call ends, read into a `Call` and credited.

    POST /v1/calls/twilio?site=S                    Twilio's status callback, X-Twilio-Signature
    POST /v1/calls/mango/S/events/summary           Mango Office's call summary, `sign` = sha256(key + json + salt)
    POST /v1/calls/zadarma?site=S                   Zadarma's (and classic Novofon's) NOTIFY_END, `Signature`
    GET  /v1/calls/zadarma?zd_echo=X                Zadarma's check of the address: X back
    POST /v1/calls/uis?site=S&token=T               UIS / CoMagic's notification (a template the user fills in)
    POST /v1/calls/telphin?site=S&token=T           Telphin's hangup event

Each checks its vendor's signature as the vendor computes it, or for the two that sign
nothing (UIS, Telphin) a token in the address, in constant time, before reading anything.
A credential sent as it is (UIS's and Telphin's token, Mango's key with its `sign`) can be
guessed: different wrong ones are counted per client network and site, and past the limit
refused (`_guessed`). A signature (Twilio's, Zadarma's, /v1/calls's) is an HMAC of the
request under a secret the vendor made or the rules hold to 16 characters: nobody guesses one,
and counting them would only let a stranger's wrong posts from the vendor's network hold up
the right ones.
Events other than the end of an incoming call are answered `{"ignored": ...}`: a vendor
that posts every event of a call gets a 200 for each, and only the last one counts.
docs/CALLS.md says where each vendor's sources are, and what is inferred.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
from collections.abc import Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from service.errors import BadRequest, Unauthorized
from service.front import bodies
from service.front.auth import counted_guess
from service.front.responses import JSON
from service.integrations.calls import (
    MAX_BODY,
    MAX_TALK,
    SECONDS,
    Call,
    called_number,
    configured,
    ended_as,
    home_region,
    kept_caller,
    local_time,
    phone_text,
    reply,
    site_of,
    status_of,
    unix_ms,
    whole_seconds,
)
from service.rules.engine import Site
from service.runtime import Runtime

TWILIO_FINAL = frozenset({"completed", "answered", "busy", "no-answer", "failed", "canceled"})
TWIML_END = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
# What Zadarma signs of each event (its SDK's getSignatureString): the fields, joined.
ZADARMA_SIGNED = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}
MAX_FIELDS = 100  # of a form: a vendor sends a few dozen


async def twilio_endpoint(request: Request) -> Response:
    runtime, site = site_of(request)
    token = configured(site, site.calls.twilio_auth_token, "twilio_auth_token")
    params = await _form_of(request)
    if not twilio_valid(token, _signed_url(runtime, request), params, request.headers.get("x-twilio-signature", "")):
        raise Unauthorized("invalid_signature", "X-Twilio-Signature is missing or wrong")
    values = dict(params)
    call_id = _text(values, "CallSid")
    # Twilio posts the callbacks of the calls it places too: <Dial>'s legs to a phone
    # (`outbound-dial`, with the ParentCallSid of the inbound call) and calls of its API.
    if values.get("Direction", "inbound") != "inbound" or values.get("ParentCallSid"):
        return not_incoming(call_id)
    # The inbound call is `completed` once its TwiML ran, though nobody took its <Dial>, and its
    # CallDuration counts the ringing and the menu: <Dial>'s action callback says how the Dial
    # ended and how long the parties talked.
    dialled = "DialCallStatus" in values
    status = values["DialCallStatus"] if dialled else values.get("CallStatus", "")
    if status not in TWILIO_FINAL:  # ringing, in-progress...: the call is not over yet
        return JSON({"call_id": call_id, "ignored": status or "no status"})
    duration = "DialCallDuration" if dialled else "CallDuration"
    talk = whole_seconds(values.get(duration, "0"), duration)
    ended = _twilio_time(values.get("Timestamp")) or runtime.now_ms()
    answer = await _credit(runtime, site, call_id, values.get("To"), "To", values.get("From"), ended - talk * 1000,
                           talk, status)
    # Twilio goes on with the TwiML an action answers: an empty one ends the call, as the end of
    # the caller's TwiML would (and JSON would be an "application error" to a caller on the line).
    return Response(TWIML_END, media_type="text/xml") if dialled else answer


def twilio_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's algorithm: HMAC-SHA1 of the URL and the sorted parameters, base64."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_valid(token: str, url: str, params: list[tuple[str, str]], signature: str) -> bool:
    # Twilio signs the URL as it dialled it, with or without the default port: try both.
    candidates = {url, _without_port(url), _with_port(url)}
    return any(hmac.compare_digest(twilio_signature(token, u, params).encode(), signature.encode())
               for u in candidates)


async def mango_endpoint(request: Request) -> JSON:
    """Mango Office posts each event to the address set in its account plus `/events/<kind>`;
    the summary ends a call."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    key = configured(site, site.calls.mango_api_key, "mango_api_key")
    salt = site.calls.mango_api_salt or ""
    form = dict(await _form_of(request))
    data = form.get("json", "")
    known = hmac.compare_digest(form.get("vpbx_api_key", "").encode(), key.encode())
    signed = hmac.compare_digest(form.get("sign", "").lower().encode(), mango_sign(key, data, salt).encode())
    # What a guesser varies: the key, or with the right key the signature (that is, the salt).
    if not await _guessed(runtime, site, request, known and signed,
                          form.get("sign", "") if known else form.get("vpbx_api_key", "")):
        raise Unauthorized("invalid_signature", "vpbx_api_key or sign is missing or wrong")
    event = request.path_params["event"]
    if event != "summary":
        return JSON({"ignored": event})
    summary = bodies.json_object(data.encode())
    entry = _text(summary, "entry_id")
    if _count(summary, "call_direction") != 1:  # internal (0) or outgoing (2): no visitor dialled a number
        return not_incoming(entry)
    answered_at, ended = _count(summary, "talk_time"), _count(summary, "end_time")
    # Mango's own examples mark a call that ended in the menu `entry_result: 1`: no talk, no answer.
    answered = _count(summary, "entry_result") == 1 and answered_at > 0
    talk = max(0, ended - answered_at) if answered else 0
    caller = summary.get("from")
    return await _credit(runtime, site, entry, summary.get("line_number"), "line_number",
                         caller.get("number") if isinstance(caller, dict) else None,
                         unix_ms(_count(summary, "create_time")), talk, "completed" if answered else "missed")


def mango_sign(key: str, json: str, salt: str) -> str:
    """Mango Office's `sign`: SHA-256 of the key, the `json` field as sent and the salt, hex."""
    return hashlib.sha256(f"{key}{json}{salt}".encode()).hexdigest()


async def zadarma_endpoint(request: Request) -> Response:
    """Zadarma (and classic Novofon, its twin) posts each event of a call as a form; NOTIFY_END
    ends an incoming one. Saving the address in its account first sends `?zd_echo=X`."""
    if request.method == "GET":
        echo = request.query_params.get("zd_echo", "")
        if not echo or len(echo) > 128:
            raise BadRequest("invalid_call", "zd_echo is required, at most 128 characters")
        return PlainTextResponse(echo, headers={"x-content-type-options": "nosniff"})
    runtime, site = site_of(request)
    secret = configured(site, site.calls.zadarma_secret, "zadarma_secret")
    form = dict(await _form_of(request))
    event = form.get("event", "")
    signed = ZADARMA_SIGNED.get(event)
    if signed is None:
        raise BadRequest("invalid_call", f"unknown event {event[:40]!r}")
    signed_text = "".join(form.get(name, "") for name in signed)
    if not hmac.compare_digest(request.headers.get("signature", "").encode(),
                               zadarma_signature(secret, signed_text).encode()):
        raise Unauthorized("invalid_signature", "Signature is missing or wrong")
    if event != "NOTIFY_END":
        return JSON({"ignored": event})
    # Zadarma signs the caller, the number and the start, not pbx_call_id: a call named by its
    # pbx_call_id would let one captured signature forge a call per made-up id. Named by what
    # is signed, a replay is a duplicate. Keyed, as the caller's number is part of it.
    call_id = "zadarma-" + hmac.new(runtime.caller_key, signed_text.encode(), hashlib.sha256).hexdigest()[:24]
    disposition = form.get("disposition", "")
    status = ended_as(disposition)
    talk = whole_seconds(form.get("duration", "0") or "0", "duration") if status == "completed" else 0
    start = local_time(_text(form, "call_start"), "call_start", site.calls.time_zone)
    return await _credit(runtime, site, call_id, form.get("called_did"), "called_did", form.get("caller_id"), start,
                         talk, status)


def zadarma_signature(secret: str, signed: str) -> str:
    """Zadarma's `Signature`: base64 of the hex text of HMAC-SHA1 (PHP's hash_hmac without its
    binary flag), not of the raw digest."""
    return base64.b64encode(hmac.new(secret.encode(), signed.encode(), hashlib.sha1).hexdigest().encode()).decode()


async def uis_endpoint(request: Request) -> JSON:
    """UIS / CoMagic post what the user's notification template says: the fields below, as JSON,
    a form or the address's query."""
    runtime, site = site_of(request)
    await _token(runtime, request, site, site.calls.uis_token, "uis_token")
    fields = await _fields(request)
    call_id = _text(fields, "call_session_id")
    if str(fields.get("direction", "in")).lower() in ("out", "outgoing"):
        return not_incoming(call_id)
    talk = _count(fields, "talk_time_duration", 0)
    start = fields.get("start_time", fields.get("notification_time"))
    if isinstance(start, str) and not SECONDS.fullmatch(start.strip()):  # a time as UIS writes it, maybe zoneless
        start_ms = local_time(start, "start_time", site.calls.time_zone)
    elif isinstance(start, int | float | str) and not isinstance(start, bool):  # or unix seconds
        start_ms = unix_ms(float(start))
    else:
        raise BadRequest("invalid_call", "start_time (or notification_time) is required")
    return await _credit(runtime, site, call_id, fields.get("virtual_phone_number"), "virtual_phone_number",
                         fields.get("contact_phone_number"), start_ms, talk, "completed" if talk else "missed")


async def telphin_endpoint(request: Request) -> JSON:
    """Telphin posts (or gets) each event of an extension it was asked for; `hangup` ends a call."""
    runtime, site = site_of(request)
    await _token(runtime, request, site, site.calls.telphin_token, "telphin_token")
    fields = await _fields(request)
    event, call_id = fields.get("EventType", ""), _text(fields, "CallID")
    if event != "hangup":
        return JSON({"call_id": call_id, "ignored": event})
    if str(fields.get("CallFlow", "in")).lower() != "in":
        return not_incoming(call_id)
    duration = _count(fields, "Duration", 0)
    status = ended_as(str(fields.get("CallStatus", "")))
    ended = _count(fields, "EventTime") // 1_000_000  # microseconds
    return await _credit(runtime, site, call_id, fields.get("CalledDID") or fields.get("CalledNumber"), "CalledDID",
                         fields.get("CallerIDNum"), unix_ms(ended - duration), duration if status == "completed" else 0,
                         status)


def not_incoming(call_id: str) -> JSON:
    """The answer to a call no visitor dialled (outgoing, internal, a leg the PBX placed to a
    phone): a 200, so that the vendor does not retry it, and nothing recorded."""
    return JSON({"call_id": call_id, "ignored": "not an incoming call"})


async def _credit(runtime: Runtime, site: Site, call_id: str, called: Any, called_name: str, caller: Any,
                  start_ms: int, talk: int, status: str) -> JSON:
    if len(call_id) > 128:
        raise BadRequest("invalid_call", "the call id is longer than 128 characters")
    if not 0 <= talk < MAX_TALK:
        raise BadRequest("invalid_call", f"the talk time must be under {MAX_TALK} seconds")
    called, caller = phone_text(called), phone_text(caller)
    if not called or not called.strip():
        raise BadRequest("invalid_call", f"{called_name} is required")
    return await reply(runtime, site, Call(call_id, called_number(site, called, called_name),
                                           *kept_caller(runtime.caller_key, caller, home_region(site)), start_ms, talk,
                                           status_of(status)))


async def _token(runtime: Runtime, request: Request, site: Site, token: str | None, name: str) -> None:
    expected = configured(site, token, name)
    given = request.query_params.get("token", "")
    if not await _guessed(runtime, site, request, hmac.compare_digest(given.encode(), expected.encode()), given):
        raise Unauthorized("invalid_token", "the token in the address is missing or wrong")


async def _guessed(runtime: Runtime, site: Site, request: Request, right: bool, sent: str) -> bool:
    """`right`, unless the client's network guessed the site's telephony credentials wrong too
    often: 429 until the window ends (`SWAPLINE_SIGNIN_ATTEMPTS` different wrong ones per 15
    minutes). The sign-in limiter, guesses at a secret being what it bounds, but a count of its
    own: a vendor posting with a token gone stale and the site's analysts signing in from one
    network (a marketer trying the address with curl from the office) lock each other out of
    nothing. One count for all the site's vendors: a guesser gets no more tries for aiming at
    another one. A wrong credential `sent` again counts once: the vendor's network is every one of
    its customers', and an account that posts another site's address with its own token (a URL
    pasted into the wrong account) must not hold up the site's own calls from there."""
    return await counted_guess(runtime, request, f"{site.id}:calls", right, "wrong call credentials", sent)


async def _fields(request: Request) -> Mapping[str, Any]:
    """A notification's fields: its query, and its body as JSON or as a form."""
    fields: dict[str, Any] = {name: value for name, value in request.query_params.items()
                              if name not in ("site", "token")}
    raw = await bodies.read(request, MAX_BODY)
    if raw.lstrip()[:1] == b"{":
        fields.update(bodies.json_object(raw))
    elif raw:
        fields.update(_form(request, raw))
    return fields


async def _form_of(request: Request) -> list[tuple[str, str]]:
    return _form(request, await bodies.read(request, MAX_BODY))


def _form(request: Request, raw: bytes) -> list[tuple[str, str]]:
    """A vendor's form, URL-encoded or multipart (Zadarma posts either), as (name, value) pairs."""
    kind = request.headers.get("content-type", "")
    multipart = kind.partition(";")[0].strip().lower() == "multipart/form-data"
    try:
        pairs = _multipart(kind, raw) if multipart else parse_qsl(
            raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:  # parse_qsl's, past max_num_fields
        pairs = None
    if pairs is None or len(pairs) > MAX_FIELDS:
        raise BadRequest("invalid_call", f"a form of more than {MAX_FIELDS} fields")
    return pairs


def _multipart(kind: str, raw: bytes) -> list[tuple[str, str]]:
    """A multipart form's fields, read by the standard library's MIME parser (the body is a few
    kilobytes at most: `MAX_BODY`); a part without a field name, or that is a file, is no field."""
    head = f"Content-Type: {kind}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise BadRequest("invalid_call", "a multipart/form-data body without its boundary")
    pairs = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)
            pairs.append((name, payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""))
    return pairs


def _text(data: Mapping[str, Any], name: str) -> str:
    """A required id: vendors send some as numbers."""
    value = data.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("invalid_call", f"{name} is required")
    return value.strip()


def _count(data: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """A whole number a vendor sends as a number or as digits (unix times, seconds, codes)."""
    value = data.get(name, default)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**19:
        raise BadRequest("invalid_call", f"{name} must be a whole number")
    return value


def _signed_url(runtime: Runtime, request: Request) -> str:
    """The URL Twilio called: behind a proxy only SWAPLINE_PUBLIC_URL knows it."""
    if runtime.settings.public_url:
        return f"{runtime.settings.public_url}{request.url.path}?{request.url.query}"
    return str(request.url)


def _twilio_time(value: str | None) -> int | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return unix_ms(moment.timestamp())


def _without_port(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.port else url


def _with_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port or not parts.hostname:
        return url
    port = 443 if parts.scheme == "https" else 80
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))
