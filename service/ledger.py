"""The ledger: who saw which variant and who converted, counted exactly, in the store.

A visitor is counted in the cohort of their first exposure to an experiment: the day and
page where they first saw it, and the variant they got. Conversions (forms, tel: clicks,
goals, calls) credit that cohort: once per visitor and kind for the unique counts, once per
event for the totals, and never twice for one event id. The whole site is the pseudo
experiment `_site` with the one variant `all`, which gives per-page figures the same way.

Keys `sw:{SITE/EXPERIMENT}:…` (docs/STORAGE.md): one slot per experiment, so every script
stays in one slot and the experiments of a big site spread over the shards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

from service.store import Queue, Store

SITE = "_site"  # the pseudo experiment every visitor is in
ALL = "all"  # its only variant
DEDUPE_MS = 2 * 86_400_000  # an event id seen again within two days is a retry
SCRIPTS = {
    name: resources.files("service").joinpath("lua", f"{name}.lua").read_text()
    for name in ("expose", "convert", "overflow")
}


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    assign: str
    exposed: str
    converted: str
    conversions: str
    totals: str
    seen: str
    overflowed: str
    overflow: str
    excluded: str
    bots: str

    @classmethod
    def of(cls, site: str, experiment: str) -> LedgerKeys:
        prefix = f"sw:{{{site}/{experiment}}}:"
        return cls(*(prefix + name for name in cls.__slots__))


def page_field(path: str) -> str:
    """A page path as it sits in a `day|page|variant` field: '|' can never appear in it."""
    return quote(path, safe="/-._~!$&'()*+,;=:@")


@dataclass
class Tally:
    """One experiment's counts, keyed by (day, page, variant) and by kind."""

    exposed: dict[tuple[str, str, str], int] = field(default_factory=dict)
    overflow: dict[tuple[str, str, str], int] = field(default_factory=dict)
    converted: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    totals: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    excluded: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    bots: dict[str, int] = field(default_factory=dict)  # day → bot page views (the `_site` tally only)


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def expose(self, site: str, vid: str, page: str, day: str, variants: dict[str, str]) -> asyncio.Future[Any]:
        """Queue the exposures of one page view (the site's own included); await the result."""
        page = page_field(page)
        return self._submit(site, {**variants, SITE: ALL}, lambda keys, variant: (
            "expose", (keys.assign, keys.exposed), (vid, variant, page, day),
        ))

    def overflowed(self, site: str, vid: str, experiments: Iterable[str]) -> asyncio.Future[Any]:
        return self._submit(site, dict.fromkeys([*experiments, SITE], ""), lambda keys, _: (
            "overflow", (keys.assign, keys.overflowed, keys.overflow), (vid,),
        ))

    def count_bot(self, site: str, day: str) -> asyncio.Future[Any]:
        key = LedgerKeys.of(site, SITE).bots
        return self.store.batcher.submit(lambda pipe: pipe.hincrby(key, day, 1))

    async def convert(self, site: str, vid: str, experiments: Iterable[str], event_id: str, kinds: Iterable[str],
                      now_ms: int) -> str:
        """Credit the visitor's cohorts; returns what the site-wide ledger made of it."""
        kinds = [*kinds, "any"]
        results = await self._submit(site, dict.fromkeys([SITE, *experiments], ""), lambda keys, _: (
            "convert",
            (keys.assign, keys.converted, keys.conversions, keys.totals, keys.seen, keys.overflowed, keys.excluded),
            (vid, event_id, now_ms, DEDUPE_MS, *kinds),
        ))
        return bytes(results[0]).decode()

    async def tally(self, site: str, experiment: str) -> Tally:
        keys = LedgerKeys.of(site, experiment)
        pipe = self.store.client.pipeline(transaction=False)
        for key in (keys.exposed, keys.overflow, keys.conversions, keys.totals, keys.excluded, keys.bots):
            pipe.hgetall(key)
        exposed, overflow, conversions, totals, excluded, bots = await pipe.execute()
        return Tally(_split(exposed, 3), _split(overflow, 3), _split(conversions, 4), _split(totals, 4),
                     _split(excluded, 4), {bytes(k).decode(): int(v) for k, v in bots.items()})

    def _submit(self, site: str, variants: dict[str, str], command: Any) -> asyncio.Future[Any]:
        """One script per experiment, all queued now, so they share the next round trip."""
        futures = []
        for experiment, variant in variants.items():
            script, keys, args = command(LedgerKeys.of(site, experiment), variant)
            futures.append(self.store.batcher.submit(_eval(SCRIPTS[script], keys, args)))
        return asyncio.gather(*futures)


def _eval(script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Queue:
    return lambda pipe: pipe.eval(script, len(keys), *keys, *args)


def _split(raw: dict[Any, Any], parts: int) -> dict[Any, int]:
    """`b"day|page|variant"` fields → tuples, with the page decoded back to its path."""
    counts = {}
    for name, value in raw.items():
        pieces = bytes(name).decode().split("|", parts - 1)
        pieces[1] = unquote(pieces[1])
        counts[tuple(pieces)] = int(value)
    return counts
