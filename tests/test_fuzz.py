"""schemathesis against /openapi.json on the real service: no 5xx, no answer outside the spec.

Webhooks are signed and beacons carry a real token (tests/schemathesis_hooks.py), so fuzzing
reaches what lies behind them; the hostile inputs issue 13 found are the spec's examples here,
tried on every run. Abuse limits are off: they would turn the fuzzing into 429s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import redis
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from tests.conftest import BROWSER, BROWSER_HEADERS, ROOT, start, stop
from tests.test_hostile import LONG_PATH, LONG_REFERRER

HOSTILE_PARAMETERS = {
    "url": {"backtracking-glob": LONG_PATH, "backtracking-phrase": "/?utm_term=" + "x" * 199 + "!"},
    "ref": {"long-referrer": LONG_REFERRER},
    "limit": {"zero": "0", "huge": "10000000000000000000000"},
    "cursor": {"stream-start": "0-0", "past-64-bits": "18446744073709551616-0"},
}
CALL = {"call_id": "hostile-1", "called": "+74951200001", "talk_seconds": 30}
HOSTILE_BODIES = {
    "/v1/calls": {**{f"start-{n}": {**CALL, "start": start} for n, start in enumerate(
        [1e17, -1e17, 1e20, 1e308, 1795000000123, "9999-12-31T23:59:59+00:00"])},
        "talk-absurd": {**CALL, "start": 1795000000, "talk_seconds": 10**18}},
    "/v1/calls/twilio": {f"duration-{n}": {"CallSid": "CA1", "To": "+74951200001", "CallStatus": "completed",
                                           "CallDuration": duration} for n, duration in enumerate(["²", "1" * 23])},
    "/v1/calls/mango/{site}/events/{event}": {f"mango-{n}": {"json": summary} for n, summary in enumerate([
        '{"entry_id": "m1", "call_direction": 1, "line_number": "74951200001", "create_time": 1e400}',
        '{"entry_id": "m1", "call_direction": 1, "line_number": "74951200001", "create_time": 1795000000, '
        '"talk_time": 1795000005, "end_time": 99999999999999999999, "entry_result": 1}',
        "[" * 10_000])},
    "/v1/calls/zadarma": {f"zadarma-{n}": {"event": "NOTIFY_END", "pbx_call_id": "z1", "called_did": "74951200001",
                                           "call_start": start, "duration": "5", "disposition": "answered"}
                          for n, start in enumerate(["99999-01-01 00:00:00", "2026-02-30 10:00:00", "1795000000"])},
    "/v1/calls/telphin": {f"telphin-{n}": {"EventType": "hangup", "CallID": "t1", "CalledDID": "74951200001",
                                           "EventTime": time, "Duration": "5", "CallStatus": "ANSWER"}
                          for n, time in enumerate(["1" * 30, "0", "1795000000000000"])},
    "/v1/events": {"goal-flood": {"type": "goal", "id": "g1", "name": "x" * 65, "token": "t"}},
}


def test_the_spec_is_valid_openapi_as_it_says(client: TestClient) -> None:
    """Code generators and gateways read it with a validator as strict as this one."""
    spec = client.get("/openapi.json").json()
    validate(spec)  # by the version the spec names (3.0.3): no list of types, for one
    assert spec["openapi"].startswith("3.0")


def test_fuzzing_the_openapi_spec_finds_no_5xx_and_no_schema_break(
    tmp_path: Path, valkey_url: str, store: redis.Redis
) -> None:
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_DECISION_RATE="0",
                          SWAPLINE_BEACON_RATE="0", SWAPLINE_SIGNIN_ATTEMPTS="0")
    try:
        spec = httpx.get(f"{base}/openapi.json").json()
        # Aim at the demo site, or nearly every case would stop at "unknown site".
        for operations in spec["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "site":
                        parameter["schema"] = {"type": "string", "enum": ["demo"]}
                    for name, values in HOSTILE_PARAMETERS.get(parameter["name"], {}).items():
                        parameter.setdefault("examples", {})[name] = {"value": values}
        for path, examples in HOSTILE_BODIES.items():
            content = spec["paths"][path]["post"]["requestBody"]["content"]
            for media in content.values():
                media["examples"] = {name: {"value": value} for name, value in examples.items()}
        (tmp_path / "openapi.json").write_text(json.dumps(spec))
        token = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/"}, headers=BROWSER_HEADERS).json()
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT),
               "FUZZ_BASE": base, "FUZZ_CALLS_SECRET": "demo-calls-secret-change-me",
               "FUZZ_TWILIO_TOKEN": "demo-twilio-token-change-me", "FUZZ_DECISION_TOKEN": token["token"]}
        result = subprocess.run(
            ["schemathesis", "run", str(tmp_path / "openapi.json"), "--url", base, "--checks", "all",
             # Valid-looking input may still be refused (a URL that is no URL): a 4xx is fine here.
             "--exclude-checks", "positive_data_acceptance",
             "--max-examples", "40", "--seed", "1", "-H", "Authorization: Bearer demo-report-token-change-me",
             "-H", f"User-Agent: {BROWSER}", "-H", "Sec-Fetch-Mode: cors"],
            capture_output=True, text=True, timeout=600, env=env,
        )
    finally:
        stop(process)
    assert result.returncode == 0, result.stdout[-4000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", result.stdout).groups())  # type: ignore[union-attr]
    assert generated > 300 and passed == generated
