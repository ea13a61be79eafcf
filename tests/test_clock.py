"""One clock for holds: service processes stamp holds with the store's time, so one whose own
clock is a minute ahead can neither hand out a number another visitor still holds nor move the
holds of the others (docs/STORAGE.md, "Leases")."""

from __future__ import annotations

import email.utils
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import BROWSER_HEADERS, POOL_SITE, output, skewed, start, stop

POOL = {"+74951900001", "+74951900002", "+74951900003"}
HOLD_MS = 60_000  # the pool's hold in POOL_SITE
SKEW = 60  # seconds the second process's clock is ahead


def decide(base: str, vid: str) -> Any:
    response = httpx.get(f"{base}/v1/decide", headers=BROWSER_HEADERS, timeout=60,
                         params={"site": "pooltest", "url": "http://localhost:8000/", "vid": vid})
    assert response.status_code == 200, response.text
    return response.json()


def date(base: str) -> float:
    """The process's own wall clock, as its HTTP server dates an answer."""
    return email.utils.parsedate_to_datetime(httpx.get(f"{base}/healthz").headers["date"]).timestamp()


@pytest.fixture
def two_processes(tmp_path: Path, rules_dir: Path, valkey_url: str,
                  store: redis.Redis) -> Any:
    """Two `swapline serve` processes on one store; the second's wall clock runs a minute ahead."""
    (rules_dir / "pooltest.yaml").write_text(POOL_SITE)
    processes = []
    for name, env in (("right", {}), ("ahead", skewed(SKEW))):
        (tmp_path / name).mkdir()
        processes.append(start(tmp_path / name, "--workers", "1", SWAPLINE_REDIS_URL=valkey_url,
                               SWAPLINE_RULES_DIR=str(rules_dir), **env))
    yield [base for _, base in processes]
    for process, _ in processes:
        stop(process)
        assert "Traceback" not in output(process), output(process)


def test_a_process_with_its_clock_ahead_frees_no_held_number(two_processes: list[str], store: redis.Redis) -> None:
    right, ahead = two_processes
    # The skew is real: the second process dates its answers a minute ahead.
    assert date(ahead) - date(right) >= SKEW - 5
    answers = [decide(base, f"clock-visitor-{n:04d}") for n, base in enumerate([right, ahead] * 3)]
    # Three holds of 60 s are alive, whoever answered: the three numbers, then the overflow.
    numbers = [answer["phone"]["number"] for answer in answers]
    assert set(numbers[:3]) == POOL and all(a["phone"]["kind"] == "overflow" for a in answers[3:]), numbers
    # Every hold ends a minute after the store's now, not two: no process moved the others' holds.
    store_now = int(store.time()[0]) * 1000
    holds = store.zrange("sw:{pooltest:small}:held", 0, -1, withscores=True)
    assert len(holds) == 3 and all(abs(until - store_now - HOLD_MS) < 30_000 for _, until in holds), holds
    # The first visitors come back through the other process and still hold their numbers.
    assert decide(ahead, "clock-visitor-0000")["phone"]["number"] == numbers[0]
    assert decide(right, "clock-visitor-0001")["phone"]["number"] == numbers[1]
