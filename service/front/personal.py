"""Personal data: what the store keeps of a visitor, and erasing it (152-FZ, GDPR), on the
operator's request.

`GET /v1/visitors/{site}/{vid}` (the site's tokens; `swapline show`) says what the store keeps
of one visitor, for their right of access: their visits with the pages seen, the variants they
were shown, the numbers they held, their conversions and the calls credited to them.

`DELETE /v1/visitors/{site}/{vid}` (the site's report token; `swapline forget`) deletes it:
their visits and journeys, their assignments and conversion marks in every experiment, their id
and client network in leases, their id and number (its last digits, and its hash's history of
calls) in the records of calls credited to them, and their entries in the conversion log
(`service.tracking.journal`). Counts already added up (visitors per cohort, conversions per day,
visitors turned to a pool's overflow number) stay: they name nobody; so do their visits in the
reports' tables of visits, under a visitor nobody knows. A beacon sent afterwards with a token of
one of their page views (`SWAPLINE_TOKEN_DAYS`) is logged nowhere (`visits.erased`).

A caller known only by their phone number asks the same: `POST /v1/callers/{site}` says what is
kept of them, `POST /v1/callers/{site}/forget` erases it: the last digits of their calls, their
hash's history of calls, and their calls in the conversion log.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.requests import Request

from service.errors import BadRequest
from service.front import bodies
from service.front.auth import require_report_token
from service.front.responses import JSON
from service.integrations.calls import calls_prefix, home_region, kept_caller, phone_text
from service.rules.engine import Site
from service.tracking import counters, sites, visits
from service.tracking.journal import CALL_KINDS, Journal
from service.tracking.ledger import SITE, LedgerKeys
from service.tracking.pools import PoolKeys
from service.tracking.store import Script, Store
from service.tracking.visitors import valid_vid

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger("swapline")
# What an erasure blanks in the call records, and in the log's calls, that it keeps counted: the
# caller's digits, and the earlier call of theirs a call back names.
CALLER_BLANKS = {"caller_last_digits": None, "earlier_call": None}
VISITOR_BLANKS = {"visitor": None, "visit": None, **CALLER_BLANKS}
SLICE = 1000
MAX_BODY = 1024  # {"number": …}
FORGET_LEASE = Script.named("forget_lease")


async def forget(store: Store, journal: Journal, site: Site, vid: str, token_days: int) -> dict[str, int]:
    """Delete what the store keeps of `vid` on `site`; how many records of each kind went. The
    experiments and pools they were in may have left the rules since: the site's keys say which.
    This process's deferred writes (the latest page of a journey) go first, to be erased too."""
    await store.batcher.settle()
    client, erased = store.client, {"visits": 0, "assignments": 0, "leases": 0, "calls": 0, "log": 0}
    kept = await _site_keys(store, site.id)
    erased["tallied"] = await counters.forget(store, _dimension_keys(site.id, kept, b":visits"), vid)
    visit_keys = await _visit_keys(store, site.id, vid)
    visit_ids = set(_visits_of(visit_keys))
    erased["visits"] = len(visit_ids)
    if visit_keys:
        await client.delete(*visit_keys)
    for _, keys in _ledgers(site.id, kept):
        erased["assignments"] += await client.hdel(keys.assign, vid)
        await client.hdel(keys.overflowed, vid)
        await _hdel_matching(store, keys.converted, f"*|{vid}")
    for _, held, names in _pools(site.id, kept):
        for name in names:  # the days' visitors turned to the overflow number: counted still, as nobody known
            if name.startswith((b"overflowed:", b"capped:")) and await client.srem(held.prefix + name.decode(), vid):
                await client.sadd(held.prefix + name.decode(), "erased-" + secrets.token_hex(8))
        await client.hdel(held.visitor, vid)  # the number's hold runs out, held by nobody known
        await client.zrem(held.prefix + "waiting", vid)
        for lease, _ in await _records(store, held.leases, lambda lease: lease.get("v") == vid):
            # with their client network's hash, which a held lease still counts
            (forgotten,) = await store.batcher.submit(
                FORGET_LEASE((held.holder, held.leases, held.networks), (lease,), None))
            erased["leases"] += forgotten
    calls = calls_prefix(site)
    theirs = await _records(store, calls + "calls", lambda call: call.get("visitor") == vid)
    await _blank(store, calls + "calls", theirs, VISITOR_BLANKS)
    erased["calls"] = len(theirs)
    if theirs:  # and their number's history (`call.lua`): a call of theirs no longer makes the next one repeated
        for name in kept.get(":calls", []):
            if name.startswith((b"caller:", b"target:")):
                await client.zrem(calls + name.decode(), *(call_id for call_id, _ in theirs))

    def logged_theirs(entry: dict[str, Any]) -> bool:
        if entry.get("visitor") != vid:
            return False
        if isinstance(visit := entry.get("visit"), dict) and isinstance(visit.get("id"), str):
            visit_ids.add(visit["id"])
        return True

    erased["log"] = await journal.erase(site.id, logged_theirs, _kept(VISITOR_BLANKS))
    # Which of the days' visits converted, by kind, so that a visit counts as converted once.
    for key in _dimension_keys(site.id, kept, b":converted"):
        for visit in visit_ids:
            await _hdel_matching(store, key, f"{visit}|*")
    await client.set(visits.erased(site.id, vid), 1, ex=token_days * 86_400)
    return erased


async def show(store: Store, journal: Journal, site: Site, vid: str) -> dict[str, Any]:
    """What the store keeps of `vid` on `site`: their visits, each with the pages seen, the
    variants they were shown, the numbers they held, their conversions and the calls credited
    to them."""
    await store.batcher.settle()
    kept = await _site_keys(store, site.id)
    found: dict[str, Any] = {"visits": [], "experiments": {}, "numbers": [], "conversions": [], "calls": []}
    for visit in _visits_of(await _visit_keys(store, site.id, vid)):
        if journey := visits.journey_of(await store.batcher.submit(*visits.reads(site.id, vid, visit)), sys.maxsize):
            found["visits"].append(journey)
    found["visits"].sort(key=lambda visit: visit.get("started") or 0)
    for experiment, keys in _ledgers(site.id, kept):
        assigned = cast(bytes | None, await store.client.hget(keys.assign, vid))
        if assigned and experiment != SITE:  # "variant|page|day" (expose.lua)
            variant, _, first = assigned.decode().partition("|")
            page, _, day = first.partition("|")
            found["experiments"][experiment] = {"variant": variant, "page": page, "day": day}
    for pool, held, _ in _pools(site.id, kept):
        for _, lease in await _records(store, held.leases, lambda lease: lease.get("v") == vid):
            found["numbers"].append({"pool": pool, "number": lease.get("n"), "from": lease.get("f"),
                                     "until": lease.get("u"), "page": lease.get("p"),
                                     "network_hash": lease.get("a") or None})
    found["numbers"].sort(key=lambda held: held["from"] or 0)
    logged = await journal.naming(site.id, lambda entry: entry.get("visitor") == vid)
    found["conversions"] = [entry for entry in logged.values() if entry.get("kind") not in CALL_KINDS]
    found["calls"] = _by_start(await _records(store, calls_prefix(site) + "calls",
                                              lambda call: call.get("visitor") == vid))
    return found


async def _visit_keys(store: Store, site: str, vid: str) -> list[bytes]:
    """The keys of the visitor's visits: each one's record and pages, and its page views' conversions."""
    return [key async for key in store.client.scan_iter(match=f"{visits.visitor_prefix(site, vid)}*", count=SLICE)]


def _visits_of(keys: list[bytes]) -> list[str]:
    return [key.rpartition(b":")[2].decode() for key in keys if b"}:visit:" in key]


def _ledgers(site: str, kept: dict[str, list[bytes]]) -> list[tuple[str, LedgerKeys]]:
    """The experiments the site's keys name, whether the rules have them still or not, with their ledgers."""
    return [(tag[1:], LedgerKeys.of(site, tag[1:])) for tag in kept if tag[0] == "/"]


def _pools(site: str, kept: dict[str, list[bytes]]) -> list[tuple[str, PoolKeys, list[bytes]]]:
    """The pools the site's keys name, whether the rules have them still or not, with the names of
    their keys. Any `:` tag may be a pool's, `calls` and `log` too (a pool may have either id):
    where none is, nothing is found."""
    return [(tag[1:], PoolKeys.of(site, tag[1:]), names) for tag, names in kept.items() if tag[0] == ":"]


def _dimension_keys(site: str, kept: dict[str, list[bytes]], ending: bytes) -> list[str]:
    """The keys of the reports by dimension (`service.tracking.counters`) of every day that end so:
    the days' tables of visits (`:visits`), and which of their visits converted (`:converted`)."""
    return [f"sw:{{{site}:log}}:{name.decode()}" for name in kept.get(":log", [])
            if name.startswith(b"dims:") and name.endswith(ending)]


async def _site_keys(store: Store, site: str) -> dict[str, list[bytes]]:
    """The names of the site's keys but its visitors', by what follows the site's id in their
    tag (`service.tracking.sites`): `{"/cta": [b"assign", …], ":main": [b"leases",
    b"overflowed:2026-12-04", …], ":calls": [b"calls", b"caller:…"], ":log": […]}`."""
    mine, found = sites.tag_of(site), dict[str, list[bytes]]()
    async for key in store.client.scan_iter(match=f"sw:{{{site}[/:]*", count=SLICE):
        if tagged := mine.match(key):
            found.setdefault(tagged[1].decode(), []).append(key[tagged.end() + 1:])
    return found


async def _hdel_matching(store: Store, key: str, match: str) -> None:
    if fields := [name async for name, _ in store.client.hscan_iter(key, match=match, count=SLICE)]:
        await store.client.hdel(key, *fields)


async def forget_caller(store: Store, journal: Journal, site: Site, caller: tuple[str, str | None], now_ms: int
                        ) -> dict[str, Any]:
    """Delete what the store keeps of the caller whose number's keyed hash and last digits are
    `caller` (`calls.kept_caller`): what is erased, and whom their calls were credited to."""
    await store.batcher.settle()
    theirs, alike = await _calls_of(store, site, caller, now_ms)
    prefix = calls_prefix(site)
    await store.client.delete(*(prefix + kind + caller[0] for kind in ("caller:", "target:")))
    await _blank(store, prefix + "calls", [*theirs, *alike], CALLER_BLANKS)
    gone = {f"call:{call_id}" for call_id, _ in (*theirs, *alike)}
    logged = await journal.erase(site.id, lambda entry: entry.get("id") in gone, _kept(CALLER_BLANKS))
    return {"erased": {"calls": len(theirs), "calls_ending_alike": len(alike), "log": logged},
            "credited_to": sorted({visitor for _, call in theirs if isinstance(visitor := call.get("visitor"), str)})}


async def show_caller(store: Store, site: Site, caller: tuple[str, str | None], now_ms: int) -> dict[str, Any]:
    """What the store keeps of the caller `caller` (`forget_caller`): their calls, and the calls
    that may be theirs, which only the last digits tie to them."""
    await store.batcher.settle()
    theirs, alike = await _calls_of(store, site, caller, now_ms)
    return {"calls": _by_start(theirs), "calls_ending_alike": _by_start(alike)}


async def _calls_of(store: Store, site: Site, caller: tuple[str, str | None], now_ms: int
                    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """The records of the calls the caller's number's history names, and of the calls that only
    the number's last digits tie to the caller, with their ids.

    Their calls to the site's numbers within `calls.unique_within` of each other are known by the
    hash. Calls before those, and calls to other numbers, are tied to the caller's number by its
    last digits alone, so every such call from a number that ended alike may be theirs, unless
    another caller's history names it."""
    prefix, own = calls_prefix(site), f"caller:{caller[0]}".encode()
    known: dict[str, float] = {}
    others: set[str] = set()  # the calls other callers' histories name: whose those are is known
    for name in (await _site_keys(store, site.id)).get(":calls", []):
        if name.startswith(b"caller:"):
            history = cast(list[tuple[bytes, float]],
                           await store.client.zrange(prefix + name.decode(), 0, -1, withscores=True))
            named = {call.decode(): start for call, start in history}
            if name == own:
                known = named
            else:
                others.update(named)
    before = min(known.values(), default=now_ms) - site.calls.unique_within * 1000

    def maybe_theirs(record: dict[str, Any]) -> bool:
        start, call_id = record.get("start"), record.get("call_id")
        return call_id in known or (record.get("caller_last_digits") == caller[1] and call_id not in others and (
            record.get("kind") == "unknown" or (isinstance(start, int) and start <= before)))

    found = await _records(store, prefix + "calls", maybe_theirs)
    return [call for call in found if call[0] in known], [call for call in found if call[0] not in known]


def _by_start(calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return sorted((record for _, record in calls), key=lambda record: record.get("start") or 0)


async def _records(store: Store, key: str, names: Callable[[dict[str, Any]], bool]
                   ) -> list[tuple[str, dict[str, Any]]]:
    """The JSON records of hash `key` that `names` a person in, with their fields."""
    found = []
    async for field, raw in store.client.hscan_iter(key, count=SLICE):
        record = orjson.loads(raw)
        if isinstance(record, dict) and names(record):
            found.append((field.decode(), record))
    return found


async def _blank(store: Store, key: str, records: list[tuple[str, dict[str, Any]]], blanks: dict[str, Any]) -> None:
    """Rewrite `records` of hash `key` (`_records`) with `blanks` over them."""
    for field, record in records:
        await store.client.hset(key, field, orjson.dumps({**record, **blanks}))


def _kept(blanks: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """How an erased person's conversion stays in the log (`Journal.erase`): a call, counted still,
    with `blanks` over its entry (the visitor and visit) and its call (the caller's digits), as
    over its record; a form, a tel: tap or a goal was theirs alone, and goes."""
    def kept(entry: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(call := entry.get("call"), dict):
            return None
        return {**entry, **{name: value for name, value in blanks.items() if name in entry},
                "call": {**call, **{name: value for name, value in blanks.items() if name in call}}}
    return kept


async def visitor_endpoint(request: Request) -> JSON:
    """`GET /v1/visitors/{site}/{vid}`: what the store keeps of a visitor; `DELETE`: erase it."""
    runtime: Runtime = request.app.state.runtime
    site, erases = runtime.site(request.path_params["site"]), request.method == "DELETE"
    await require_report_token(runtime, site, request, erases=erases)
    vid = cast(str, request.path_params["vid"])
    if not valid_vid(vid):
        raise BadRequest("invalid_vid", "not a visitor id: letters, digits, _ and - (as the snippet makes them)")
    if not erases:
        return JSON({"site": site.id, "vid": vid, "time_zone": str(site.time_zone),
                     **await show(runtime.store, runtime.journal, site, vid)})
    erased = await forget(runtime.store, runtime.journal, site, vid, runtime.settings.token_days)
    # Whoever holds the report token may erase: the operator reads that they did, not whom.
    log.info("a visitor of site %r erased with its report token: %s", site.id,
             ", ".join(f"{kind} {count}" for kind, count in erased.items()))
    return JSON({"site": site.id, "vid": vid, "erased": erased})


async def show_caller_endpoint(request: Request) -> JSON:
    """`POST /v1/callers/{site}` with `{"number": "+7 916 …"}`: what the store keeps of a caller."""
    runtime, site, caller = await _caller(request, erases=False)
    return JSON({"site": site.id, "time_zone": str(site.time_zone),
                 **await show_caller(runtime.store, site, caller, runtime.now_ms())})


async def forget_caller_endpoint(request: Request) -> JSON:
    """`POST /v1/callers/{site}/forget` with `{"number": "+7 916 …"}`: erase a caller."""
    runtime, site, caller = await _caller(request, erases=True)
    erased = await forget_caller(runtime.store, runtime.journal, site, caller, runtime.now_ms())
    log.info("a caller of site %r erased with its report token: %s", site.id,
             ", ".join(f"{kind} {count}" for kind, count in erased["erased"].items()))
    return JSON({"site": site.id, **erased})


async def _caller(request: Request, erases: bool) -> tuple[Runtime, Site, tuple[str, str | None]]:
    """The site and what is kept of the caller's number a request names. The number is in the
    body, where no access log or proxy keeps it."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request, erases=erases)
    number = bodies.json_object(await bodies.read(request, MAX_BODY)).get("number")
    caller = kept_caller(runtime.caller_key, phone_text(number), home_region(site))
    if not caller[0]:
        raise BadRequest("invalid_number", "number must be the caller's phone number, as the telephony or the caller "
                                           "writes it (+7 916 555-12-34, 89165551234)")
    return runtime, site, caller
