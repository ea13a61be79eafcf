"""A per-client limit on beacons, kept in process memory (no IP address reaches the store)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimit:
    """At most `limit` requests per `window` seconds per key, in fixed windows.

    Each worker process counts on its own: with N workers a client gets at most N times the
    limit, which is what a beacon flood guard needs without a store round trip.
    """

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._counts: dict[str, int] = {}
        self._started = clock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        if now - self._started >= self.window:
            self._counts.clear()  # a new window; dropping the old keys also bounds the memory
            self._started = now
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self.limit
