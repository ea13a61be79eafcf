"""schemathesis hooks for tests/test_fuzz.py: requests signed as a PBX signs them.

Without them every fuzzed call webhook stops at its signature (401) and every beacon at its
token, and the parsing behind them is never reached. `before_call` serialises the body itself
and signs those bytes (Swapline's HMAC, Twilio's own validator, Mango's and Zadarma's
signatures), gives the vendors that sign nothing their token and beacons a real decision
token; the fuzzed values themselves are left as generated (but for Zadarma's event, which
picks the fields it signs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any
from urllib.parse import urlencode

import schemathesis
from twilio.request_validator import RequestValidator

from service.integrations.telephony import ZADARMA_SIGNED, mango_sign, zadarma_signature

# The demo site's credentials (rules/demo.yaml), for the vendors that sign.
DEMO = {"mango_api_key": "demo-mango-key-change-me", "mango_api_salt": "demo-mango-salt-change-me",
        "zadarma_secret": "demo-zadarma-secret-change-me"}
TOKENS = {"/v1/calls/uis": "demo-uis-token-change-me", "/v1/calls/telphin": "demo-telphin-token-change-me"}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path, body = case.operation.path, case.body
    if path in TOKENS:  # the vendors that sign nothing carry the site's token in the address
        case.query = {**(case.query or {}), "token": TOKENS[path]}
    if not isinstance(body, dict):  # absent or not an object: nothing to sign or to fill in
        return
    if case.headers is None:
        case.headers = {}
    if path == "/v1/calls":
        raw = json.dumps(body).encode()
        case.headers["X-Swapline-Signature"] = "sha256=" + hmac.new(
            os.environ["FUZZ_CALLS_SECRET"].encode(), raw, hashlib.sha256).hexdigest()
        kwargs.update(data=raw, json=None)
    elif path == "/v1/calls/twilio":
        params = {str(name): str(value) for name, value in body.items()}
        url = f"{os.environ['FUZZ_BASE']}{path}?{urlencode(case.query or {})}"
        case.headers["X-Twilio-Signature"] = RequestValidator(os.environ["FUZZ_TWILIO_TOKEN"]).compute_signature(
            url, params)
        kwargs.update(data=urlencode(params), json=None)
    elif path == "/v1/calls/mango/{site}/events/{event}":
        form = {str(name): str(value) for name, value in body.items()}
        form["vpbx_api_key"] = DEMO["mango_api_key"]
        form["sign"] = mango_sign(DEMO["mango_api_key"], form.get("json", ""), DEMO["mango_api_salt"])
        kwargs.update(data=urlencode(form), json=None)
    elif path == "/v1/calls/zadarma" and case.method == "POST":
        form = {str(name): str(value) for name, value in body.items()}
        if form.get("event") not in ZADARMA_SIGNED:
            form["event"] = "NOTIFY_END"  # else an unknown event stops it before the signature
        signed = "".join(form.get(name, "") for name in ZADARMA_SIGNED[form["event"]])
        case.headers["Signature"] = zadarma_signature(DEMO["zadarma_secret"], signed)
        kwargs.update(data=urlencode(form), json=None)
    elif path == "/v1/events" and "token" in body:
        body["token"] = os.environ["FUZZ_DECISION_TOKEN"]
