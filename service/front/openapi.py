"""`GET /openapi.json`: the public HTTP contract (v1), OpenAPI 3.0.

Written by hand, next to the handlers it describes, and fuzzed with schemathesis in the tests:
every answer must fit it, errors included.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from service import __version__
from service.analytics.logs import FILE_ENTRIES
from service.analytics.sheets import FORMATS
from service.front.responses import JSON

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
NULLABLE_STRING = {"type": "string", "nullable": True}
SITE_PATH = {"name": "site", "in": "path", "required": True, "schema": {"type": "string"}}
SITE_QUERY = {"name": "site", "in": "query", "required": True, "schema": {"type": "string"}}
BEARER: list[dict[str, list[str]]] = [{"reportToken": []}]


def _query(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string"}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": "error", "content": {"application/json": {"schema": ERROR}}}
            for status in statuses}


def _json(description: str, schema: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}}}


PAGE_URL = "the page URL; swapline_preview_city=CITY in its query previews a visitor in that city"
PHONE = {
    "type": "object",
    "nullable": True,
    "required": ["pool", "kind", "number"],
    "properties": {
        "pool": {"type": "string"},
        "kind": {"type": "string", "enum": ["lease", "static", "overflow", "preview"],
                 "description": "preview: the pool's first number, which nobody holds for it"},
        "number": NULLABLE_STRING,
        "international": {"type": "string"},
        "national": {"type": "string"},
        "digits": {"type": "string"},
        "replaces": NULLABLE_STRING,
        "replaces_digits": NULLABLE_STRING,
        "replaces_pattern": {"type": "string", "description": "a JavaScript regular expression (flags gu) for "
                             "the page's own number as pages print it; only where the number shown differs"},
        "hold": {"type": "integer"},
        "heartbeat": {"type": "integer", "description": "milliseconds between the snippet's heartbeats"},
    },
}
DECISION = {
    "type": "object",
    "required": ["site", "vid", "token", "visit", "geo", "phrase", "source", "swaps", "experiments", "phone", "bot",
                 "degraded", "rules_version"],
    "properties": {
        "site": {"type": "string"},
        "vid": {"type": "string"},
        "token": {"type": "string"},
        "visit": {"type": "object", "required": ["id", "new"], "description":
                  "The visit this page view belongs to; the token carries it: send the token with the next page "
                  "view (`visit`)",
                  "properties": {"id": {"type": "string"}, "new": {"type": "boolean"}}},
        "geo": {"type": "object", "properties": {k: NULLABLE_STRING for k in
                                                  ("country", "region", "city", "country_name", "region_name")}},
        "phrase": NULLABLE_STRING,
        "source": {"type": "object"},
        "swaps": {"type": "array", "items": {"type": "object", "required": ["selector", "property", "value"],
                                             "properties": {
            "selector": {"type": "string"}, "text": {"type": "string"},
            "property": {"type": "string", "enum": ["textContent", "src", "srcset", "href", "hidden"]},
            "value": {"oneOf": [{"type": "string"}, {"type": "boolean"}]}}}},
        "experiments": {"type": "object", "additionalProperties": {"type": "string"}},
        "phone": PHONE,
        "bot": {"type": "boolean"},
        "degraded": {"type": "boolean"},
        "preview": {"type": "boolean"},
        "consent": {"type": "boolean", "description": "false: asked with consent=0, nothing was kept"},
        "rules_version": {"type": "string"},
    },
}
EVENT = {
    "type": "object",
    "required": ["type", "token"],
    "properties": {
        "type": {"type": "string", "enum": ["form", "tel_click", "goal", "heartbeat"]},
        "id": {"type": "string", "description": "event id: a retry with the same id counts once"},
        "name": {"type": "string", "description": "the goal's name"},
        "token": {"type": "string", "description": "the decision token"},
    },
}
CALL = {
    "type": "object",
    "required": ["call_id", "called", "start"],
    "properties": {
        "call_id": {"type": "string"},
        "called": {"type": "string"},
        "caller": {"type": "string"},
        "start": {"oneOf": [{"type": "string", "format": "date-time"},
                            {"type": "number", "minimum": 946_684_800, "maximum": 4_102_444_799,
                             "description": "unix seconds, 2000 to 2099"}]},
        "talk_seconds": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 86_399},
                                   {"type": "string", "pattern": "^[0-9]{1,5}$"}]},  # or whole seconds as text
        "status": {"type": "string"},
    },
}
CALL_ANSWER = {
    "type": "object",
    "properties": {
        "call_id": {"type": "string"},
        "duplicate": {"type": "boolean"},
        "credited": {"type": "boolean"},
        "visitor": NULLABLE_STRING,
        "qualified": {"type": "boolean"},
        "not_target": {"enum": ["missed", "short", "repeat", "not_site_number", None], "nullable": True},
        "ignored": {"type": "string"},
    },
}
CALL_RESPONSES = {**_json("whom the call was credited to, or which event was ignored", CALL_ANSWER),
                  **_json("accepted while the store is down: credited later", CALL_ANSWER, 202),
                  **_errors(400, 401, 404, 409, 413, 503)}
GUESSED_CALL_RESPONSES = {**CALL_RESPONSES, **_errors(429)}  # a credential sent as it is: wrong ones are counted


def _form(*fields: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string"} for name in fields}}


def _notification(summary: str, token: str, media: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A vendor that signs nothing: the site's token in the address, the fields in the body
    (POST) or in the query (GET), as the vendor's settings choose."""
    parameters = [SITE_QUERY, _query("token", f"the site's {token}", required=True)]
    return {
        "post": {"summary": summary, "parameters": parameters, "responses": GUESSED_CALL_RESPONSES, "requestBody": {
            "required": True, "content": {media: {"schema": {"type": "object", "properties": fields}}}}},
        "get": {"summary": summary, "responses": GUESSED_CALL_RESPONSES, "parameters": [
            *parameters, *({"name": name, "in": "query", "schema": {"type": "string"}} for name in fields)]},
    }


FILES = {"csv": "CSV file", "xlsx": "Excel workbook"}
# A caller's phone number, in the body where no access log keeps it.
CALLER = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["number"], "properties": {"number": {"type": "string"}}}}}}


def _file(form: str) -> dict[str, Any]:
    """The answer of a download (`service.analytics.sheets`): CSV text or an Excel workbook."""
    schema = {"type": "string", **({"format": "binary"} if form == "xlsx" else {})}
    return {"200": {"description": f"the {FILES[form]}", "content": {FORMATS[form]: {"schema": schema}}}}


def _log(summary: str, kinds: bool = False, form: str | None = None) -> dict[str, Any]:
    whole = f"; unset, the file holds all, up to {FILE_ENTRIES:,}" if form else ""
    filters = [_query(name, about) for name, about in (
        ("from", "first day, YYYY-MM-DD"), ("to", "last day, YYYY-MM-DD"), ("source", "the visit's source"),
        ("campaign", "the visit's campaign"), ("pool", "the call's number pool"), ("qualified", "true or false"),
        ("missed", "true (the calls nobody answered) or false"), ("variant", "experiment:variant"),
        ("limit", f"entries a page, 1 to 1000{whole}"),
        ("cursor", "the last page's next"))]
    if kinds:
        filters.append(_query("kind", "call, missed_call, form, tel_click, goal or alert"))
    else:
        filters += [_query("call_id", "the call's id, as the telephony gave it"),
                    _query("caller", "the caller's number, or its last four digits (all that is kept)"),
                    _query("number", "the number called, as the telephony or a client writes it")]
    page = {"type": "object", "required": ["site", "time_zone", "entries", "next"]}
    answer = _file(form) if form else _json("the page", page)
    return {"get": {"summary": summary, "security": BEARER, "parameters": [SITE_PATH, *filters],
                    "responses": {**answer, **_errors(400, 401, 404, 429)}}}


REPORT_FILTERS = [
    _query("from", "first cohort day, YYYY-MM-DD"),
    _query("to", "last cohort day, YYYY-MM-DD"),
    _query("page", "page path"),
    _query("experiment", "experiment id"),
    _query("metric", "any, qualified_call, call, missed_call, form, tel_click, goal or goal:NAME"),
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "string", "pattern": "^[0-9]*$"},
     "description": "pages listed, 1 to 1000 (empty: 100), the most visited first; the others add up to one "
                    "\"(other)\" row"},
    _query("by", "one or two of source, medium, campaign, phrase, landing, region, city, device, pool: visits and "
                 "conversions by them instead (docs/REPORTS.md)"),
    _query("sort", "with by: visits (default), converted, rate, or a conversion kind"),
    *(_query(name, f"with by: only this {name}") for name in ("source", "campaign", "phrase")),
]

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Swapline", "version": __version__,
             "description": "Site personalisation and call tracking. Errors: {\"error\": {\"code\", \"message\"}}."},
    "components": {"securitySchemes": {"reportToken": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/v1/decide": {"get": {
            "summary": "What this visitor sees: swaps, experiment variants, tracking number",
            "parameters": [SITE_QUERY, _query("url", PAGE_URL, required=True), _query("ref", "the referrer"),
                           _query("vid", "the visitor id"),
                           _query("visit", "the decision token of the visitor's previous page view"),
                           _query("consent", "0 until the visitor consents: nothing is kept, no number"),
                           _query("preview", "experiment:variant[,…]")],
            "responses": {**_json("the decision", DECISION), **_errors(400, 403, 404, 429)},
        }},
        "/v1/events": {"post": {
            "summary": "Beacons from the snippet (text/plain JSON)",
            "requestBody": {"required": True, "content": {"text/plain": {"schema": EVENT},
                                                          "application/json": {"schema": EVENT}}},
            "responses": {**_json("accepted", {"type": "object"}, 202),
                          "205": {"description": "a heartbeat's page shows a number its visitor no longer holds "
                                                 "(another visitor has it): ask for the page's decision again"},
                          **_errors(400, 401, 403, 413, 429, 503)},
        }},
        "/v1/calls": {"post": {
            "summary": "A finished call, signed with X-Swapline-Signature: sha256=HMAC(raw body)",
            "parameters": [SITE_QUERY, {"name": "X-Swapline-Signature", "in": "header", "required": True,
                                        "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": CALL}}},
            "responses": CALL_RESPONSES,
        }},
        "/v1/calls/twilio": {"post": {
            "summary": "Twilio status callback, signed with X-Twilio-Signature",
            "parameters": [SITE_QUERY, {"name": "X-Twilio-Signature", "in": "header", "required": True,
                                        "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {k: {"type": "string"} for k in
                                                 ("CallSid", "From", "To", "CallStatus", "CallDuration",
                                                  "DialCallStatus", "DialCallDuration")}}}}},
            # <Dial>'s action callback (DialCallStatus) is answered TwiML that ends the call
            "responses": {**CALL_RESPONSES, "200": {**CALL_RESPONSES["200"], "content": {
                **CALL_RESPONSES["200"]["content"], "text/xml": {"schema": {"type": "string"}}}}},
        }},
        "/v1/calls/mango/{site}/events/{event}": {"post": {
            "summary": "Mango Office notification (the summary ends a call), sign = sha256(key + json + salt)",
            "parameters": [SITE_PATH, {"name": "event", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _form(
                "vpbx_api_key", "sign", "json")}}},
            "responses": GUESSED_CALL_RESPONSES,
        }},
        "/v1/calls/zadarma": {
            "get": {"summary": "Zadarma's check of the address: zd_echo comes back",
                    "parameters": [_query("zd_echo", "any text up to 128 characters", required=True)],
                    "responses": {"200": {"description": "the zd_echo value",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}},
                                  **_errors(400)}},
            "post": {
                "summary": "Zadarma / classic Novofon notification (NOTIFY_END ends a call), Signature header",
                "parameters": [SITE_QUERY, {"name": "Signature", "in": "header", "required": True,
                                            "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {media: {"schema": _form(
                    "event", "pbx_call_id", "caller_id", "called_did", "call_start", "duration", "disposition")}
                    for media in ("application/x-www-form-urlencoded", "multipart/form-data")}},
                "responses": CALL_RESPONSES,
            },
        },
        "/v1/calls/uis": _notification(
            "UIS / CoMagic notification from the template in docs/CALLS.md; the token in the address",
            "calls.uis_token", "application/json", {
                **{name: {"oneOf": [{"type": "string"}, {"type": "integer"}]} for name in (
                    "call_session_id", "virtual_phone_number", "contact_phone_number", "start_time",
                    "notification_time", "talk_time_duration")},
                "direction": {"type": "string"}}),
        "/v1/calls/telphin": _notification(
            "Telphin extension event (hangup ends a call); the token in the address", "calls.telphin_token",
            "application/x-www-form-urlencoded", _form("EventType", "CallID", "CallFlow", "CalledDID", "CallerIDNum",
                                                       "EventTime", "Duration", "CallStatus")["properties"]),
        "/v1/calls/{site}": _log("The call log: each call with the visit it came from (docs/REPORTS.md)"),
        **{f"/v1/calls/{{site}}.{form}": _log(f"The call log as a {FILES[form]}", form=form) for form in FORMATS},
        "/v1/conversions/{site}": _log("The conversion log: calls, forms, tel: clicks, goals, each with its visit",
                                       kinds=True),
        **{f"/v1/conversions/{{site}}.{form}": _log(f"The conversion log as a {FILES[form]}", kinds=True, form=form)
           for form in FORMATS},
        "/v1/exports/{site}": {"get": {
            "summary": "Offline conversions for the ad platforms: which uploads, and how the latest went",
            "security": BEARER, "parameters": [SITE_PATH],
            "responses": {**_json("the uploads", {"type": "object", "required": ["site", "targets", "uploads"]}),
                          **_errors(401, 404, 429)},
        }},
        "/v1/exports/{site}/{target}.csv": {"get": {
            "summary": "Offline conversions as the platform's upload form takes them (docs/EXPORTS.md)",
            "security": BEARER,
            "parameters": [SITE_PATH, {"name": "target", "in": "path", "required": True,
                                       "schema": {"enum": ["metrica", "metrica-calls", "google-ads"]}},
                           _query("from", "first day, YYYY-MM-DD"), _query("to", "last day, YYYY-MM-DD")],
            "responses": {"200": {"description": "the file", "content": {"text/csv": {"schema": {"type": "string"}}}},
                          **_errors(400, 401, 404, 429)},
        }},
        "/v1/webhooks/{site}": {"get": {
            "summary": "Outgoing webhooks: each endpoint's backlog, the queues of endpoints the rules left with "
                       "conversions undelivered, and the latest deliveries (docs/WEBHOOKS.md)",
            "security": BEARER, "parameters": [SITE_PATH],
            "responses": {**_json("per endpoint", {"type": "object",
                                                   "required": ["site", "endpoints", "orphaned", "deliveries"]}),
                          **_errors(401, 404, 429)},
        }},
        "/v1/pools/{site}": {"get": {
            "summary": "Number pool utilisation, overflow and recommended size",
            "security": BEARER, "parameters": [SITE_PATH],
            "responses": {**_json("per pool", {"type": "object", "required": ["site", "pools"]}),
                          **_errors(401, 404, 429)},
        }},
        "/v1/numbers/{site}/{number}": {"get": {
            "summary": "Who held a tracking number around a moment, and whom a call then would be credited to "
                       "(docs/CALLS.md)",
            "security": BEARER,
            "parameters": [SITE_PATH, {"name": "number", "in": "path", "required": True, "schema": {"type": "string"}},
                           _query("at", "the moment: ISO 8601 (the site's calls.time_zone if written without a "
                                        "zone) or unix seconds; unset, now")],
            "responses": {**_json("the holds, and the attribution", {"type": "object", "required": [
                "site", "number", "time_zone", "at", "a_call_then", "holds", "calls"]}),
                          **_errors(400, 401, 404, 429)},
        }},
        "/v1/visitors/{site}/{vid}": {"get": {
            "summary": "What the store keeps of a visitor: visits with their pages, variants, numbers held, "
                       "conversions and calls (their right of access: 152-FZ, GDPR)",
            "security": BEARER,
            "parameters": [SITE_PATH, {"name": "vid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {**_json("what is kept", {"type": "object", "required": [
                "site", "vid", "time_zone", "visits", "experiments", "numbers", "conversions", "calls"]}),
                          **_errors(400, 401, 404, 429)},
        }, "delete": {
            "summary": "Erase a visitor: visits, assignments, their id in leases and calls (152-FZ, GDPR)",
            "security": BEARER,
            "parameters": [SITE_PATH, {"name": "vid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {**_json("how many records of each kind went",
                                  {"type": "object", "required": ["site", "vid", "erased"]}),
                          **_errors(400, 401, 403, 404, 429)},
        }},
        "/v1/callers/{site}": {"post": {
            "summary": "What the store keeps of a caller by their phone number: their calls, and older calls only "
                       "the number's last digits tie to them (152-FZ, GDPR)",
            "security": BEARER, "parameters": [SITE_PATH],
            "requestBody": CALLER,
            "responses": {**_json("their calls", {"type": "object",
                                                  "required": ["site", "time_zone", "calls", "calls_ending_alike"]}),
                          **_errors(400, 401, 404, 413, 429)},
        }},
        "/v1/callers/{site}/forget": {"post": {
            "summary": "Erase a caller by their phone number: its last digits and history in the calls, and the "
                       "calls in the conversion log (152-FZ, GDPR)",
            "security": BEARER, "parameters": [SITE_PATH],
            "requestBody": CALLER,
            "responses": {**_json("how many records of each kind went, and whom the calls were credited to",
                                  {"type": "object", "required": ["site", "erased", "credited_to"]}),
                          **_errors(400, 401, 403, 404, 413, 429)},
        }},
        "/v1/reports/{site}": {"get": {
            "summary": "Conversion per page and variant, with statistics",
            "security": BEARER, "parameters": [SITE_PATH, *REPORT_FILTERS],
            "responses": {**_json("the report", {"type": "object", "required": ["site", "pages", "experiments"]}),
                          **_errors(400, 401, 404, 429)},
        }},
        **{f"/v1/reports/{{site}}.{form}": {"get": {
            "summary": f"The report as a {FILES[form]}", "security": BEARER, "parameters": [SITE_PATH, *REPORT_FILTERS],
            "responses": {**_file(form), **_errors(400, 401, 404, 429)},
        }} for form in FORMATS},
        "/healthz": {"get": {"summary": "The process is up, and its embedded store if it has one "
                                        "(outside the operators' networks, the status only)",
                             "responses": {**_json("up", {"type": "object", "required": ["status"]}),
                                           **_errors(503)}}},
        "/readyz": {"get": {"summary": "The store answers (outside the operators' networks, the status only)",
                            "responses": {**_json("ready", {"type": "object", "required": ["status"]}),
                                          **_errors(503)}}},
    },
}


async def openapi_endpoint(request: Request) -> JSON:
    return JSON(SPEC)
