"""The cyclic garbage collector in a worker: what survives a collection is frozen.

A worker's memos hold a hundred thousand objects or more, and they turn over as visitors
come. CPython's collector walks every object it tracks in the generations it collects, and
under load each walk of the memos held up every request behind it: the tail of a worker's
latency (docs/PERFORMANCE.md, "Latency at half the capacity"). Here each collection ends by
freezing what survived it (`gc.freeze`), so the next walks only what came since.

Frozen objects are still freed as soon as nothing refers to them; only garbage in reference
cycles among them would stay. So every minute the frozen objects are counted, and once they
have doubled since they were last thawed, they are thawed and collected in full, once. That
walk holds the worker up to half a second with its memos full. So a thaw comes sooner where
it holds up no one: once they have grown by half, at the first quiet second (no request begun
or running) of the minute that follows.

When serving starts, the C heap's free pages go back to the system: the start (the rules, the
dictionaries) allocates far more than it keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("swapline")
CHECK_EVERY = 60.0  # seconds: counting the frozen objects walks them all
QUIET = 1.0  # seconds without a request begun or running: a thaw then holds up no one
EARLY, DUE = 1.5, 2  # times the frozen objects of the last thaw: a thaw when quiet; at once


class Collector:
    """Freezes what each collection leaves, as an entry of `gc.callbacks`."""

    def __init__(self) -> None:
        self.frozen = gc.get_freeze_count()  # as the last thaw left them

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            gc.freeze()

    def grown(self, times: float) -> bool:
        """Whether the frozen objects are more than `times` those the last thaw left."""
        return gc.get_freeze_count() > times * self.frozen

    def thaw(self) -> None:
        """Thaw and collect everything."""
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        collected = gc.collect()  # its end freezes the survivors again
        self.frozen = gc.get_freeze_count()
        log.info("garbage collector: %d frozen objects thawed, %d collected", frozen, collected)

    def thaw_if_doubled(self) -> bool:
        """Thaw and collect everything now if the frozen objects have doubled; whether it did."""
        if not self.grown(DUE):
            return False
        self.thaw()
        return True

    async def keep_checking(self, activity: Callable[[], tuple[int, int]]) -> None:
        """Every minute, thaw if the frozen objects have doubled; if they have grown by half, at
        the first quiet second of the next minute. `activity()`: the requests begun so far, and
        those running."""
        while True:
            await asyncio.sleep(CHECK_EVERY)
            if self.thaw_if_doubled() or not self.grown(EARLY):
                continue
            for _ in range(int(CHECK_EVERY / QUIET)):
                begun = activity()[0]
                await asyncio.sleep(QUIET)
                if activity() == (begun, 0):
                    self.thaw()
                    break


@contextlib.contextmanager
def frozen_survivors() -> Iterator[Collector]:
    """While it lasts, what survives a collection is frozen, and what lives now first (once the C
    heap's free pages are given back); after, the collector walks the process's objects again."""
    gc.collect()
    gc.freeze()
    _trim_c_heap()
    collector = Collector()
    gc.callbacks.append(collector)
    try:
        yield collector
    finally:
        gc.callbacks.remove(collector)
        gc.unfreeze()


def _trim_c_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's `malloc_trim`): what loading the
    rules and the dictionaries allocated and freed would otherwise stay in the worker's RSS."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except AttributeError:  # a C library without it (musl, macOS): nothing to give back this way
        return
    trim(0)
