"""Retention: how long the store keeps each kind of record, and the daily job that enforces it.

Records about one visitor (their assignments, conversion and overflow marks) go once the
attribution window after their first exposure has passed; the daily counters the reports read
stay for the report window, and so do call records; lease history and pool statistics stay for
the lease window, the call and conversion log for the log window. Keys that are kept for a day
or two, or per caller, and the spans of the ledger's counts expire by themselves
(docs/STORAGE.md has the table).

Most of those records are fields of hashes, which a TTL cannot reach, so once a day one process
(whichever takes the store's lock) walks the `sw:` keys a slice at a time and deletes what is
older than its window. Every record names the day it belongs to (or carries a time), which is
all the job reads: a table maps each key family to that reading and to its window.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from service.config import Settings
from service.tracking.clock import DAY_MS, hour_and_day
from service.tracking.pools import RECLAIM, PoolKeys
from service.tracking.store import Store, repeat

log = logging.getLogger("swapline")
EVERY = 3600.0  # seconds between looks at whether a day's compaction is due
LOCK = "sw:compacted"  # set by the process that compacts, for a day: the others leave it alone
SLICE = 1000  # fields or keys read at a time
# Records go by the days of their site's time zone: a day is past its window once it has ended
# even where it ends last.
WESTMOST = datetime.timezone(datetime.timedelta(hours=-12))


@dataclass(frozen=True, slots=True)
class Windows:
    """Days each kind of record is kept: SWAPLINE_ATTRIBUTION_DAYS, _REPORT_DAYS, _LEASE_RETENTION_DAYS,
    _LOG_DAYS, and _TOKEN_DAYS for event ids (a beacon repeated while its token counts is a retry)."""

    visitor: int = 30  # a visitor's records, after their first exposure
    report: int = 400  # daily counters and call records
    lease: int = 30  # lease history and pool statistics
    log: int = 90  # the call and conversion log (service.tracking.journal)
    retry: int = 3  # event ids


def _field_day(field: bytes, value: bytes) -> str:
    return field.decode()[:10]  # "day"


def _value_day(field: bytes, value: bytes) -> str:
    return value.decode().rpartition("|")[2]  # "variant|page|day", or the day alone


def _stat_day(field: bytes, value: bytes) -> str:
    moment = field.decode().partition(":")[2]
    return moment[:10] if moment else "9999"  # totals without a moment stay


def _call_day(field: bytes, value: bytes) -> str:
    record = orjson.loads(value)
    start = record.get("start") if isinstance(record, dict) else None
    return hour_and_day(start)[1] if isinstance(start, int) else "9999"


# Key family (the key's last part) -> how a hash field tells its day, and which window keeps it.
HASHES: dict[str, tuple[Callable[[bytes, bytes], str], str]] = {
    "assign": (_value_day, "visitor"),
    "converted": (_value_day, "visitor"),
    "overflowed": (_value_day, "visitor"),
    "bots": (_field_day, "report"),
    "calls": (_call_day, "report"),
    "stats": (_stat_day, "lease"),
}


class Retention:
    def __init__(self, store: Store, windows: Windows) -> None:
        self.store = store
        self.windows = windows

    @classmethod
    def of(cls, store: Store, settings: Settings) -> Retention:
        return cls(store, Windows(settings.attribution_days, settings.report_days, settings.lease_retention_days,
                                  settings.log_days, settings.token_days))

    async def compact(self, now_ms: int) -> int:
        """Delete every record older than its window, as of `now_ms`; returns how many went."""
        cutoffs = {name: hour_and_day(now_ms - days * DAY_MS, WESTMOST)[1]
                   for name, days in (("visitor", self.windows.visitor), ("report", self.windows.report),
                                      ("lease", self.windows.lease))}
        deleted = 0
        # Holds that ended go back to their pools first (the holders' leases may then go too).
        async for raw in self.store.client.scan_iter(match="sw:{*}:held", count=SLICE):
            deleted += await self._reclaim(raw.decode(), now_ms)
        async for raw in self.store.client.scan_iter(match="sw:{*}:*", count=SLICE):
            key = raw.decode()
            family = key.rpartition(":")[2] if "}:history:" not in key else "history"
            if family == "history":
                deleted += await self._history(key, now_ms - self.windows.lease * DAY_MS)
            elif family == "seen":  # event ids: trimmed by each conversion, and here once they stop
                oldest = now_ms - self.windows.retry * DAY_MS
                deleted += await self.store.client.zremrangebyscore(key, "-inf", f"({oldest}")
            elif family in ("entries", "logged"):  # the log: trimmed by each entry, and here once they stop
                deleted += await self._log(key, family, now_ms - self.windows.log * DAY_MS)
            elif family in HASHES:
                day_of, window = HASHES[family]
                deleted += await self._hash(key, day_of, cutoffs[window])
            await asyncio.sleep(0)  # one key at a time: requests go first
        return deleted

    async def _hash(self, key: str, day_of: Callable[[bytes, bytes], str], cutoff: str) -> int:
        client, deleted, cursor = self.store.client, 0, 0
        while True:
            cursor, fields = await client.hscan(key, cursor, count=SLICE)
            assert isinstance(fields, dict)
            old = [name for name, value in fields.items() if _older(day_of, name, value, cutoff)]
            if old:
                deleted += await client.hdel(key, *old)
            if cursor == 0:
                return deleted

    async def _log(self, key: str, family: str, cutoff_ms: int) -> int:
        client = self.store.client
        if family == "logged":  # the conversions' ids, and their bodies beside the stream
            deleted, bodies = 0, key.removesuffix("logged") + "bodies"
            while old := await client.zrangebyscore(key, "-inf", f"({cutoff_ms}", start=0, num=SLICE):
                await client.hdel(bodies, *old)
                deleted += int(await client.zrem(key, *old))
            return deleted
        deleted = int(await client.xtrim(key, minid=cutoff_ms))
        if not await client.xlen(key):  # an empty stream stays until deleted
            await client.delete(key)
        return deleted

    async def _reclaim(self, key: str, now_ms: int) -> int:
        """Give back the numbers of a pool (its `held` key) whose holds have ended, as its next
        lease would: in a pool nobody comes to, the last holders are named nowhere but in
        their lease records, which go with the lease window."""
        keys, released = PoolKeys.of(*key.partition("{")[2].partition("}")[0].split(":", 1)), 0
        while count := (await self.store.batcher.submit(RECLAIM(keys.holds, (now_ms,))))[0]:  # a batch a call
            released += count
        return int(released)

    async def _history(self, key: str, cutoff_ms: int) -> int:
        """A number's lease history, and the leases it names, past the lease window; never the
        lease of the number's holder (a hold the pool has not given back yet)."""
        client = self.store.client
        holder = await client.hget(key.partition("history:")[0] + "holder", key.partition("}:history:")[2])
        held_since = await client.zscore(key, holder) if holder else None
        if held_since is not None:
            cutoff_ms = min(cutoff_ms, int(held_since))
        old = await client.zrangebyscore(key, "-inf", f"({cutoff_ms}", start=0, num=SLICE)
        deleted = 0
        while old:
            leases = key.partition("}:history:")[0] + "}:leases"
            deleted += await client.hdel(leases, *old)
            await client.zrem(key, *old)
            old = await client.zrangebyscore(key, "-inf", f"({cutoff_ms}", start=0, num=SLICE)
        return deleted

    async def keep_compacting(self, now_ms: Callable[[], int]) -> None:
        """Compact once a day, in whichever process takes the day's lock first; the first look
        is an hour after the start, so a process that starts and stops often adds no work."""
        async def compact_if_due() -> None:
            if await self.store.client.set(LOCK, 1, nx=True, ex=86_400 - int(EVERY)):
                log.info("retention: %d old records deleted", await self.compact(now_ms()))

        await repeat(EVERY, compact_if_due, "retention")


def _older(day_of: Callable[[bytes, bytes], str], name: Any, value: Any, cutoff: str) -> bool:
    """Whether a record's day is before the cutoff; a record that names no day is kept."""
    try:
        day = day_of(name, value)
    except (ValueError, OverflowError, OSError):  # undecodable, or a moment no calendar has
        return False
    return len(day) == 10 and day[4] == "-" and day < cutoff
