"""Number pools in the store: leases, heartbeats, attribution and pool statistics.

Each pool's keys share the hash tag `{SITE:POOL}` (one cluster slot per pool, so one big site
spreads its pools over shards); the scripts in `service/lua/` do each step atomically, so no
two processes can hand out one number twice. Times are milliseconds since the epoch.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from starlette.requests import Request

from service.front.auth import require_report_token
from service.front.responses import JSON
from service.rules.engine import Pool, Site
from service.tracking.clock import DAY_MS, hour_and_day
from service.tracking.store import Command, Script, Store

if TYPE_CHECKING:
    from service.runtime import Runtime

# Recommended size: Little's law gives the mean number of holds in the busiest hour,
# L = λ·W; arrivals are random, so add three standard deviations of a Poisson count (√L),
# the square-root staffing rule: the pool then runs out in well under 1% of moments.
SIGMAS = 3
# The scripts that lease, renew and give back numbers share how a hold is kept (release.lua).
LEASE, EXTEND, LET_GO, RECLAIM = (Script.named(name, "release") for name in ("lease", "extend", "let_go", "reclaim"))
ATTRIBUTE, NEAREST, HOLDS = Script.named("attribute"), Script.named("nearest"), Script.named("holds")


@dataclass(frozen=True, slots=True)
class PoolKeys:
    """The keys of one pool; docs/STORAGE.md says what each holds."""

    prefix: str
    numbers: str
    free: str
    held: str
    holder: str
    visitor: str
    leases: str
    seq: str
    stats: str
    clock: str
    networks: str

    @classmethod
    @functools.lru_cache(maxsize=1024)  # a few per site, wanted on every page view
    def of(cls, site: str, pool: str) -> PoolKeys:
        prefix = f"sw:{{{site}:{pool}}}:"
        names = ("numbers", "free", "held", "holder", "visitor", "leases", "seq", "stats", "clock", "networks")
        return cls(prefix, *(prefix + name for name in names))

    @property
    def holds(self) -> tuple[str, ...]:
        """The keys of the scripts that lease, renew and give back numbers, in lease.lua's order."""
        return (self.numbers, self.free, self.held, self.holder, self.visitor, self.leases, self.seq, self.stats,
                self.clock, self.networks)

    def history(self, number: str) -> str:
        return f"{self.prefix}history:{number}"

    def overflowed(self, day: str) -> str:
        return f"{self.prefix}overflowed:{day}"

    def capped(self, day: str) -> str:
        return f"{self.prefix}capped:{day}"


class Lease(NamedTuple):
    number: str | None  # None: the pool was exhausted
    status: str  # kept | new | overflow | capped | missing (the store lost the pool: `Runtime.lost_pools`)

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Lease:
        number, status = reply
        return cls(number.decode() if number else None, status.decode())


@dataclass(frozen=True, slots=True)
class PoolDay:
    """One day of a pool, on the site's clocks: when it ran short, and how short."""

    day: str
    peak_held: int
    peak_wanted: int
    overflowed_visitors: int
    capped_visitors: int


@dataclass(frozen=True, slots=True)
class PoolStats:
    pool: str
    numbers: int
    held: int
    utilisation: float
    peak_held: int  # most numbers held at once, any retained day
    peak_wanted: int  # most wanted at once: held, and visitors left waiting by an overflow
    arrivals_peak_hour: int  # new visitors who needed a number in the busiest hour
    overflowed_visitors: int  # distinct visitors who got the overflow number, none free, retained days
    capped_visitors: int  # and those who got it as their network held its share (`network_share`)
    average_hold_s: float  # how long a lease lasts, visit plus hold (Little's W)
    holds_ended: int  # of how many holds: none yet, and the average is the pool's `hold`
    recommended_size: int
    days: tuple[PoolDay, ...]  # the retained days, today first

    def as_json(self) -> dict[str, Any]:
        figures = {name: getattr(self, name) for name in self.__slots__}
        return {**figures, "days": [{name: getattr(day, name) for name in day.__slots__} for day in self.days]}


class Pools:
    def __init__(self, store: Store, retention_days: int = 30, network_share: int = 100) -> None:
        self.store = store
        self.retention_ms = retention_days * DAY_MS
        self.network_share = network_share

    async def missing(self, sites: Iterable[Site]) -> list[str]:
        """The pools (`site/pool`) whose numbers the store does not have: it lost them."""
        pools = [(site.id, pool.id) for site in sites for pool in site.pools if pool.numbers]
        if not pools:
            return []
        found = await self.store.batcher.submit(*(("EXISTS", PoolKeys.of(*pool).numbers) for pool in pools))
        return [f"{site}/{pool}" for (site, pool), exists in zip(pools, found, strict=True) if not exists]

    def lease(self, site: str, pool: Pool, vid: str, page: str, experiments: dict[str, str],
              now_ms: int, visit: str = "", network: str = "", zone: datetime.tzinfo = datetime.UTC,
              shown: str = "") -> Command:
        """The command that leases (or keeps) the visitor's number; its reply makes a `Lease`.
        `network` (a keyed hash of the client's) may hold `network_share` per cent of the pool;
        its peaks and overflows are counted by the hours and days of `zone` (the site's). A
        visitor whose hold ended gets `shown`, the number their last page showed, again if it
        is free and they held it last."""
        keys = PoolKeys.of(site, pool.id)
        hour, day = hour_and_day(now_ms, zone)
        return LEASE(
            keys.holds,
            # One argument, not six: the store's protocol costs each argument more than JSON does.
            (orjson.dumps((vid, now_ms, page, experiments, visit, network, shown)),),
            (pool.hold * 1000, self.retention_ms, keys.prefix, max(1, len(pool.numbers) * self.network_share // 100),
             hour, day),
        )

    @staticmethod
    def let_go(site: str, pool: Pool, vid: str, now_ms: int) -> Command:
        """The command that ends the visitor's hold in `pool` now: their new visit has a number
        of another pool, and a visitor holds one number at a time."""
        keys = PoolKeys.of(site, pool.id)
        return LET_GO(keys.holds, (vid, now_ms))

    async def extend(self, site: str, pool: Pool, vid: str, now_ms: int, shown: str = "") -> str | None:
        """Restart the hold of the number `vid` holds, or of `shown`, the number their page shows,
        if it is free and they held it last; the number, or None."""
        keys = PoolKeys.of(site, pool.id)
        number, = await self.store.batcher.submit(EXTEND(keys.holds, (vid, now_ms, shown),
                                                          (pool.hold * 1000, keys.prefix)))
        return number.decode() if number else None

    async def held(self, pools: list[tuple[str, Pool]], now_ms: int) -> list[int]:
        """Numbers whose hold has not ended, in each (site, pool) of `pools`: in one batch, within
        a round trip's deadline, so a store that does not answer holds nobody up for long."""
        commands = [("ZCOUNT", PoolKeys.of(site, pool.id).held, now_ms, "+inf") for site, pool in pools]
        return [int(count) for count in await self.store.batcher.submit(*commands)] if commands else []

    async def holder(self, site: str, pool: Pool, number: str, at_ms: int) -> dict[str, Any] | None:
        """The lease of `number` whose hold window contains `at_ms`, if any."""
        keys = PoolKeys.of(site, pool.id)
        record, = await self.store.batcher.submit(_attribute(keys, number, at_ms))
        return orjson.loads(record) if record else None

    async def nearest(self, site: str, pool: Pool, number: str, at_ms: int) -> dict[str, int | None]:
        """When the hold of `number` before `at_ms` ended and the one after began (unix ms, None
        for none): what a support engineer reads a call credited to nobody by (nearest.lua)."""
        keys = PoolKeys.of(site, pool.id)
        (ended, began), = await self.store.batcher.submit(
            NEAREST((keys.leases, keys.history(number)), (at_ms, number)))
        return {"last_ended": ended, "next_began": began}

    async def former_holder(self, site: Site, number: str, at_ms: int) -> tuple[Pool, dict[str, Any]] | None:
        """The pool and lease of a number the rules no longer list in that pool, whose hold window
        contains `at_ms`: a number taken out of a pool stays with its visitor until the hold ends."""
        pools = [pool for pool in site.pools if pool.numbers]
        if not pools:
            return None
        commands = [_attribute(PoolKeys.of(site.id, pool.id), number, at_ms) for pool in pools]
        records = await self.store.batcher.submit(*commands)
        return next(((pool, orjson.loads(record)) for pool, record in zip(pools, records, strict=True) if record),
                    None)

    async def holds_around(self, site: Site, number: str, at_ms: int, count: int) -> list[dict[str, Any]]:
        """The holds of `number` around `at_ms` in any of the site's pools, oldest first: the last
        `count` that began by then and the first `count` after (holds.lua), each with its pool."""
        pools = [pool for pool in site.pools if pool.numbers]
        keys = [PoolKeys.of(site.id, pool.id) for pool in pools]
        found = await self.store.batcher.submit(*(HOLDS((key.leases, key.history(number)), (at_ms, count, number))
                                                  for key in keys)) if pools else []
        holds = sorted(({**orjson.loads(record), "pool": pool.id}
                        for pool, records in zip(pools, found, strict=True) for record in records),
                       key=lambda lease: lease["f"])
        began = sum(lease["f"] <= at_ms for lease in holds)  # a number moved between pools has holds in each
        return holds[max(0, began - count):began + count]

    async def of_site(self, site: Site, now_ms: int) -> list[PoolStats]:
        """The statistics of each of the site's pools that leases numbers, by its days."""
        return [await self.stats(site.id, pool, now_ms, site.time_zone) for pool in site.pools if pool.numbers]

    async def stats(self, site: str, pool: Pool, now_ms: int, zone: datetime.tzinfo = datetime.UTC) -> PoolStats:
        keys = PoolKeys.of(site, pool.id)
        days = [hour_and_day(now_ms - i * DAY_MS, zone)[1] for i in range(self.retention_ms // DAY_MS)]
        pipe = self.store.client.pipeline(transaction=False)
        pipe.hgetall(keys.stats)
        pipe.zcount(keys.held, now_ms, "+inf")
        for day in days:
            pipe.scard(keys.overflowed(day))
            pipe.scard(keys.capped(day))
        raw, held, *turned = await pipe.execute()
        stats = {bytes(name).decode(): int(value) for name, value in raw.items()}
        arrivals = max((v for k, v in stats.items() if k.startswith("arrivals:")), default=0)
        released = stats.get("released", 0)
        average_hold = stats["held_ms"] / released / 1000 if released else float(pool.hold)
        demand = arrivals / 3600 * average_hold  # Little's law: L = λ·W in the busiest hour
        # 'wanted' is recorded at overflows only: held counts as wanted too.
        by_day = tuple(PoolDay(day, held_most := stats.get(f"peak:{day}", 0),
                               max(held_most, stats.get(f"wanted:{day}", 0)), overflowed, capped)
                       for day, overflowed, capped in zip(days, turned[::2], turned[1::2], strict=True))
        wanted = max((day.peak_wanted for day in by_day), default=0)
        return PoolStats(
            pool=pool.id,
            numbers=len(pool.numbers),
            held=held,
            utilisation=round(held / len(pool.numbers), 3) if pool.numbers else 0.0,
            peak_held=max((day.peak_held for day in by_day), default=0),
            peak_wanted=wanted,
            arrivals_peak_hour=arrivals,
            overflowed_visitors=sum(turned[::2]),
            capped_visitors=sum(turned[1::2]),
            average_hold_s=round(average_hold, 1),
            holds_ended=released,
            recommended_size=max(math.ceil(demand + SIGMAS * math.sqrt(demand)), wanted, 1),
            days=by_day,
        )


def slack_ms(at_ms: int) -> int:
    """How much later than `at_ms` a call may have started: a start given to the second (most
    PBXs give no more) stands for any moment of that second."""
    return 0 if at_ms % 1000 else 999


def _attribute(keys: PoolKeys, number: str, at_ms: int) -> Command:
    """Who held `number` at `at_ms`, or `slack_ms` later (attribute.lua)."""
    return ATTRIBUTE((keys.leases, keys.history(number)), (at_ms, slack_ms(at_ms), number))


async def pools_endpoint(request: Request) -> JSON:
    """`GET /v1/pools/{site}`: utilisation, peaks, overflow and recommended size per pool."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    stats = await runtime.pools.of_site(site, runtime.now_ms())
    return JSON({"site": site.id, "pools": [s.as_json() for s in stats]})
