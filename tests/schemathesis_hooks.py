"""schemathesis hooks for tests/test_fuzz.py: requests signed as a PBX signs them.

Without them every fuzzed call webhook stops at its signature (401) and every beacon at its
token, and the parsing behind them is never reached. `before_call` serialises the body itself
and signs those bytes (Swapline's HMAC, Twilio's own validator), and gives beacons a real
decision token; the fuzzed values themselves are left as generated.
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


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path, body = case.operation.path, case.body
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
    elif path == "/v1/events" and "token" in body:
        body["token"] = os.environ["FUZZ_DECISION_TOKEN"]
