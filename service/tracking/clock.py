"""Time as the service keeps it: one clock for every process, and the hours and days counts go by.

Holds of tracking numbers are compared across processes (a number leased by one may be handed
out by another once its hold has ended), so every process reads the store's clock, not its own:
a process whose wall clock is a minute ahead would otherwise free numbers other visitors still
see. `StoreClock` reads the store's `TIME` now and then, off the request path, and runs on the
monotonic clock in between, which no step of the wall clock moves.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from service.tracking.store import STORE_ERRORS

log = logging.getLogger("swapline")
DAY_MS = 86_400_000
QUARTER_MS = 900_000  # every time zone's hours and days begin on a quarter of a UTC hour
STEP_EVERY = 60.0  # seconds between readings of the store's clock
FIRST_EVERY = 1.0  # seconds between tries while it has never been read: no store, no leases yet


class StoreClock:
    """Seconds since the epoch by the store's clock. A reading may set it back by a few
    milliseconds; the pool scripts' own clocks never go back (docs/STORAGE.md, "Leases")."""

    def __init__(self) -> None:
        self._base, self._mark = time.time(), time.monotonic()  # its own clock until the first reading
        self.synchronised = False

    def __call__(self) -> float:
        return self._base + time.monotonic() - self._mark

    async def synchronise(self, read_store_time: Callable[[], Awaitable[float]]) -> None:
        """Take the store's time, as of the middle of the round trip that read it; a store that
        does not answer leaves the clock running on its last reading."""
        sent = time.monotonic()
        try:
            store_time = await read_store_time()
        except STORE_ERRORS as exc:
            log.debug("cannot read the store's clock: %s", exc)
            return
        self._base, self._mark = store_time, (sent + time.monotonic()) / 2
        self.synchronised = True

    async def keep_in_step(self, read_store_time: Callable[[], Awaitable[float]]) -> None:
        """Read the store's clock every `STEP_EVERY` seconds, for as long as the process runs."""
        while True:
            await asyncio.sleep(STEP_EVERY if self.synchronised else FIRST_EVERY)
            await self.synchronise(read_store_time)


def hour_and_day(now_ms: int, zone: datetime.tzinfo = datetime.UTC) -> tuple[str, str]:
    """The hour (2026-11-22T14) and the day (2026-11-22) of a moment, on the clocks of `zone`:
    a site's (`Site.time_zone`), whose days its reports count by."""
    return _format_quarter(now_ms // QUARTER_MS, zone)


def day_start_ms(day: datetime.date, zone: datetime.tzinfo = datetime.UTC) -> int:
    """When `day` begins in `zone`, in unix milliseconds."""
    return int(datetime.datetime.combine(day, datetime.time(), zone).timestamp() * 1000)


@functools.lru_cache(maxsize=1024)  # one quarter of an hour after another, a few zones: formatted once
def _format_quarter(quarters: int, zone: datetime.tzinfo) -> tuple[str, str]:
    moment = datetime.datetime.fromtimestamp(quarters * QUARTER_MS // 1000, zone)
    return moment.strftime("%Y-%m-%dT%H"), moment.strftime("%Y-%m-%d")
