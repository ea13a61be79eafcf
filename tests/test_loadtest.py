"""The Locust suite as a smoke test: 20 s of the realistic mix against a real service.

`swapline serve` runs on `loadtest/rules` with a real Valkey and this machine as its trusted
proxy; Locust runs headless in its own process. Any failed request fails the test: a 4xx or
5xx, and also a wrong answer that the locustfile checks (a number from the wrong pool, a
heartbeat that lost the number, a call credited to someone other than its holder).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import redis

from tests.conftest import ROOT, start

LOADTEST = ROOT / "loadtest"
SECONDS = 20
REQUESTS = ("/v1/decide", "/v1/events heartbeat", "/v1/events form", "/v1/events tel_click", "/v1/calls")


def test_locust_smoke_has_no_failures(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    process, base = start(
        tmp_path,
        SWAPLINE_REDIS_URL=valkey_url,
        SWAPLINE_RULES_DIR=str(LOADTEST / "rules"),
        SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32",
        SWAPLINE_DECISION_RATE="1000000",
        SWAPLINE_BEACON_RATE="1000000",
        SWAPLINE_RELOAD_RULES="0",
        SWAPLINE_LOG_LEVEL="warning",
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOADTEST / "locustfile.py"), "--headless",
             "-u", "20", "-r", "20", "-t", f"{SECONDS}s", "--host", base, "--csv", str(tmp_path / "smoke"),
             "--exit-code-on-error", "1", "--only-summary", "--loglevel", "WARNING"],
            env={**_environ(), "LOADTEST_THINK": "0.2"}, cwd=ROOT, capture_output=True, text=True,
            timeout=SECONDS + 30,
        )
    finally:
        process.terminate()
        process.wait(timeout=15)
    output = result.stdout + result.stderr
    failures = list(csv.DictReader((tmp_path / "smoke_failures.csv").open()))
    assert not failures, f"{failures}\n{output}"
    assert result.returncode == 0, output
    counts = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader((tmp_path / "smoke_stats.csv").open())}
    assert counts["Aggregated"] > 200, counts
    missing = [name for name in REQUESTS if counts.get(name, 0) == 0]
    assert not missing, f"the mix sent no {missing}: {counts}"


def _environ() -> dict[str, str]:
    # Locust's own workers must not inherit the service's settings by accident.
    return {name: value for name, value in os.environ.items() if not name.startswith("SWAPLINE_")}
