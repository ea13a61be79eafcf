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

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from service.store import Command, Script, Store

SITE = "_site"  # the pseudo experiment every visitor is in
ALL = "all"  # its only variant
DEDUPE_MS = 2 * 86_400_000  # an event id seen again within two days is a retry
EXPOSE, CONVERT, OVERFLOW = (Script.named(name) for name in ("expose", "convert", "overflow"))


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


@functools.lru_cache(maxsize=4096)
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
    """Makes the ledger's commands (so a decision sends them with its lease) and reads it back."""

    def __init__(self, store: Store, remembered: int = 32_768) -> None:
        self.store = store
        # A visitor is exposed to an experiment once, ever: the store keeps the first exposure
        # and ignores the others. Remembering what this process has recorded spares the page
        # views of returning visitors (most page views) those no-op scripts. Bounded; a
        # forgotten exposure costs one no-op script.
        self._recorded: set[tuple[str, str, str]] = set()
        self._remembered = remembered

    def exposures(self, site: str, vid: str, page: str, day: str,
                  variants: dict[str, str]) -> tuple[list[Command], list[tuple[str, str, str]]]:
        """The commands that count one page view's exposures (the site's own included) and what
        to pass to `recorded` once the store has them; exposures recorded before are left out."""
        fresh = [(site, experiment, vid) for experiment in (*variants, SITE)
                 if (site, experiment, vid) not in self._recorded]
        if not fresh:
            return [], []
        page = page_field(page)
        return [EXPOSE(_keys(site, experiment, "assign", "exposed"), (vid, variants.get(experiment, ALL), page, day))
                for _, experiment, _ in fresh], fresh

    def recorded(self, exposures: list[tuple[str, str, str]]) -> None:
        if len(self._recorded) + len(exposures) > self._remembered:
            self._recorded.clear()  # the cheapest way to stay bounded; forgetting costs little
        self._recorded.update(exposures)

    @staticmethod
    def overflows(site: str, vid: str, experiments: Iterable[str]) -> list[Command]:
        """Take a visitor who got the overflow number out of the conversion rates."""
        return [OVERFLOW(_keys(site, experiment, "assign", "overflowed", "overflow"), (vid,))
                for experiment in dict.fromkeys([*experiments, SITE])]

    @staticmethod
    def bot(site: str, day: str) -> Command:
        return ("HINCRBY", LedgerKeys.of(site, SITE).bots, day, 1)

    async def convert(self, site: str, vid: str, experiments: Iterable[str], event_id: str, kinds: Iterable[str],
                      now_ms: int) -> str:
        """Credit the visitor's cohorts; returns what the site-wide ledger made of it."""
        args = (vid, event_id, now_ms, DEDUPE_MS, *kinds, "any")
        names = ("assign", "converted", "conversions", "totals", "seen", "overflowed", "excluded")
        results = await self.store.batcher.submit(*(
            CONVERT(_keys(site, experiment, *names), args) for experiment in dict.fromkeys([SITE, *experiments])
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


@functools.lru_cache(maxsize=4096)  # the same few per experiment, wanted on every page view
def _keys(site: str, experiment: str, *names: str) -> tuple[str, ...]:
    keys = LedgerKeys.of(site, experiment)
    return tuple(getattr(keys, name) for name in names)


def _split(raw: dict[Any, Any], parts: int) -> dict[Any, int]:
    """`b"day|page|variant"` fields → tuples, with the page decoded back to its path."""
    counts = {}
    for name, value in raw.items():
        pieces = bytes(name).decode().split("|", parts - 1)
        pieces[1] = unquote(pieces[1])
        counts[tuple(pieces)] = int(value)
    return counts
