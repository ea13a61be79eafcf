"""The ledger: who saw which variant and who converted, counted exactly, in the store.

A visitor is counted in the cohort of their first exposure to an experiment: the day and
page where they first saw it, and the variant they got. Conversions (forms, tel: clicks,
goals, calls) credit that cohort: once per visitor and kind for the unique counts, once per
event for the totals, and never twice for one event id. The whole site is the pseudo
experiment `_site` with the one variant `all`, which gives per-page figures the same way.

The counts by cohort go to spans of days (service/lua/spans.lua): a day's own, and the spans
of 4, 16 and 64 days that hold it. A report over any days reads the fewest spans that tile
them, so its cost grows with the pages and variants it adds up, and hardly with the days.

Keys `sw:{SITE/EXPERIMENT}:…` (docs/STORAGE.md): one slot per experiment, so every script
stays in one slot and the experiments of a big site spread over the shards.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from service.tracking.clock import DAY_MS, hour_and_day
from service.tracking.store import Command, Script, Store

SITE = "_site"  # the pseudo experiment every visitor is in
ALL = "all"  # its only variant
EXPOSE, CONVERT = Script.named("expose", "capped", "spans"), Script.named("convert", "capped", "spans")
OVERFLOW = Script.named("overflow", "spans")
SPANS = (64, 16, 4, 1)  # the lengths of spans, in days (spans.lua)
EPOCH = datetime.date(1970, 1, 1).toordinal()
OTHER = "(other)"  # the page or goal name counts stand under past the day's most (capped.lua)
SCAN_COUNT = 2000  # fields read at a time from a span
READ_AT_A_TIME = 50_000  # fields a round trip reads at most (`Ledger.daily`)
WHOLE_DAY = 2  # a day's hash is read whole up to this many times the fields wanted from it
DAY_SET_SECONDS = 2 * 86_400  # a day's set of pages or goal names, kept past the day for late events
# The conversion kinds an overflowed visitor is left out of, as a call could not be credited to
# them (SPEC: "excluded from call conversion"); overflow.lua is given them, convert.lua names them.
BY_CALL = frozenset({"call", "qualified_call", "missed_call", "any"})


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    prefix: str
    assign: str
    converted: str
    seen: str
    overflowed: str
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

    def span(self, first: int, length: int) -> str:
        """The counts of `length` days from day number `first` (spans.lua)."""
        return f"{self.prefix}days:{first}:{length}"


@functools.lru_cache(maxsize=4096)
def page_field(path: str) -> str:
    """A page path as it sits in a `day|page|variant` field: '|' can never appear in it."""
    return quote(path, safe="/-._~!$&'()*+,;=:@")


class Ledger:
    """Makes the ledger's commands (so a decision sends them with its lease) and reads it back."""

    def __init__(self, store: Store, max_pages: int = 1000, max_goals: int = 100, keep_days: int = 400,
                 remembered: int = 32_768, retry_days: int = 3) -> None:
        self.store = store
        self.keep_days = keep_days  # the days reports read back (SWAPLINE_REPORT_DAYS), and a span's lifetime
        # The scripts' first arguments, the same in every call of an experiment (`ScriptCall.shared`):
        # the caps of service/lua/capped.lua, the window in which an event id is a retry (as long
        # as a token lets a beacon count: SWAPLINE_TOKEN_DAYS), and where the experiment's spans
        # are and how long they stay (spans.lua).
        self._exposing = (max_pages, DAY_SET_SECONDS)
        self._converting = (retry_days * DAY_MS, max_goals, DAY_SET_SECONDS)
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
        return [EXPOSE(_day_keys(site, experiment, day, "pages", "assign"),
                       (vid, variants.get(experiment, ALL), page, day),
                       (*self._exposing, *self._spans(site, experiment)))
                for _, experiment, _ in fresh], fresh

    def recorded(self, exposures: list[tuple[str, str, str]]) -> None:
        if len(self._recorded) + len(exposures) > self._remembered:
            self._recorded.clear()  # the cheapest way to stay bounded; forgetting costs little
        self._recorded.update(exposures)

    def overflows(self, site: str, vid: str, experiments: Iterable[str]) -> list[Command]:
        """Take a visitor who got the overflow number out of the rates a call counts in (`BY_CALL`)."""
        return [OVERFLOW(_keys(site, experiment, "assign", "overflowed", "converted"), (vid, *BY_CALL),
                         self._spans(site, experiment))
                for experiment in dict.fromkeys([*experiments, SITE])]

    @staticmethod
    def bot(site: str, day: str) -> Command:
        return ("HINCRBY", LedgerKeys.of(site, SITE).bots, day, 1)

    def conversion(self, site: str, vid: str, experiments: Iterable[str], event_id: str, kinds: Iterable[str],
                   now_ms: int, zone: datetime.tzinfo = datetime.UTC) -> list[Command]:
        """The commands that credit the visitor's cohorts in `experiments` (all of the site's: the
        store knows which ones the visitor was exposed to, on whatever page), on the day in `zone`
        (the site's); their replies say what the site-wide ledger made of it (`converted`)."""
        _, day = hour_and_day(now_ms, zone)
        args = (vid, event_id, now_ms, *kinds, "any")
        names = ("assign", "converted", "seen", "overflowed")
        return [CONVERT(_day_keys(site, experiment, day, "goals", *names), args,
                        (*self._converting, *self._spans(site, experiment)))
                for experiment in dict.fromkeys([SITE, *experiments])]

    async def convert(self, site: str, vid: str, experiments: Iterable[str], event_id: str, kinds: Iterable[str],
                      now_ms: int, zone: datetime.tzinfo = datetime.UTC) -> str:
        """Credit a conversion (`conversion`); returns what the site-wide ledger made of it."""
        return converted(await self.store.batcher.submit(*self.conversion(site, vid, experiments, event_id, kinds,
                                                                          now_ms, zone)))

    async def variants(self, site: str, vid: str, experiments: tuple[str, ...]) -> dict[str, str]:
        """The variant of each of `experiments` the visitor was exposed to, on any page."""
        if not experiments:
            return {}
        return assigned(experiments, await self.store.batcher.submit(*assignments(site, vid, experiments)))

    def window(self, first: str | None, last: str | None, today: str) -> tuple[str, str]:
        """The days from `first` to `last` (by default every day kept) that the ledger keeps as of
        `today`: what `counts` and `daily` are asked for. A span lives `keep_days` from its first
        count, so one that begins before the window may be gone while its later days are in it."""
        start = day_name(day_number(today) - self.keep_days + 1)
        return max(first or start, start), min(last or today, today)

    async def counts(self, site: str, experiment: str, first: str, last: str) -> dict[bytes, int]:
        """The experiment's counts of the cohorts of the days from `first` to `last` (`window`): field
        (b"MEASURE|PAGE|TAIL", spans.lua) → count, over the fewest spans that tile the days. The
        fields of page '*' are some of the days' totals: not a page. Read a slice at a time
        (HSCAN): however big a span, no reply takes the event loop long to read."""
        keys, counts = LedgerKeys.of(site, experiment), dict[bytes, int]()
        for start, length in tiles(day_number(first), day_number(last)):
            cursor = None
            while cursor != 0:
                cursor, chunk = await self.store.client.hscan(keys.span(start, length), cursor or 0, count=SCAN_COUNT)
                for name, value in cast(dict[bytes, bytes], chunk).items():
                    counts[name] = counts.get(name, 0) + int(value)
        return counts

    async def daily(self, site: str, experiment: str, first: str, last: str,
                    fields: Sequence[str]) -> dict[str, list[int]]:
        """`fields`' counts on each day from `first` to `last` (`window`) that has any: day → counts.
        A day's hash is read whole unless it is much bigger than the fields asked for: sending a
        field's name costs more than reading one more field of the reply."""
        keys, client = LedgerKeys.of(site, experiment), self.store.client
        numbers = range(day_number(first), day_number(last) + 1) if fields else range(0)
        pipe = client.pipeline(transaction=False)
        for number in numbers:
            pipe.hlen(keys.span(number, 1))
        counted = [(number, size) for number, size in zip(numbers, await pipe.execute(), strict=True) if size]
        wanted, days = [name.encode() for name in fields], {}
        step = max(1, READ_AT_A_TIME // (WHOLE_DAY * len(fields)))  # days a round trip: no reply is too long to read
        for start in range(0, len(counted), step):
            for number, size in counted[start:start + step]:
                if size <= WHOLE_DAY * len(fields):
                    pipe.hgetall(keys.span(number, 1))
                else:
                    pipe.hmget(keys.span(number, 1), fields)
            for (number, _), reply in zip(counted[start:start + step], await pipe.execute(), strict=True):
                values = [reply.get(name) for name in wanted] if isinstance(reply, dict) else reply
                days[day_name(number)] = [int(value or 0) for value in values]
        return days

    async def bots(self, site: str, first: str, last: str) -> int:
        """Bot page views from day `first` to `last` (one field a day)."""
        counted = cast(dict[bytes, bytes], await self.store.client.hgetall(LedgerKeys.of(site, SITE).bots))
        return sum(int(n) for day, n in counted.items() if first <= day.decode() <= last)

    def _spans(self, site: str, experiment: str) -> tuple[str, int]:
        """Where the experiment's spans are and how long one lives, seconds (spans.lua's arguments)."""
        return LedgerKeys.of(site, experiment).prefix, self.keep_days * 86_400


def cohorts(counts: dict[bytes, int]) -> Iterator[tuple[str, str, str, str | None, int]]:
    """The fields of `Ledger.counts` taken apart: measure, page (as `page_field` writes it),
    variant, kind (None for the measures counted without one) and count. The days' totals,
    and anything else, are left out."""
    for name, count in counts.items():
        parts = name.decode().split("|", 3)
        if len(parts) >= 3 and parts[1] != "*":
            yield parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None, count


def day_number(day: str) -> int:
    """Days since 1970-01-01 of a YYYY-MM-DD day."""
    return datetime.date.fromisoformat(day).toordinal() - EPOCH


def day_name(number: int) -> str:
    return datetime.date.fromordinal(number + EPOCH).isoformat()


def tiles(first: int, last: int) -> list[tuple[int, int]]:
    """The fewest spans (first day, length) that tile the days numbered `first` to `last`."""
    spans = []
    while first <= last:
        length = next(length for length in SPANS if first % length == 0 and first + length - 1 <= last)
        spans.append((first, length))
        first += length
    return spans


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
