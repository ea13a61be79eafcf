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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, unquote

from service.tracking.clock import hour_and_day
from service.tracking.store import Command, Script, Store

SITE = "_site"  # the pseudo experiment every visitor is in
ALL = "all"  # its only variant
DEDUPE_MS = 2 * 86_400_000  # an event id seen again within two days is a retry
EXPOSE, CONVERT = Script.named("expose", "capped"), Script.named("convert", "capped")
OVERFLOW = Script.named("overflow")
OTHER = "(other)"  # the page or goal name counts stand under past the day's most (capped.lua)
SCAN_COUNT = 2000  # fields read at a time from a ledger hash
DAY_SET_SECONDS = 2 * 86_400  # a day's set of pages or goal names, kept past the day for late events


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    prefix: str
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
    @functools.lru_cache(maxsize=1024)  # a few per site, wanted with every first exposure
    def of(cls, site: str, experiment: str) -> LedgerKeys:
        prefix = f"sw:{{{site}/{experiment}}}:"
        return cls(prefix, *(prefix + name for name in cls.__slots__[1:]))

    def pages(self, day: str) -> str:
        """The day's pages, past which pages count as "(other)"."""
        return f"{self.prefix}pages:{day}"

    def goals(self, day: str) -> str:
        """The day's goal names, past which goals count as "goal:(other)"."""
        return f"{self.prefix}goals:{day}"


@functools.lru_cache(maxsize=4096)
def page_field(path: str) -> str:
    """A page path as it sits in a `day|page|variant` field: '|' can never appear in it."""
    return quote(path, safe="/-._~!$&'()*+,;=:@")


@dataclass
class Tally:
    """One experiment's counts, keyed by (day, page, variant) and by kind."""

    exposed: dict[tuple[str, ...], int] = field(default_factory=dict)  # (day, page, variant)
    overflow: dict[tuple[str, ...], int] = field(default_factory=dict)
    converted: dict[tuple[str, ...], int] = field(default_factory=dict)  # (day, page, variant, kind)
    totals: dict[tuple[str, ...], int] = field(default_factory=dict)
    excluded: dict[tuple[str, ...], int] = field(default_factory=dict)
    bots: dict[tuple[str, ...], int] = field(default_factory=dict)  # (day,) → bot page views (`_site` only)


class Ledger:
    """Makes the ledger's commands (so a decision sends them with its lease) and reads it back."""

    def __init__(self, store: Store, max_pages: int = 1000, max_goals: int = 100, remembered: int = 32_768) -> None:
        self.store = store
        # The scripts' first arguments, the same in every call (`ScriptCall.shared`): the caps
        # of service/lua/capped.lua, and the window in which an event id is a retry.
        self._exposing = (max_pages, DAY_SET_SECONDS)
        self._converting = (DEDUPE_MS, max_goals, DAY_SET_SECONDS)
        # A visitor is exposed to an experiment once, ever: the store keeps the first exposure
        # and ignores the others. Remembering what this process has recorded spares the page
        # views of returning visitors (most page views) those no-op scripts. Bounded, and only
        # for the day: the store forgets an exposure after the attribution window
        # (service.tracking.retention), and a visitor back after it must be exposed anew. A forgotten
        # exposure costs one no-op script.
        self._recorded: set[tuple[str, str, str]] = set()
        self._remembered = remembered
        self._day = ""

    def exposures(self, site: str, vid: str, page: str, day: str,
                  variants: dict[str, str]) -> tuple[list[Command], list[tuple[str, str, str]]]:
        """The commands that count one page view's exposures (the site's own included) and what
        to pass to `recorded` once the store has them; exposures recorded before are left out."""
        if day != self._day:
            self._recorded.clear()
            self._day = day
        fresh = [(site, experiment, vid) for experiment in (*variants, SITE)
                 if (site, experiment, vid) not in self._recorded]
        if not fresh:
            return [], []
        page = page_field(page)
        return [EXPOSE(_day_keys(site, experiment, day, "pages", "assign", "exposed"),
                       (vid, variants.get(experiment, ALL), page, day), self._exposing)
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

    def conversion(self, site: str, vid: str, experiments: Iterable[str], event_id: str, kinds: Iterable[str],
                   now_ms: int) -> list[Command]:
        """The commands that credit the visitor's cohorts in `experiments` (all of the site's: the
        store knows which ones the visitor was exposed to, on whatever page); their replies say
        what the site-wide ledger made of it (`converted`)."""
        _, day = hour_and_day(now_ms)
        args = (vid, event_id, now_ms, *kinds, "any")
        names = ("assign", "converted", "conversions", "totals", "seen", "overflowed", "excluded")
        return [CONVERT(_day_keys(site, experiment, day, "goals", *names), args, self._converting)
                for experiment in dict.fromkeys([SITE, *experiments])]

    async def convert(self, site: str, vid: str, experiments: Iterable[str], event_id: str, kinds: Iterable[str],
                      now_ms: int) -> str:
        """Credit a conversion (`conversion`); returns what the site-wide ledger made of it."""
        return converted(await self.store.batcher.submit(*self.conversion(site, vid, experiments, event_id, kinds,
                                                                          now_ms)))

    async def variants(self, site: str, vid: str, experiments: tuple[str, ...]) -> dict[str, str]:
        """The variant of each of `experiments` the visitor was exposed to, on any page."""
        if not experiments:
            return {}
        return assigned(experiments, await self.store.batcher.submit(*assignments(site, vid, experiments)))

    async def tally(self, site: str, experiment: str, keeps_day: Callable[[str], bool] = lambda day: True) -> Tally:
        """One experiment's counts on the days `keeps_day` keeps. Read a slice at a time (HSCAN):
        however big the ledger, no reply takes the event loop long to read."""
        keys, tally = LedgerKeys.of(site, experiment), Tally()
        for key, parts, counts in ((keys.exposed, 3, tally.exposed), (keys.overflow, 3, tally.overflow),
                                   (keys.conversions, 4, tally.converted), (keys.totals, 4, tally.totals),
                                   (keys.excluded, 4, tally.excluded), (keys.bots, 1, tally.bots)):
            cursor = None
            while cursor != 0:
                cursor, chunk = await self.store.client.hscan(key, cursor or 0, count=SCAN_COUNT)
                for name, value in cast(dict[bytes, bytes], chunk).items():
                    # b"day|page|variant[|kind]", the page quoted as page_field quotes it
                    pieces = name.decode().split("|", parts - 1)
                    if keeps_day(pieces[0]):
                        pieces[1:2] = map(unquote, pieces[1:2])
                        counts[tuple(pieces)] = int(value)
        return tally


def converted(replies: list[Any]) -> str:
    """What the site-wide ledger made of a conversion: from the replies to `Ledger.conversion`."""
    return bytes(replies[0]).decode()


def assignments(site: str, vid: str, experiments: tuple[str, ...]) -> list[Command]:
    """The commands that read the visitor's variant of each of `experiments` (`assigned`)."""
    return [("HGET", LedgerKeys.of(site, experiment).assign, vid) for experiment in experiments]


def assigned(experiments: tuple[str, ...], replies: list[Any]) -> dict[str, str]:
    """The variants the replies to `assignments` say the visitor was exposed to."""
    return {experiment: bytes(value).decode().partition("|")[0]  # "variant|page|day", see expose.lua
            for experiment, value in zip(experiments, replies, strict=True) if value}


@functools.lru_cache(maxsize=4096)  # the same few per experiment, wanted on every page view
def _keys(site: str, experiment: str, *names: str) -> tuple[str, ...]:
    keys = LedgerKeys.of(site, experiment)
    return tuple(getattr(keys, name) for name in names)


@functools.lru_cache(maxsize=4096)  # a few per experiment and day
def _day_keys(site: str, experiment: str, day: str, capped: str, *names: str) -> tuple[str, ...]:
    """`names`' keys, then the day's set of pages or goal names (`capped`), as the scripts list them."""
    keys = LedgerKeys.of(site, experiment)
    return (*_keys(site, experiment, *names), getattr(keys, capped)(day))
