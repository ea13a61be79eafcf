"""Counters by dimension: a visit as it starts, and each conversion by its visit, per day, in the store.

A day's counters sit in one hash per dimension and per pair of dimensions
(`sw:{SITE:log}:dims:DAY:source`, `…:source,campaign`), next to the conversion log, in its
slot; the Lua side is service/lua/dims.lua, run by visited.lua for a visit and by log.lua for a
conversion. service.analytics.dimensions reads them. Each dimension keeps at most
`MOST_VALUES` values a day; the others are counted under "(other)", as pages are.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from service.rules.phrase import normalise
from service.tracking.store import Command, Script

DIMENSIONS = ("source", "medium", "campaign", "phrase", "landing", "region", "city", "device", "pool")
NAMES = "|".join(DIMENSIONS)  # as the scripts take them (dims.lua's `listed`)
NONE = "(none)"
MOST_VALUES = 1000  # of each dimension, a day
VISITED = Script.named("visited", "capped", "dims")


def values(record: Mapping[str, Any], pool: str | None = None) -> str:
    """A visit's value of each dimension, from its record (`visits.started`), joined as the
    scripts take them (dims.lua's `listed`)."""
    geo = record.get("geo") or {}
    return _values(record.get("source"), record.get("medium"), record.get("campaign"), record.get("phrase"),
                   record.get("landing"), geo.get("region"), geo.get("city"), record.get("device"),
                   pool or record.get("pool"))


# Visits come from few sources, campaigns and places: each combination is escaped once.
@functools.lru_cache(maxsize=4096)
def _values(*found: Any) -> str:
    named = list(found)
    named[3] = normalise(named[3] or "") or None  # the phrase as keywords see it
    return "|".join(escape(str(value)) if value else NONE for value in named)


def escape(value: str) -> str:
    """A value as a counter's field holds it: '|' separates the values there."""
    return value.replace("%", "%25").replace("|", "%7C")


def unescape(value: str) -> str:
    return value.replace("%7C", "|").replace("%25", "%")


def prefix(site: str, day: str) -> str:
    return f"sw:{{{site}:log}}:dims:{day}:"


def visited(site: str, day: str, record: Mapping[str, Any], ttl: int, vid: str) -> Command:
    """The command that counts a visit as it starts, and its visitor among each value's."""
    at = prefix(site, day)
    return VISITED((at + DIMENSIONS[0],), (values(record), vid), (at, MOST_VALUES, ttl, NAMES))


def visitors_key(site: str, day: str, dimension: str, value: str) -> str:
    """The HyperLogLog of a day's visitors with that value of the dimension (dims.lua)."""
    return f"{prefix(site, day)}visitors:{dimension}|{escape(value)}"


def logged(site: str, day: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    """What the conversion log's script needs to count a conversion by its visit's dimensions
    (service/lua/log.lua, ARGV 9 on); empty fields when it has no visit."""
    visit, call = entry.get("visit"), entry.get("call") or {}
    if not visit or entry["kind"] == "alert":
        return ("", "", "", "")
    kinds = [entry["kind"], *(["qualified_call"] if call.get("qualified") else [])]
    return prefix(site, day), ",".join(kinds), visit.get("id", ""), values(visit, call.get("pool"))
