"""No number is ever held by two visitors at once, with four service processes competing."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import redis

from tests.conftest import BROWSER_HEADERS, start, stop

NUMBERS = [f"+7 495 130-00-{i:02d}" for i in range(50)]
SITE = "site: load\npools:\n  - id: city\n    hold: 1s\n    numbers:\n" + "".join(
    f'      - "{number}"\n' for number in NUMBERS
)
VISITORS_PER_PROCESS = 550  # 2,200 visitors in all, each on two pages of a visit


def drive(args: tuple[str, int]) -> int:
    """One client process: its visitors' page views, eight at a time."""
    base, process = args
    local = threading.local()

    def view(n: int) -> int:
        if not hasattr(local, "client"):
            # 32 clients on four workers wait their turn on a busy machine: 60 s is a safety net only.
            local.client = httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=60)
        vid, visit = f"load-{process}-{n:012d}", ""
        for _ in range(2):  # the second page of the visit, with its token, as the snippet sends it
            response = local.client.get("/v1/decide", params={"site": "load", "url": "/", "vid": vid, "visit": visit})
            assert response.status_code == 200, response.text
            visit = response.json()["token"]
        return 1

    with ThreadPoolExecutor(8) as threads:
        return sum(threads.map(view, range(VISITORS_PER_PROCESS)))


def test_no_double_assignment_across_processes(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "load.yaml").write_text(SITE)
    service, base = start(tmp_path, "--workers", "4", SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_DECISION_RATE="0")  # 2,200 visitors from one address: no limit
    try:
        with multiprocessing.get_context("spawn").Pool(4) as clients:
            assert sum(clients.map(drive, [(base, p) for p in range(4)])) == 4 * VISITORS_PER_PROCESS
    finally:
        stop(service)

    leases = [orjson.loads(record) for record in store.hvals("sw:{load:city}:leases")]
    by_number: dict[str, list[dict[str, int]]] = collections.defaultdict(list)
    for lease in leases:
        by_number[lease["n"]].append(lease)
    overlaps = [
        (number, earlier["v"], later["v"])
        for number, held in by_number.items()
        for earlier, later in zip(sorted(held, key=lambda x: x["f"]), sorted(held, key=lambda x: x["f"])[1:],
                                  strict=False)
        if later["f"] <= earlier["u"]
    ]
    assert overlaps == []
    assert len(leases) >= 100 and len(by_number) == 50  # every number was leased, most of them many times
    assert sum(len(held) > 1 for held in by_number.values()) >= 40
    # One lease per visitor within a hold: a second view while it lasts renews it. A second view
    # after the 1 s hold ended (a busy machine) rightly gets a new lease, begun after the old one.
    by_visitor: dict[str, list[dict[str, int]]] = collections.defaultdict(list)
    for lease in leases:
        by_visitor[lease["v"]].append(lease)
    twice_within_a_hold = [
        (visitor, earlier, later)
        for visitor, held in by_visitor.items()
        for earlier, later in itertools.pairwise(sorted(held, key=lambda x: x["f"]))
        if later["f"] <= earlier["u"]
    ]
    assert twice_within_a_hold == []
