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

`POST /v1/callers/{site}/forget` erases a caller known only by their phone number: the last
digits of their calls, their hash's history of calls, and their calls in the conversion log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.requests import Request

from service.errors import BadRequest
from service.front import bodies
from service.front.auth import require_report_token
from service.front.responses import JSON
from service.integrations.calls import home_region, kept_caller, phone_text
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
MAX_BODY = 1024  # {"number": …}
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
    erased["log"] = await journal.forget(site.id, lambda entry: entry.get("visitor") == vid)
    await client.set(visits.erased(site.id, vid), 1, ex=token_days * 86_400)
    return erased


async def forget_caller(store: Store, journal: Journal, site: Site, caller: tuple[str, str | None], now_ms: int
                        ) -> dict[str, Any]:
    """Delete what the store keeps of the caller whose number's keyed hash and last digits are
    `caller` (`calls.kept_caller`): what is erased, and whom their calls were credited to.

    Their calls to the site's numbers within `calls.unique_within` of each other are known by the
    hash. Calls before those, and calls to other numbers, are tied to the caller's number by its
    last digits alone, so every such call from a number that ended alike goes too, another
    caller's among them: whose it was, nothing kept can tell."""
    await store.batcher.settle()
    calls = f"sw:{{{site.id}:calls}}:"
    history, targets = (calls + kind + caller[0] for kind in ("caller:", "target:"))
    known = {call.decode(): start for call, start in
             cast(list[tuple[bytes, float]], await store.client.zrange(history, 0, -1, withscores=True))}
    await store.client.delete(history, targets)
    before = min(known.values(), default=now_ms) - site.calls.unique_within * 1000
    credited: set[str] = set()

    def theirs(record: dict[str, Any]) -> bool:
        if record.get("call_id") in known:
            if isinstance(visitor := record.get("visitor"), str):
                credited.add(visitor)
            return True
        start = record.get("start")
        return record.get("caller_last_digits") == caller[1] and (
            record.get("kind") == "unknown" or (isinstance(start, int) and start <= before))

    changed = set(await _anonymise(store, calls + "calls", theirs, {"caller_last_digits": None}))
    gone = {f"call:{call}" for call in changed | known.keys()}
    logged = await journal.forget(site.id, lambda entry: entry.get("id") in gone)
    return {"erased": {"calls": len(changed & known.keys()), "calls_ending_alike": len(changed - known.keys()),
                       "log": logged},
            "credited_to": sorted(credited)}


async def _anonymise(store: Store, key: str, names: Callable[[dict[str, Any]], bool],
                     blanks: dict[str, Any]) -> list[str]:
    """Rewrite the JSON records of hash `key` that `names` the person erased, with `blanks` over
    them; their fields."""
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


async def forget_caller_endpoint(request: Request) -> JSON:
    """`POST /v1/callers/{site}/forget` with `{"number": "+7 916 …"}`: erase a caller. The number
    is in the body, where no access log or proxy keeps it."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request, erases=True)
    number = bodies.json_object(await bodies.read(request, MAX_BODY)).get("number")
    caller = kept_caller(runtime.caller_key, phone_text(number), home_region(site))
    if not caller[0]:
        raise BadRequest("invalid_number", "number must be the caller's phone number, as the telephony or the caller "
                                           "writes it (+7 916 555-12-34, 89165551234)")
    erased = await forget_caller(runtime.store, runtime.journal, site, caller, runtime.now_ms())
    log.info("a caller of site %r erased with its report token: %s", site.id,
             ", ".join(f"{kind} {count}" for kind, count in erased["erased"].items()))
    return JSON({"site": site.id, **erased})
