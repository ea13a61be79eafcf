"""What a service process holds while it runs: settings, GeoIP, store, signer and rules."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from service.config import Settings
from service.errors import BadRequest, NotFound
from service.front.ratelimit import Limiter
from service.rules.engine import Site
from service.rules.geo import GeoDB
from service.rules.rulefiles import RuleSet
from service.tracking import moves
from service.tracking.clock import StoreClock, hour_and_day
from service.tracking.journal import Journal
from service.tracking.ledger import Ledger
from service.tracking.pools import Pools
from service.tracking.spool import Spool
from service.tracking.store import Store, until_done
from service.tracking.tokens import TokenSigner

log = logging.getLogger("swapline")
MISMATCH = ("the signing secret (SWAPLINE_SECRET, or the store's own where it is unset) is not the one other "
            "processes on this store sign with: its fingerprint in the store (sw:secret:fingerprint) differs. Each "
            "side would refuse the other's decision tokens, beacons get 401 and conversions are lost: give every "
            "replica the same SWAPLINE_SECRET; to change it on purpose, stop them all and delete "
            "sw:secret:fingerprint (docs/DEPLOY.md)")


class Refusal(NamedTuple):
    """Changes to the rules refused since the rules serving were applied."""

    at: float  # the first of them, unix seconds
    problems: tuple[str, ...]  # the latest one's, as `rules check` prints them but with file names alone
    kept: float | None = None  # when the rules serving were kept, if the service started on them


@dataclass
class Runtime:
    settings: Settings
    geo: GeoDB
    store: Store
    signer: TokenSigner
    rules: RuleSet  # replaced whole by the watcher when a valid edit lands
    pools: Pools
    ledger: Ledger
    journal: Journal
    spool: Spool
    caller_key: bytes  # keys the hashes that stand in for caller numbers and client networks at rest
    fingerprint: bytes  # of the signing secret, kept in the store (`Store.vouch`)
    clock: Callable[[], float] = field(default_factory=StoreClock)  # seconds; tests replay a day with their own
    pools_synced: bool = False  # ready only once the store has the rules' numbers
    pools_lost: asyncio.Event = field(default_factory=asyncio.Event)  # found gone from the store; `keep_pools`
    # A change to the rules directory refused, until one is applied: the rules serving are older than the files.
    rules_refused: Refusal | None = None
    # Warnings logged now and then (`now_and_then`), by reason: when one was last logged (`clock`
    # seconds) and how many came since.
    warned: dict[str, tuple[float, int]] = field(default_factory=dict)
    # Abuse limits per client network (service.front.ratelimit), as the settings say.
    decision_limit: Limiter = field(init=False)
    beacon_limit: Limiter = field(init=False)
    signin_limit: Limiter = field(init=False)

    def __post_init__(self) -> None:
        settings, prefixes, key = self.settings, self.settings.limit_prefixes, self.caller_key
        self.decision_limit = Limiter("decisions", settings.decision_rate, 60, key, prefixes)
        self.beacon_limit = Limiter("beacons", settings.beacon_rate, 60, key, prefixes)
        self.signin_limit = Limiter("sign-ins", settings.signin_attempts, 900, key, prefixes)

    async def sync_pools(self) -> None:
        """Make the store's pools those of the rules: at start, after a reload, after a loss."""
        await moves.sync(self.store, self.rules.sites.values())
        self.pools_synced = True

    def lost_pools(self, found: str) -> None:
        """The store has lost pools (`found`: which, or how it showed): `keep_pools` puts them back,
        once however many requests find them gone meanwhile."""
        if not self.pools_lost.is_set():
            log.warning("the store has lost number pools (%s): it was flushed, restarted without persistence or "
                        "failed over to an empty node; putting them back from the rules", found)
            self.pools_lost.set()

    async def vouch(self) -> None:
        """Leave the signing secret's fingerprint in the store, or say loudly that other processes
        on it sign with another secret (`swapline serve` refuses to start then, if the store answers)."""
        if not await self.store.vouch(self.fingerprint):
            log.error(MISMATCH)

    async def keep_pools(self) -> None:
        """Put lost pools back, and the secret's fingerprint lost with them: until then every
        visitor of theirs gets the overflow number."""
        while True:
            await self.pools_lost.wait()
            await until_done(self.sync_pools, "pool sync")
            await until_done(self.vouch, "secret check")
            self.pools_lost.clear()

    def now_and_then(self, reason: str, message: str, *args: object) -> None:
        """`message` in the log at most once a minute for each `reason` (a site's, or every site's),
        with how many came since: a PBX that retries, or a stranger posting made-up requests, fills
        no disk."""
        now, (logged_at, since) = self.clock(), self.warned.get(reason, (-math.inf, 0))
        if now - logged_at < 60:
            self.warned[reason] = logged_at, since + 1
            return
        self.warned[reason] = now, 0
        log.warning(message + (f" (and {since} more since the last such line)" if since else ""), *args)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def today(self, site: Site) -> str:
        """The site's day now, by its time zone: where a report's range ends unless it says."""
        return hour_and_day(self.now_ms(), site.time_zone)[1]

    def site(self, site_id: str | None) -> Site:
        if not site_id:
            raise BadRequest("missing_parameter", "the 'site' parameter is required")
        site = self.rules.sites.get(site_id)
        if site is None:
            raise NotFound("unknown_site", f"no site {site_id!r} in the rules")
        return site
