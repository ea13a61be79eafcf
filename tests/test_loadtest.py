"""The Locust suite as a smoke test: 20 s of the realistic mix against a real service.

`swapline serve` runs on `loadtest/rules` with a real Valkey and this machine as its trusted
proxy; Locust runs headless in its own process. Any failed request fails the test: a 4xx or
5xx, and also a wrong answer that the locustfile checks (a number from the wrong pool, a
visitor who lost their number within its hold, a number shown to two visitors at once, a
heartbeat that lost the number, a call credited to someone other than its holder). The
service's own report and lease records then say whether the suite's browsers made visits as
browsers do, and kept each number to one visitor at a time.
"""

from __future__ import annotations

import collections
import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.conftest import ROOT, start, stop

LOADTEST = ROOT / "loadtest"
SECONDS = 20
REQUESTS = ("/v1/decide", "/v1/events heartbeat", "/v1/events form", "/v1/events tel_click", "/v1/calls")
REPORT_TOKEN = "load-report-token-change-me"  # loadtest/rules/load.yaml


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
        # The final figures are the JSON file's: the CSV files are written once a second, so
        # they trail the run's end.
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOADTEST / "locustfile.py"), "--headless",
             "-u", "20", "-r", "20", "-t", f"{SECONDS}s", "--host", base, "--csv", str(tmp_path / "smoke"),
             "--json-file", str(tmp_path / "smoke"), "--exit-code-on-error", "1", "--loglevel", "WARNING"],
            env={**_environ(), "LOADTEST_THINK": "0.2"}, cwd=ROOT, capture_output=True, text=True,
            timeout=SECONDS + 30,
        )
        headers = {"Authorization": f"Bearer {REPORT_TOKEN}"}
        sources = httpx.get(f"{base}/v1/reports/load?by=source", headers=headers).json()["rows"]
        excluded = httpx.get(f"{base}/v1/reports/load", headers=headers).json()["excluded"]
    finally:
        stop(process)
    output = result.stdout + result.stderr
    failures = list(csv.DictReader((tmp_path / "smoke_failures.csv").open()))
    stats: list[dict[str, Any]] = json.loads((tmp_path / "smoke.json").read_text())
    counts = {entry["name"]: entry["num_requests"] for entry in stats}
    assert not sum(entry["num_failures"] for entry in stats), f"{failures}\n{stats}\n{output}"
    assert result.returncode == 0, output
    assert sum(counts.values()) > 200, counts
    missing = [name for name in REQUESTS if counts.get(name, 0) == 0]
    assert not missing, f"the mix sent no {missing}: {counts}"
    # The pools are sized for the suite's pace: hardly a visitor gets the overflow number (the
    # locustfile fails the run past LOADTEST_MAX_OVERFLOW, 1%).
    decisions = counts["/v1/decide"] + counts.get("/v1/decide overflow", 0)
    assert counts.get("/v1/decide overflow", 0) <= 0.01 * decisions, counts

    # Every page of a visit carries the last decision's token, so the service counts visits, not
    # page views: 2.2 pages a visit in the mix (loadtest/traffic.py), fewer for the visits the
    # run's end cuts short. Bots make page views but no visits.
    visits = sum(row["visits"] for row in sources)
    pages = decisions - excluded["bot_page_views"]
    assert 1.5 < pages / visits < 2.8, f"{pages} page views made {visits} visits: {sources}"
    # Internal pages continue their visit: they are not direct visits of their own (20% of landings are).
    direct = sum(row["visits"] for row in sources if row["source"] == "(none)")
    assert direct < 0.35 * visits, f"{direct} of {visits} visits are direct: {sources}"

    # The service's own lease records agree with the locustfile's checks: no number held by two
    # visitors at once.
    leases: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for pool in ("moscow", "saint-petersburg", "russia"):
        for record in store.hvals(f"sw:{{load:{pool}}}:leases"):
            lease = json.loads(record)
            leases[lease["n"]].append(lease)
    shared = [(number, earlier["v"], later["v"]) for number, held in leases.items()
              for earlier, later in itertools.pairwise(sorted(held, key=lambda lease: lease["f"]))
              if later["v"] != earlier["v"] and later["f"] <= earlier["u"]]
    assert leases and not shared, shared


def _environ() -> dict[str, str]:
    # Locust's own workers must not inherit the service's settings by accident.
    return {name: value for name, value in os.environ.items() if not name.startswith("SWAPLINE_")}
