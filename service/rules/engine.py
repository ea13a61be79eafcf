"""The rules engine: compiled site rules and one pure function, `decide(site, view)`.

Everything here is built once when rules load (`service.rules.rulefiles`) and only read per
request: no I/O, no compilation, and the cost of a decision does not grow with the number
of rules, because `RuleIndex` hands `decide` only the rules that could match this page view.
What `decide` makes of a page view's page, traffic, place and device (a `Plan`) is remembered
per site, so visitors who share them share its work; what the rules match (a `Match`) is
remembered by only what the site's conditions name (`Conditions`), so a new plan usually
only renders its texts.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import functools
import hashlib
import itertools
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from service.analytics.stats import EXPECTED_VISITORS
from service.rules.conditions import Conditions, When
from service.rules.geo import Geo
from service.rules.index import RuleIndex, Slot, Swap
from service.rules.pageview import Pages, PageView
from service.rules.phrase import Keyword
from service.rules.places import Place, place
from service.rules.placewords import names_a_place, without_own_place, without_places
from service.rules.regions import region_place
from service.rules.settings import AlertSettings, CallSettings, Exports, VisitSettings, Webhook
from service.rules.templates import Text
from service.rules.typos import Speller
from service.rules.words import JOINED, as_meant

BUCKETS = 10_000  # assignment resolution: weights are honoured to 0.01%
# The most recently used, of every site a worker serves together. A busy site's page views repeat
# from more plans than a few thousand (towns × phrases × pages), and a memo smaller than what
# repeats misses on each in turn. A worker serving many sites keeps that many in all, not that many a site.
PLANS_KEPT = 16_384
KEPT = 4096  # entries of each of a site's other memos: paths, matches, places


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    weight: float
    swaps: tuple[Swap, ...] = ()


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    salt: str
    pages: Pages
    when: When
    variants: tuple[Variant, ...]
    bounds: tuple[int, ...]  # cumulative upper bucket bound of each variant
    expected_visitors: int = EXPECTED_VISITORS  # tunes the reports' sequential test (`stats.sequential`)
    winner: Variant | None = None  # an ended experiment: what every visitor sees, assigned and counted nowhere
    # The slots this experiment tests: in control they keep the page's own text.
    slots: frozenset[Slot] = field(init=False, repr=False, compare=False)
    _prefix: Any = field(init=False, repr=False, compare=False)  # hashlib.blake2b of "id:salt:"

    def __post_init__(self) -> None:
        slots = frozenset(swap.slot for variant in self.variants for swap in variant.swaps)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "_prefix", hashlib.blake2b(f"{self.id}:{self.salt}:".encode(), digest_size=8))

    def assign(self, vid: str) -> Variant:
        hashed = self._prefix.copy()  # BLAKE2b of "id:salt:vid", the prefix hashed once
        hashed.update(vid.encode())
        bucket = int.from_bytes(hashed.digest(), "big") % BUCKETS
        return self.variants[min(bisect.bisect_right(self.bounds, bucket), len(self.variants) - 1)]


@dataclass(frozen=True, slots=True)
class Pool:
    id: str
    pages: Pages
    when: When
    numbers: tuple[str, ...] = ()  # E.164, leased one visitor at a time
    hold: int = 900  # seconds after the visitor's last activity
    overflow: str | None = None
    static: str | None = None  # a fixed number instead of a lease

    def matches(self, view: PageView) -> bool:
        return self.pages.match(view.path) and self.when.matches(view)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Site:
    id: str
    name: str
    language: str
    origins: frozenset[str]
    phone: str | None  # E.164 of the number printed in the page
    places: Mapping[str, Place]  # the site's fixed place names
    rules: RuleIndex
    experiments: tuple[Experiment, ...]
    pools: tuple[Pool, ...]
    uses_places: bool = False  # any text mentions city/region/country
    time_zone: datetime.tzinfo = datetime.UTC  # whose days its reports count by
    calls: CallSettings = CallSettings()
    visits: VisitSettings = VisitSettings()
    report_token: str | None = None
    read_tokens: tuple[str, ...] = ()  # read what the report token reads, erase nothing
    webhooks: tuple[Webhook, ...] = ()
    exports: Exports = Exports()
    alerts: AlertSettings = AlertSettings()
    spellings: InitVar[frozenset[str]] = frozenset()  # its keywords' words as written: what typos stand for
    pairs: frozenset[str] = frozenset()  # its keywords' neighbouring nouns, joined: «сплит+система»
    serial: int = field(init=False, repr=False, compare=False)  # which site's plans are which (`planned`)
    # The pages of its rules, experiments and pools (`_page_index`)
    _pages: tuple[dict[str, tuple[int, ...]], tuple[tuple[int, Pages], ...]] = field(
        init=False, repr=False, compare=False)
    _standing: dict[str, str] = field(init=False, repr=False, compare=False)  # path → the path it plans as
    _first: dict[tuple[Any, ...], str] = field(init=False, repr=False, compare=False)  # pages matched → a path
    conditions: Conditions = field(init=False, repr=False, compare=False)  # of rules, experiments, pools
    speller: Speller = field(init=False, repr=False, compare=False)  # the typos of its keywords' words
    # What the rules make of page views (see `match`), by the page view as the conditions see it
    _matches: dict[tuple[Any, ...], Match] = field(init=False, repr=False, compare=False)
    _placed: dict[Geo, dict[str, Place]] = field(init=False, repr=False, compare=False)  # `places_of`
    experiment_ids: tuple[str, ...] = field(init=False, repr=False, compare=False)  # a conversion credits each
    controls: dict[str, str] = field(init=False, repr=False, compare=False)  # experiment → its first variant
    hosts: frozenset[str] = field(init=False, repr=False, compare=False)  # its origins': no arrival from there
    # Leased number → its pool, for crediting calls: made once, a call on a big pool costs no more.
    tracking_numbers: Mapping[str, Pool] = field(init=False, repr=False, compare=False)
    # All its numbers (leased, static, overflow, the page's) by their last seven digits: a PBX
    # that writes the number dialled after a trunk prefix, or only its local digits, names one.
    endings: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def pool(self, pool_id: str | None) -> Pool | None:
        """The pool of that id, if the rules still have it."""
        return next((pool for pool in self.pools if pool.id == pool_id), None)

    def place(self, name: str | None, known: Place | None = None) -> Place:
        """The site's own forms of the name, else those `known` for it, else its declension."""
        name = name or ""
        return self.places.get(name) or known or place(name, self.language)

    def __post_init__(self, spellings: frozenset[str]) -> None:
        object.__setattr__(self, "serial", next(_SERIALS))
        _SITES[self.serial] = self
        object.__setattr__(self, "_pages", _page_index(
            (*self.rules.pages, *(experiment.pages for experiment in self.experiments),
             *(pool.pages for pool in self.pools))))
        object.__setattr__(self, "_standing", {})
        object.__setattr__(self, "_first", {})
        object.__setattr__(self, "_matches", {})
        object.__setattr__(self, "_placed", {})
        object.__setattr__(self, "experiment_ids", tuple(experiment.id for experiment in self.experiments))
        object.__setattr__(self, "controls", {e.id: e.variants[0].id for e in self.experiments})
        object.__setattr__(self, "tracking_numbers", MappingProxyType(
            {number: pool for pool in self.pools for number in pool.numbers}))
        endings: dict[str, tuple[str, ...]] = {}
        fixed = (self.phone, *(number for pool in self.pools for number in (pool.static, pool.overflow)))
        for number in {*self.tracking_numbers, *(number for number in fixed if number)}:
            endings[number[-7:]] = (*endings.get(number[-7:], ()), number)
        object.__setattr__(self, "endings", MappingProxyType(endings))
        object.__setattr__(self, "hosts", frozenset(
            (urlsplit(origin).hostname or "").removeprefix("www.") for origin in self.origins))
        whens = (*self.rules.whens, *(e.when for e in self.experiments), *(p.when for p in self.pools))
        object.__setattr__(self, "conditions", Conditions.of(whens))
        object.__setattr__(self, "speller", Speller(self.conditions.terms | spellings))

    def places_of(self, geo: Geo) -> dict[str, Place]:
        """The city, region and country of `geo` as its texts print them, remembered: a plan not
        made before is most often a town the site has seen, with a new phrase or page."""
        found = self._placed.get(geo)
        if found is None:
            language = self.language
            found = {"city": self.place(geo.name("city", language)),
                     "region": self.place(geo.name("region", language), region_place(geo.region, language)),
                     "country": self.place(geo.name("country", language))}
            if len(self._placed) >= KEPT:
                self._placed.clear()
            self._placed[geo] = found
        return found

    def match(self, view: PageView) -> Match:
        """What the rules, experiments and pools make of `view`, remembered by the page view as
        the site's conditions see it: many towns and phrases, few matches."""
        reading = view.reading
        if reading.unknown or reading.fused:  # what only this site's keywords tell (service.rules.words)
            more = self.speller.correct(reading.unknown).union(
                *(pair.split(JOINED) for pair in reading.fused if pair in self.pairs))
            if not more <= reading.terms:
                view = dataclasses.replace(view, reading=reading._replace(terms=reading.terms | more))
        key = self.conditions.key(view)
        matches = self._matches
        found = matches.get(key)
        if found is None:
            found = matches[key] = match(self, view)
            if len(matches) > KEPT:
                del matches[next(iter(matches))]  # the oldest
        return found

    def plan(self, view: PageView) -> Plan:
        """What the rules make of `view`, remembered (`plans`). The path only decides which pages
        match, so a path plans as the first path seen that the same pages match: a catalogue's
        10,000 items under one glob share their plans as one page would."""
        path = self._standing.get(view.path)
        if path is None:
            exact, globbed = self._pages
            matched = (exact.get(view.path, ()), tuple([n for n, pages in globbed if pages.match(view.path)]))
            if len(self._standing) >= KEPT:
                self._standing.clear()
                self._first.clear()
            path = self._standing[view.path] = self._first.setdefault(matched, view.path)
        return planned(self.serial, view if path == view.path else view.at(path))

    def forget(self) -> None:
        """Empty the memos (when new rules replace these; the plans of every site, which new
        rules replace together)."""
        planned.cache_clear()
        self._standing.clear()
        self._first.clear()
        self._matches.clear()
        self._placed.clear()
        self.conditions.forget()


# Named tuples, not frozen dataclasses: an outcome is made for every page view, a match and a
# plan for every one the memos have not seen.
class Outcome(NamedTuple):
    swaps: tuple[tuple[Slot, str], ...]  # what each slot is set to
    experiments: dict[str, str]  # experiment → variant
    pool: Pool | None


class Match(NamedTuple):
    """What a site's rules make of a page view before any text is rendered."""

    experiments: tuple[Experiment, ...]  # those whose pages and conditions the page view meets
    texts: tuple[tuple[Slot, Text], ...]  # the first matching rule's value per slot
    pool: Pool | None


class Plan(NamedTuple):
    """All of a decision but the draw of the experiments' variants: a function of the page view's
    page, phrase, traffic source, place and device, which visitors share."""

    experiments: tuple[Experiment, ...]
    swaps: tuple[tuple[Slot, str], ...]  # the rules' values, rendered for this page view
    pool: Pool | None
    context: Mapping[str, Any]  # what the variants' texts render with


def decide(site: Site, view: PageView, forced: Mapping[str, str] | None = None) -> Outcome:
    """What this page view sees. `forced` pins experiments to variants (previews)."""
    if view.bot:
        return Outcome((), {}, None)
    plan = site.plan(view)
    if not plan.experiments:
        return Outcome(plan.swaps, {}, plan.pool)
    chosen: dict[str, str] = {}
    texts: dict[Slot, str | None] = {}  # slot → value; None keeps the page's own
    for experiment in plan.experiments:
        variant = (forced and _forced_variant(experiment, forced)) or experiment.winner or experiment.assign(view.vid)
        if experiment.winner is None:  # an ended experiment assigns and counts nobody
            chosen[experiment.id] = variant.id
        for swap in variant.swaps:
            texts.setdefault(swap.slot, swap.text.render(plan.context))
        for slot in experiment.slots:
            texts.setdefault(slot, None)
    for slot, text in plan.swaps:  # experiments own their slots, in control too
        texts.setdefault(slot, text)
    swaps = tuple((slot, text) for slot, text in texts.items() if text is not None)
    return Outcome(swaps, chosen, plan.pool)


def _page_index(every: Iterable[Pages]) -> tuple[dict[str, tuple[int, ...]], tuple[tuple[int, Pages], ...]]:
    """Each set of pages numbered: plain paths → the numbers of the sets that name them, and
    the sets with globs, which a new path tries one by one. The sets of every page are left out:
    they match whatever the path."""
    exact: dict[str, tuple[int, ...]] = {}
    globbed = []
    for n, pages in enumerate({pages.globs: pages for pages in every if pages.globs}.values()):
        if pages.exact:
            for path in pages.exact:
                exact[path] = (*exact.get(path, ()), n)
        else:
            globbed.append((n, pages))
    return exact, tuple(globbed)


_SERIALS = itertools.count()
# A site by its serial: the memo of plans holds no site, whose rules would live as long as its
# plans, and a plan of old rules never answers for the new rules' site of the same id.
_SITES: weakref.WeakValueDictionary[int, Site] = weakref.WeakValueDictionary()


@functools.lru_cache(maxsize=PLANS_KEPT)
def planned(serial: int, view: PageView) -> Plan:
    """`plan` of the site of that serial, remembered: page views compare by what plans read, and
    page views repeat it."""
    return plan(_SITES[serial], view)


def plan(site: Site, view: PageView) -> Plan:
    found = site.match(view)
    context = _context(site, view)
    rendered = ((slot, text.render(context)) for slot, text in found.texts)
    swaps = tuple((slot, text) for slot, text in rendered if text is not None)
    return Plan(found.experiments, swaps, found.pool, context)


def match(site: Site, view: PageView) -> Match:
    experiments = tuple(experiment for experiment in site.experiments
                        if experiment.pages.match(view.path) and experiment.when.matches(view))
    texts: dict[Slot, Text] = {}
    for rule in site.rules.candidates(view):
        if rule.matches(view):
            for swap in rule.swaps:
                texts.setdefault(swap.slot, swap.text)
    pool = next((pool for pool in site.pools if pool.matches(view)), None)
    return Match(experiments, tuple(texts.items()), pool)


def _forced_variant(experiment: Experiment, forced: Mapping[str, str]) -> Variant | None:
    wanted = forced.get(experiment.id)
    return next((variant for variant in experiment.variants if variant.id == wanted), None)


def _context(site: Site, view: PageView) -> dict[str, Any]:
    traffic = view.traffic
    keyword = _keyword(traffic.phrase, site.language)
    if site.language == "ru" and keyword.phrase:  # without the town it names: texts name it with `city`
        city = view.geo.names.get("ru", {}).get("city")
        if names_a_place(view.reading.terms, city):
            keyword = _without_places(keyword, city)
    elif keyword.phrase and (own := _own_place(view.geo)):
        keyword = _without_own_place(keyword, own)
    if view.reading.unknown and keyword.phrase:  # its typos of the site's keywords, as they spell them
        respelt = site.speller.respell(keyword.phrase, view.reading.unknown)
        if respelt != keyword.phrase:  # else the one remembered for the phrase, not one more per plan
            keyword = Keyword(respelt)
    context: dict[str, Any] = {
        "keyword": keyword,
        "phrase": traffic.phrase or "",
        "source": traffic.source or "",
        "medium": traffic.medium,
        "campaign": traffic.campaign or "",
    }
    if site.uses_places:
        context.update(site.places_of(view.geo))
    return context


@functools.lru_cache(maxsize=4096)  # phrases recur: one value each, which renders are remembered by
def _keyword(phrase: str | None, language: str) -> Keyword:
    return Keyword(as_meant(phrase) if phrase and language == "ru" else phrase)


@functools.lru_cache(maxsize=4096)
def _without_places(keyword: Keyword, city: str | None) -> Keyword:
    return Keyword(without_places(keyword.phrase or "", city))


def _own_place(geo: Geo) -> tuple[str, ...]:
    """The visitor's town and state in English, and the state's code in the US («TX»)."""
    names = geo.names.get("en", {})
    code = geo.region[3:] if geo.region and geo.region.startswith("US-") else ""
    return tuple(name for name in (names.get("city"), names.get("region"), code) if name)


@functools.lru_cache(maxsize=4096)
def _without_own_place(keyword: Keyword, names: tuple[str, ...]) -> Keyword:
    return Keyword(without_own_place(keyword.phrase or "", names))
