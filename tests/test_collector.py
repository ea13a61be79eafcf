"""The garbage collector in a worker: collections leave the memos alone, cyclic garbage still goes.

What a user notices is the latency (`benchmarks/latency.py`: p99 at half a worker's capacity);
these tests hold the two halves of why it stays short and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from service import collector as collector_module
from service.app import create_app
from service.collector import Collector, frozen_survivors
from service.observability import ACTIVITY
from service.rules.engine import Plan
from tests.conftest import BROWSER_HEADERS, make_settings


class Node:
    """A container in a reference cycle with itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me: Any = self


def walked(kind: type) -> int:
    """How many objects of `kind` the next collection of every generation would walk."""
    return sum(isinstance(thing, kind) for thing in gc.get_objects())


def test_what_a_serving_worker_keeps_is_walked_by_no_collection_after_the_first(
        valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    with TestClient(create_app(make_settings(valkey_url, rules_dir)), headers=BROWSER_HEADERS) as client:
        for n in range(20):  # each its own phrase: its own plan in the memo
            url = f"/catalog/{n}?utm_source=yandex&utm_term=купить кондиционер {n}"
            response = client.get("/v1/decide", params={"site": "demo", "url": url})
            assert response.status_code == 200
        gc.collect(0)  # the youngest generation: what any collection walks
        assert walked(Plan) == 0

    # The worker stopped: the collector is the process's own again.
    kept = [Plan((), (), None, {"keyword": Node()}) for _ in range(20)]  # as a plan's context holds objects
    gc.collect(0)
    assert walked(Plan) >= len(kept)


def test_cyclic_garbage_among_frozen_objects_goes_once_they_double_and_after_all_is_walked_again() -> None:
    with frozen_survivors() as collector:
        survivor = Node()
        few = [Node() for _ in range(100)]
        gone = [weakref.ref(node) for node in few]
        gc.collect(0)  # they live: frozen
        del few
        gc.collect()
        assert all(ref() is not None for ref in gone), "frozen garbage was collected by a collection"
        assert not collector.thaw_if_doubled()

        many = [Node() for _ in range(collector.frozen + 1)]
        gc.collect(0)
        del many
        assert collector.thaw_if_doubled()
        assert all(ref() is None for ref in gone)
        assert not collector.thaw_if_doubled(), "what the thaw left is the new measure"
        assert not any(thing is survivor for thing in gc.get_objects())

    assert any(thing is survivor for thing in gc.get_objects()), "after, the collector walks it again"


class Traffic:
    """A worker's `activity()` as the collector reads it: busy (a request begun since each
    look) until `quiet` is set; it counts the looks."""

    def __init__(self) -> None:
        self.begun = self.looks = 0
        self.quiet = False

    def __call__(self) -> tuple[int, int]:
        self.looks += 1
        if not self.quiet:
            self.begun += 1
        return self.begun, 0


async def until(condition: Callable[[], bool]) -> None:
    """Readiness, not a sleep."""
    async with asyncio.timeout(60):
        while not condition():
            await asyncio.sleep(0.001)


@pytest.fixture
def checked_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's minute and quiet second, shortened: the tests wait on what it does."""
    monkeypatch.setattr(collector_module, "CHECK_EVERY", 0.01)
    monkeypatch.setattr(collector_module, "QUIET", 0.001)


@contextlib.asynccontextmanager
async def checking(traffic: Traffic) -> AsyncIterator[Collector]:
    """A worker's collector, checking as it serves `traffic`."""
    with frozen_survivors() as collector:
        task = asyncio.create_task(collector.keep_checking(traffic))
        try:
            yield collector
        finally:
            task.cancel()


@pytest.mark.usefixtures("checked_often")
def test_a_thaw_comes_early_at_a_quiet_second_and_never_while_requests_come() -> None:
    """The full walk holds the worker up to half a second: where the frozen objects have grown
    by half, it waits for a second nobody is served in."""
    async def scenario() -> None:
        traffic = Traffic()
        async with checking(traffic) as collector:
            more = [Node() for _ in range(collector.frozen * 3 // 4)]
            gc.collect(0)  # frozen: grown by half, not doubled
            before = collector.frozen
            await until(lambda: traffic.looks >= 100 or collector.frozen != before)
            assert collector.frozen == before, "thawed while requests came"
            traffic.quiet = True
            await until(lambda: collector.frozen != before)
            del more

    asyncio.run(scenario())


@pytest.mark.usefixtures("checked_often")
def test_a_thaw_waits_for_no_quiet_once_the_frozen_objects_have_doubled() -> None:
    """As a leak of cyclic garbage would make them: memory must not grow without end."""
    async def scenario() -> None:
        traffic = Traffic()
        async with checking(traffic) as collector:
            before = collector.frozen
            nodes = [Node() for _ in range(before + 1)]
            gc.collect(0)  # frozen
            leaked = [weakref.ref(node) for node in nodes]
            del nodes  # cyclic garbage among the frozen objects: only a thaw frees it
            await until(lambda: collector.frozen != before)
            assert all(ref() is None for ref in leaked)
            assert traffic.looks == 0, "it waited for quiet"

    asyncio.run(scenario())


def test_every_request_a_worker_serves_is_counted_while_it_runs(valkey_url: str, rules_dir: Path) -> None:
    """What tells the collector a worker is quiet: the hot routes and the others alike."""
    with TestClient(create_app(make_settings(valkey_url, rules_dir)), headers=BROWSER_HEADERS) as client:
        begun = ACTIVITY.begun
        assert client.get("/v1/decide", params={"site": "demo", "url": "/"}).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert ACTIVITY() == (begun + 2, 0)


TRIMMED = """
from service.collector import Collector, frozen_survivors

def anon_mib():
    status = open('/proc/self/status').read().splitlines()
    return int(next(line for line in status if line.startswith('RssAnon')).split()[1]) / 1024

# 200 MiB of the C heap touched, then all but every 64th block freed: a load's garbage among what
# it keeps, which free() alone leaves resident (the blocks still in use pin the heap's top).
blocks = [bytearray(64 * 1024 - 64) for _ in range(3200)]
kept = blocks[::64]
del blocks
before = anon_mib()
with frozen_survivors():
    print(before - anon_mib())
"""


def test_a_worker_gives_the_memory_its_start_freed_back_to_the_system() -> None:
    """The rules' load and the dictionaries allocate more than they keep; what they free in the
    C heap would stay in the worker's RSS for good, and it goes back when serving starts."""
    ran = subprocess.run([sys.executable, "-c", TRIMMED], capture_output=True, text=True, check=True, timeout=120,
                         cwd=Path(__file__).parent.parent)
    assert float(ran.stdout) > 100, ran.stdout
