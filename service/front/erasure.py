"""Erasure: a visitor's right to be forgotten (152-FZ, GDPR), on the operator's request.

`DELETE /v1/visitors/{site}/{vid}` (the site's report token; `swapline forget`) deletes what
the store keeps of one visitor: their visits and journeys, their assignments and conversion
marks in every experiment, their id and client network in leases, their id and number (its
last digits, and its hash's history of calls) in the records of calls credited to them, and
their entries in the conversion log (`service.tracking.journal`). Counts already added up
(visitors per cohort, conversions per day, visitors turned to a pool's overflow number) stay:
they name nobody; so do their visits in the reports' tables of visits, under a visitor nobody
knows. A beacon sent afterwards with a token of one of their page views (`SWAPLINE_TOKEN_DAYS`)
is logged nowhere (`visits.erased`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.requests import Request

from service.errors import BadRequest
from service.front.auth import require_report_token
from service.front.responses import JSON
from service.rules.engine import Site
from service.tracking import counters, visits
from service.tracking.journal import Journal
from service.tracking.ledger import SITE, LedgerKeys
from service.tracking.pools import PoolKeys
from service.tracking.store import Script, Store
from service.tracking.visitors import valid_vid

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger("swapline")
SLICE = 1000
FORGET_LEASE = Script.named("forget_lease")


async def forget(store: Store, journal: Journal, site: Site, vid: str, token_days: int) -> dict[str, int]:
    """Delete what the store keeps of `vid` on `site`; how many records of each kind went.
    This process's deferred writes (the latest page of a journey) go first, to be erased too."""
    await store.batcher.settle()
    client, erased = store.client, {"visits": 0, "assignments": 0, "leases": 0, "calls": 0, "log": 0}
    erased["tallied"] = await counters.forget(store, site.id, vid)
    visit_keys = [key async for key in client.scan_iter(match=f"{visits.visitor_prefix(site.id, vid)}*", count=SLICE)]
    for key in visit_keys:
        erased["visits"] += await client.delete(key)
    for experiment in (SITE, *site.experiment_ids):
        keys = LedgerKeys.of(site.id, experiment)
        erased["assignments"] += await client.hdel(keys.assign, vid)
        await client.hdel(keys.overflowed, vid)
        marks = [name async for name, _ in client.hscan_iter(keys.converted, match=f"*|{vid}", count=SLICE)]
        if marks:
            await client.hdel(keys.converted, *marks)
    for pool in site.pools:
        held = PoolKeys.of(site.id, pool.id)
        turned = [key for match in (held.overflowed("*"), held.capped("*"))
                  async for key in client.scan_iter(match=match, count=SLICE)]
        for key in turned:  # the days' visitors turned to the overflow number: counted still, as nobody known
            if await client.srem(key, vid):
                await client.sadd(key, "erased-" + secrets.token_hex(8))
        if pool.numbers:
            await client.hdel(held.visitor, vid)  # the number's hold runs out, held by nobody known
            theirs = [lease async for lease, raw in client.hscan_iter(held.leases, count=SLICE)
                      if orjson.loads(raw).get("v") == vid]
            for lease in theirs:  # with their client network's hash, which a held lease still counts
                (forgotten,) = await store.batcher.submit(
                    FORGET_LEASE((held.holder, held.leases, held.networks), (lease,), None))
                erased["leases"] += forgotten
    calls = f"sw:{{{site.id}:calls}}:"
    theirs = await _anonymise(store, calls + "calls", lambda r: r.get("visitor") == vid,
                              {"visitor": None, "visit": None, "caller_last_digits": None})
    erased["calls"] = len(theirs)
    if theirs:  # and their number's history (`call.lua`): a call of theirs no longer makes the next one repeated
        histories = [key for match in (calls + "caller:*", calls + "target:*")
                     async for key in client.scan_iter(match=match, count=SLICE)]
        for key in histories:
            await client.zrem(key, *theirs)
    erased["log"] = await journal.forget(site.id, vid)
    await client.set(visits.erased(site.id, vid), 1, ex=token_days * 86_400)
    return erased


async def _anonymise(store: Store, key: str, names: Callable[[dict[str, Any]], bool],
                     blanks: dict[str, Any]) -> list[str]:
    """Rewrite the JSON records of hash `key` that `names` the visitor, with `blanks` over them;
    their fields."""
    changed = []
    async for field, raw in store.client.hscan_iter(key, count=SLICE):
        record = orjson.loads(raw)
        if isinstance(record, dict) and names(record):
            await store.client.hset(key, field, orjson.dumps({**record, **blanks}))
            changed.append(field.decode())
    return changed


async def forget_endpoint(request: Request) -> JSON:
    """`DELETE /v1/visitors/{site}/{vid}`: erase a visitor."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request, erases=True)
    vid = cast(str, request.path_params["vid"])
    if not valid_vid(vid):
        raise BadRequest("invalid_vid", "not a visitor id: letters, digits, _ and - (as the snippet makes them)")
    erased = await forget(runtime.store, runtime.journal, site, vid, runtime.settings.token_days)
    # Whoever holds the report token may erase: the operator reads that they did, not whom.
    log.info("a visitor of site %r erased with its report token: %s", site.id,
             ", ".join(f"{kind} {count}" for kind, count in erased.items()))
    return JSON({"site": site.id, "vid": vid, "erased": erased})
