"""A site's data as a whole: which keys are a site's, erasing them all, and the sites the store knows.

Every key of a site carries the site id in its hash tag, then one separator and one name
(docs/STORAGE.md): `{SITE/EXPERIMENT}` a ledger (`_site`: the whole site's), `{SITE:POOL}` a
number pool, `{SITE:calls}` the call records, `{SITE:log}` the call and conversion log with what
hangs off it (webhooks' consumer groups inside the stream, exports' cursors, the reports by
dimension), `{SITE|VID}` a visitor's visits. That name holds no separator itself, so a key is
one site's exactly: `sw:{shop:log}:entries` is `shop`'s and never `shop-msk`'s, and a tag such
as `{shop/b:pool}` or `{shop/b/exp}` (a site `shop/b`, were ids allowed a slash) is not `shop`'s.

`swapline sites erase SITE` deletes them all for a client who has left: a slice of the key space
at a time (`SCAN` on every primary of a cluster), `UNLINK`ed in batches, so the store goes on
serving meanwhile.

The store also keeps the ids of the sites in the rules as processes last loaded them
(`sw:sites`). A site new to it whose data the store holds already is an id given again, perhaps
to another client, whose report token would then read the first client's history: the process
that adds it logs so, with the command that erases it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Collection
from typing import Any, cast

from service.tracking.journal import key as log_key
from service.tracking.ledger import SITE, LedgerKeys
from service.tracking.store import Command, Store

log = logging.getLogger("swapline")
KNOWN = "sw:sites"  # set: the sites of the rules as processes last loaded them
SLICE = 1000  # keys scanned, and unlinked, at a time; commands sent at a time
# What follows the site id in a tag → the kind of data an erasure names. A pool whose id is
# `calls` or `log` shares their tag (and its slot), and is counted with them.
KINDS = {"/": "ledgers", ":": "pools", "|": "visits", ":calls": "calls", ":log": "log"}


def tag_of(site: str) -> re.Pattern[bytes]:
    """Matches the keys of `site`, an id as the rules write them (no separator, nothing a SCAN
    pattern reads as a wildcard); group 1 is what follows the id in the tag."""
    return re.compile(rb"sw:\{" + re.escape(site.encode()) + rb"([/:|][^/:|}]+)\}")


def _kind(rest: bytes) -> str:
    name = rest.decode()
    return KINDS.get(name) or KINDS[name[0]]


async def served(store: Store, site: str) -> bool:
    """Whether `site` is among the sites the processes last loaded: rules elsewhere than the
    caller's may still serve it, and an erasure would take a live client's data."""
    return bool(await store.client.sismember(KNOWN, site))


async def erase(store: Store, site: str) -> Counter[str]:
    """Delete every key of `site`, and its place among the known sites; how many keys of each
    kind (`KINDS`) went."""
    client, mine = store.client, tag_of(site)
    erased: Counter[str] = Counter()
    waiting: dict[str, list[bytes]] = {}  # by kind: UNLINK says how many it deleted, a key a SCAN repeats once
    async for key in client.scan_iter(match=f"sw:{{{site}[/:|]*", count=SLICE):
        if found := mine.match(key):
            kind = _kind(found[1])
            batch = waiting.setdefault(kind, [])
            batch.append(key)
            if len(batch) == SLICE:
                erased[kind] += await client.unlink(*batch)
                batch.clear()
    for kind, batch in waiting.items():
        if batch:
            erased[kind] += await client.unlink(*batch)
    await client.srem(KNOWN, site)
    return Counter({kind: erased[kind] for kind in dict.fromkeys(KINDS.values()) if erased[kind]})


def _holds_data(site: str) -> list[Command]:
    """Commands whose replies add up to more than 0 if the store holds data of `site`: visitors
    exposed (until the attribution window), bots counted, the log (calls and conversions of the
    log window), call records (the report window)."""
    whole = LedgerKeys.of(site, SITE)
    return [("EXISTS", whole.assign, whole.bots), ("EXISTS", log_key(site)), ("EXISTS", f"sw:{{{site}:calls}}:calls")]


async def _sent(store: Store, commands: list[Command]) -> list[Any]:
    """Replies of many commands, a slice at a time through the batcher (a round trip per slice,
    shared with the requests of the moment)."""
    replies: list[Any] = []
    for start in range(0, len(commands), SLICE):
        replies += await store.batcher.submit(*commands[start:start + SLICE])
    return replies


async def arrived(store: Store, sites: Collection[str]) -> list[str]:
    """Add `sites`, new to this process's rules, to the known sites; those this process added
    whose data the store held already, each logged. Of several processes loading the same
    rules, the one whose `SADD` adds a site is the one that says so."""
    asked = [[("SADD", KNOWN, site), *_holds_data(site)] for site in sites]
    replies = iter(await _sent(store, [command for commands in asked for command in commands]))
    again = []
    for site, commands in zip(sites, asked, strict=True):
        added, *held = (next(replies) for _ in commands)
        if added and sum(held):
            again.append(site)
            log.warning("site %s is new to the rules, but the store holds data of a site of that id from before "
                        "(reports, calls, the conversion log), which its report token now reads: if the id went to "
                        "another client, take the site out of the rules, run `swapline sites erase %s`, and put it "
                        "back (unless the site is yours and an older version, which keeps no list of sites, served "
                        "it: after a rollback, say)", site, site)
    return again


async def left(store: Store, sites: Collection[str]) -> list[str]:
    """Take `sites`, gone from this process's rules, from the known sites; those this process took."""
    replies = await _sent(store, [("SREM", KNOWN, site) for site in sites])
    return [site for site, taken in zip(sites, replies, strict=True) if taken]


async def reloaded(store: Store, added: Collection[str], gone: Collection[str]) -> None:
    """After a reload: the known sites follow the rules' change (the reload logs the sites gone)."""
    await left(store, gone)
    await arrived(store, added)


async def check_in(store: Store, sites: Collection[str]) -> None:
    """As a process starts on `sites`: the known sites become them. Sites that left the rules
    while no process watched are logged; so are new ones whose data the store holds already. A
    store that knows no site yet (the first start of a version that keeps them) learns these
    without a word: their data is theirs."""
    known = {name.decode() for name in cast(set[bytes], await store.client.smembers(KNOWN))}
    if not known:
        await _sent(store, [("SADD", KNOWN, *sites)])
        return
    if gone := await left(store, sorted(known - set(sites))):
        log.warning("sites gone from the rules since they were last loaded: %s; their data stays in the store "
                    "(`swapline sites erase SITE` erases it)", ", ".join(gone))
    await arrived(store, [site for site in sites if site not in known])
