"""What a service process holds while it runs: settings, GeoIP, store, signer and rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.config import Settings
from service.engine import Site
from service.errors import BadRequest, NotFound
from service.geo import GeoDB
from service.ledger import Ledger
from service.pools import Pools
from service.ratelimit import RateLimit
from service.rulefiles import RuleSet
from service.spool import Spool
from service.store import Store
from service.tokens import TokenSigner


@dataclass
class Runtime:
    settings: Settings
    geo: GeoDB
    store: Store
    signer: TokenSigner
    rules: RuleSet  # replaced whole by the watcher when a valid edit lands
    pools: Pools
    ledger: Ledger
    spool: Spool
    caller_key: bytes  # keys the hash that stands in for caller numbers at rest
    clock: Callable[[], float] = field(default=time.time)  # seconds; tests replay a day with their own
    pools_synced: bool = False  # ready only once the store has the rules' numbers
    beacon_limit: RateLimit = field(default_factory=lambda: RateLimit(600))  # per client IP and minute

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def site(self, site_id: str | None) -> Site:
        if not site_id:
            raise BadRequest("missing_parameter", "the 'site' parameter is required")
        site = self.rules.sites.get(site_id)
        if site is None:
            raise NotFound("unknown_site", f"no site {site_id!r} in the rules")
        return site
