"""Counters by dimension: a visit as it starts, and each conversion by its visit, per day, in the store.

A day's counters sit in one hash per dimension and per pair of dimensions
(`sw:{SITE:log}:dims:DAY:counts:source`, `…:counts:source,campaign`), next to the conversion
log, in its slot, each value named by the number it goes by that day (`ids_key`). The Lua side
is service/lua/dims.lua, run by visited.lua for a visit and by log.lua for a conversion;
service.analytics.dimensions reads them. Each dimension keeps at most
`MOST_VALUES` values a day; the others are counted under "(other)", as pages are. Each visit is
also a record of the day's table of visits, which says who the visitors were
(service.analytics.distinct).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from service.rules.phrase import normalise
from service.tracking.clock import hour_and_day
from service.tracking.store import Command, Script, Store

DIMENSIONS = ("source", "medium", "campaign", "phrase", "landing", "region", "city", "device", "pool")
NAMES = "|".join(DIMENSIONS)  # as the scripts take them (dims.lua's `listed`)
NONE = "(none)"
OTHER = "(other)"  # every value of a dimension past its `MOST_VALUES` of the day: number 0
NOT_CREDITED = "(not credited)"  # every value but the pool of a call no visitor held the number for
MOST_VALUES = 1000  # of each dimension, a day
VISITOR_BYTES = 8
RECORD_BYTES = 2 * len(DIMENSIONS) + VISITOR_BYTES  # a visit in a day's table: each value's number, its visitor
VISITED = Script.named("visited", "dims")


def values(record: Mapping[str, Any], pool: str | None = None) -> str:
    """A visit's value of each dimension, from its record (`visits.started`), joined as the
    scripts take them (dims.lua's `listed`)."""
    geo = record.get("geo") or {}
    return joined(record.get("source"), record.get("medium"), record.get("campaign"), _keywords(record.get("phrase")),
                  record.get("landing"), geo.get("region"), geo.get("city"), record.get("device"),
                  pool or record.get("pool"))


def joined(*found: str | None) -> str:
    """Values in the order of `DIMENSIONS`, the phrase as keywords see it (`normalise`), joined
    as the scripts take them (dims.lua's `listed`)."""
    text = "|".join([value or NONE for value in found])
    if "%" in text or text.count("|") >= len(found):  # rare: a value with a '%' or a '|' of its own
        return "|".join([escape(value) if value else NONE for value in found])
    return text


@functools.lru_cache(maxsize=4096)
def _keywords(phrase: str | None) -> str | None:
    return normalise(phrase or "") or None


def escape(value: str) -> str:
    """A value as a counter's field holds it: '|' separates the values there."""
    return value.replace("%", "%25").replace("|", "%7C")


def finds(name: str, wanted: str) -> Callable[[bytes], bool]:
    """Whether a value as the days' hashes hold it is the one a report's filter on dimension
    `name` names: a source, medium or campaign in any letter case (`source=Yandex` finds
    `yandex`), as the logs' filters find them; any other as it was counted."""
    if name in ("source", "medium", "campaign"):
        folded = escape(wanted).casefold()
        return lambda held: held.decode().casefold() == folded
    return escape(wanted).encode().__eq__


def unescape(value: str) -> str:
    return value.replace("%7C", "|").replace("%25", "%") if "%" in value else value


def prefix(site: str, day: str) -> str:
    return f"sw:{{{site}:log}}:dims:{day}:"


def visited(site: str, day: str, values: str, ttl: int, vid: str) -> Command:
    """The command that counts a visit as it starts, with its `values` (`joined`), and adds it
    to the day's table of visits."""
    at = prefix(site, day)
    return VISITED((counts_key(site, day, DIMENSIONS[:1]),), (values, visitor_hash(vid)),
                   (at, MOST_VALUES, ttl, NAMES))


_HASH = hashlib.blake2b(digest_size=VISITOR_BYTES)


def visitor_hash(vid: str) -> bytes:
    """What the tables of visits know a visitor by: `VISITOR_BYTES` of a hash of their id."""
    hashed = _HASH.copy()  # not a new hash object, with its arguments parsed, per visit
    hashed.update(vid.encode())
    return hashed.digest()


def counts_key(site: str, day: str, names: Sequence[str]) -> str:
    """A day's counters by one dimension or a pair (in the order of `DIMENSIONS`), their values
    by number: a field is "v|3|17", or "c|KIND|…" and "u|KIND|…" (dims.lua)."""
    return f"{prefix(site, day)}counts:{','.join(names)}"


def texts_key(site: str, day: str, names: Sequence[str]) -> str:
    """The counters of a day counted before they named values by number ("v|yandex|купить окна"):
    read until they expire, `SWAPLINE_REPORT_DAYS` after the upgrade."""
    return prefix(site, day) + ",".join(names)


def ids_key(site: str, day: str, dimension: str) -> str:
    """The numbers a day's values of a dimension go by in its table of visits (dims.lua)."""
    return f"{prefix(site, day)}ids:{dimension}"


def table_key(site: str, day: str) -> str:
    """A day's table of visits: a record of `RECORD_BYTES` per visit (dims.lua)."""
    return f"{prefix(site, day)}visits"


async def forget(store: Store, tables: Iterable[str], vid: str) -> int:
    """Give `vid`'s records in a site's `tables` of visits (`table_key`) a visitor nobody knows,
    the same in each: the visits and their visitor still count, as nobody's. How many records."""
    hashed, nobody, erased = visitor_hash(vid), secrets.token_bytes(VISITOR_BYTES), 0
    for key in tables:
        table = cast(bytes, await store.client.get(key) or b"")
        at = table.find(hashed)
        while at >= 0:
            if at % RECORD_BYTES == RECORD_BYTES - VISITOR_BYTES:  # not the bytes of two records' edge
                await store.client.setrange(key, at, nobody)
                erased += 1
            at = table.find(hashed, at + 1)
    return erased


def logged(site: str, entry: Mapping[str, Any], zone: datetime.tzinfo) -> tuple[str, ...]:
    """What the conversion log's script needs to count a conversion by its visit's dimensions
    (service/lua/log.lua, ARGV 10 on), by the days of `zone`; empty fields when it is counted by
    none. The conversion counts on its own day, its visit as converted on the day it started. A
    call no visitor held the number for counts as `NOT_CREDITED` by every dimension but its pool,
    so that the reports' calls add up to the log's calls to the site's numbers; it converts no
    visit. A call to none of them (a PBX that reports every line's calls) is no call to the site,
    and counts in no report."""
    visit, call = entry.get("visit"), entry.get("call")
    if entry["kind"] == "alert" or (call and call.get("kind") == "unknown") or not (
            visit or (call and not entry.get("visitor"))):  # or its visit is gone
        return ("", "", "", "", "")
    kinds = ",".join([entry["kind"], *(["qualified_call"] if call and call.get("qualified") else [])])
    pool = call and call.get("pool")
    day = prefix(site, hour_and_day(entry["at"], zone)[1])
    if not visit:  # the pool is the last dimension; no visit converted (no visit id)
        return day, kinds, "", joined(*[NOT_CREDITED] * (len(DIMENSIONS) - 1), pool or NOT_CREDITED), day
    started = visit.get("started")  # every record the service writes has it; one without counts on this day
    first_day = prefix(site, hour_and_day(started, zone)[1]) if isinstance(started, int) else day
    return day, kinds, visit.get("id", ""), values(visit, pool), first_day
