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
import collections
import dataclasses
import datetime
import functools
import hashlib
import itertools
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from functools import partial
from operator import attrgetter
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from service.analytics.stats import EXPECTED_VISITORS
from service.rules.geo import Geo
from service.rules.patterns import AnyOf, Linear, PatternError
from service.rules.phrase import Keyword, Traffic
from service.rules.places import Place, place
from service.rules.placewords import names_a_place, without_places
from service.rules.regions import region_place
from service.rules.templates import Text
from service.rules.typos import Speller
from service.rules.words import JOINED, KeywordTerms, Narrowing, Reading, as_meant

BUCKETS = 10_000  # assignment resolution: weights are honoured to 0.01%
# The most recently used, of every site a worker serves together. A busy site's page views repeat
# from more plans than a few thousand (towns × phrases × pages), and a memo smaller than what
# repeats misses on each in turn. A worker serving many sites keeps that many in all, not that many a site.
PLANS_KEPT = 16_384
KEPT = 4096  # entries of each of a site's other memos: paths, matches, places, patterns


# Not frozen, though nothing changes one: a frozen dataclass sets each field through
# `object.__setattr__`, several times what building a plain one costs (docs/PERFORMANCE.md).
@dataclass(slots=True, unsafe_hash=True)
class PageView:
    """What is known about one page view; built once per request, never changed (plans are
    remembered by it).

    Page views compare equal when all but the visitor is: the visitor id only draws the variants
    of experiments, so what the rest of a decision makes of a page view (a `Plan`) serves them all.
    """

    vid: str = field(compare=False)
    path: str
    traffic: Traffic
    reading: Reading = field(compare=False)  # of the phrase, which the traffic holds
    phrase: str  # normalised: lower case, ё→е, no punctuation
    geo: Geo
    device: str  # mobile | tablet | desktop
    bot: bool = False

    def at(self, path: str) -> PageView:
        """The same page view on `path` (`dataclasses.replace` costs several times more)."""
        return PageView(self.vid, path, self.traffic, self.reading, self.phrase, self.geo, self.device, self.bot)


@dataclass(frozen=True, slots=True)
class Pages:
    """Path globs: `*` stays within one path segment, `**` crosses segments.

    A glob with one wildcard matches on `re` in time linear in the path; with more, a path
    made for it would make `re` backtrack for its length to the power of the wildcards, so
    those match on RE2 (`service.rules.patterns`), linear too and only a little slower.
    """

    globs: tuple[str, ...] = ()
    _simple: re.Pattern[str] | None = None
    _wild: Linear | None = None

    @classmethod
    def compile(cls, globs: Iterable[str]) -> Pages:
        globs = tuple(globs)
        if not globs:
            return cls()
        simple: list[str] = []
        wild: list[str] = []
        for glob in globs:
            (simple if len(_WILDCARD.findall(glob)) <= 1 else wild).append(_glob_regex(normalise_path(glob)))
        return cls(globs, re.compile(f"(?:{'|'.join(simple)})") if simple else None,
                   Linear(f"(?:{'|'.join(wild)})") if wild else None)

    @property
    def exact(self) -> tuple[str, ...]:
        """The paths, when every glob is a plain path; else empty."""
        if not self.globs or any("*" in glob for glob in self.globs):
            return ()
        return tuple(normalise_path(glob) for glob in self.globs)

    def match(self, path: str) -> bool:
        if self._simple is None and self._wild is None:
            return True
        return ((self._simple is not None and self._simple.fullmatch(path) is not None)
                or (self._wild is not None and self._wild.fullmatch(path)))


def normalise_path(path: str) -> str:
    """'/catalog/' and '/catalog' are one page; '/' stays '/'."""
    return path.rstrip("/") or "/"


_WILDCARD = re.compile(r"(\*\*|\*)")  # captured: split keeps the wildcards


def _glob_regex(glob: str) -> str:
    parts = _WILDCARD.split(glob)
    return "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )


@dataclass(frozen=True, slots=True)
class When:
    """A rule's conditions: all must hold; each set holds when the page view has any of it."""

    keywords: tuple[frozenset[str], ...] = ()  # term sets: any, whole, in the phrase
    guarded: tuple[KeywordTerms, ...] = ()  # keywords with minus words or Direct's operators
    exact: bool = False  # keywords match the phrase's lemmas, not all its terms
    phrase_regex: Linear | None = None
    sources: frozenset[str] | None = None
    media: frozenset[str] | None = None
    campaigns: frozenset[str] | None = None
    countries: frozenset[str] | None = None
    regions: frozenset[str] | None = None
    cities: frozenset[str] | None = None  # casefolded names
    devices: frozenset[str] | None = None
    # Checks only the conditions that are set: a rule sets one or two of the nine.
    _check: Callable[[PageView], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks: list[Callable[[PageView], bool]] = []
        if self.keywords or self.guarded:
            checks.append(partial(_any_keyword, self.keywords, self.guarded,
                                  attrgetter("reading.lemmas" if self.exact else "reading.terms")))
        if self.phrase_regex is not None:
            checks.append(partial(_phrase_matches, self.phrase_regex))
        for name, value in _VALUES:
            allowed = getattr(self, name)
            if allowed is not None:
                checks.append(partial(_holds, allowed, value))
        if self.cities is not None:
            checks.append(partial(_in_cities, self.cities))
        check = checks[0] if len(checks) == 1 else partial(_all_hold, tuple(checks))
        object.__setattr__(self, "_check", check)

    def matches(self, view: PageView) -> bool:
        return self._check(view)


# The conditions on one value of the page view, and where the page view keeps that value.
_VALUES = (
    ("sources", attrgetter("traffic.source")),
    ("media", attrgetter("traffic.medium")),
    ("campaigns", attrgetter("traffic.campaign")),
    ("countries", attrgetter("geo.country")),
    ("regions", attrgetter("geo.region")),
    ("devices", attrgetter("device")),
)


def _all_hold(checks: tuple[Callable[[PageView], bool], ...], view: PageView) -> bool:
    return all(check(view) for check in checks)


def _any_keyword(keywords: tuple[frozenset[str], ...], guarded: tuple[KeywordTerms, ...],
                 terms_of: Callable[[PageView], frozenset[str]], view: PageView) -> bool:
    terms = terms_of(view)
    # Most candidates are keyword rules: no generator for the common case.
    return any(map(terms.issuperset, keywords)) or any(
        keyword.minus.isdisjoint(terms) and any(map(terms.issuperset, keyword.variants))
        and (keyword.narrowing is None or keyword.narrowing.holds(view.phrase)) for keyword in guarded)


def _phrase_matches(regex: Linear, view: PageView) -> bool:
    return regex.search(view.phrase)


def _holds(allowed: frozenset[str], value_of: Callable[[PageView], str | None], view: PageView) -> bool:
    value = value_of(view)
    return value is not None and value.casefold() in allowed


def _in_cities(cities: frozenset[str], view: PageView) -> bool:
    return not cities.isdisjoint(view.geo.city_keys)


PHRASE_PATTERNS_TRIED = 32  # past this many, page views are told apart by the phrase itself


@dataclass(frozen=True, slots=True)
class Conditions:
    """What a site's conditions name. A page view seen through them (`key`) keeps exactly what
    decides which conditions hold, so page views that differ elsewhere (another town the rules do
    not name, a phrase that matches the same keywords) share what the rules make of them."""

    countries: frozenset[str]  # casefolded, as conditions compare
    regions: frozenset[str]
    cities: frozenset[str]
    sources: frozenset[str]
    media: frozenset[str]
    campaigns: frozenset[str]
    terms: frozenset[str]  # of every keyword, its minus words too
    exact: frozenset[str]  # of the keywords matched exactly
    patterns: AnyOf | None  # phrase regexes, searched at once; None: too many to try each time
    narrowings: tuple[Narrowing, ...]  # what Direct's operators in keywords ask of a phrase
    # phrase → which patterns it matches and which narrowings hold: phrases recur far more often
    # than new ones come
    _matched: dict[str, tuple[bool, ...]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, whens: Iterable[When]) -> Conditions:
        whens = list(whens)

        def named(kind: str) -> frozenset[str]:
            return frozenset().union(*(getattr(when, kind) or () for when in whens))

        patterns = {when.phrase_regex.pattern: when.phrase_regex for when in whens if when.phrase_regex is not None}
        terms = {when: frozenset().union(*when.keywords, *(k.minus.union(*k.variants) for k in when.guarded))
                 for when in whens}
        narrowings = {k.narrowing: None for when in whens for k in when.guarded if k.narrowing is not None}
        return cls(named("countries"), named("regions"), named("cities"), named("sources"), named("media"),
                   named("campaigns"), frozenset().union(*terms.values()),
                   frozenset().union(*(found for when, found in terms.items() if when.exact)),
                   _any_of(tuple(patterns.values())), tuple(narrowings))

    def key(self, view: PageView) -> tuple[Any, ...]:
        geo, traffic = view.geo, view.traffic
        phrase: Any = view.phrase if self.patterns is None else self._phrase_tests(view.phrase)
        return (view.path, view.device, _named(geo.country, self.countries), _named(geo.region, self.regions),
                self.cities & geo.city_keys, _named(traffic.source, self.sources), _named(traffic.medium, self.media),
                _named(traffic.campaign, self.campaigns), self.terms & view.reading.terms,
                self.exact & view.reading.lemmas, phrase)

    def forget(self) -> None:
        self._matched.clear()

    def _phrase_tests(self, phrase: str) -> tuple[bool, ...]:
        """Which phrase patterns the phrase matches, then which keywords' narrowings it meets."""
        assert self.patterns is not None
        matched = self._matched.get(phrase)
        if matched is None:
            if len(self._matched) >= KEPT:
                self._matched.clear()
            matched = self.patterns.search(phrase)
            if self.narrowings:
                matched = (*matched, *(narrowing.holds(phrase) for narrowing in self.narrowings))
            self._matched[phrase] = matched
        return matched


def _any_of(patterns: tuple[Linear, ...]) -> AnyOf | None:
    """The phrase patterns searched at once, if they are few enough and fit RE2's memory together."""
    if len(patterns) > PHRASE_PATTERNS_TRIED:
        return None
    try:
        return AnyOf(patterns)
    except PatternError:
        return None


def _named(value: str | None, names: frozenset[str]) -> str | None:
    """The value where conditions name it; else None, which no condition allows either."""
    return value if value is not None and value.casefold() in names else None


Slot = tuple[str, str]  # (selector, target): what one swap sets on the elements it selects
TARGETS = ("text", "src", "srcset", "href", "show")  # the text, an attribute, or whether it shows


@dataclass(frozen=True, slots=True)
class Swap:
    slot: Slot
    text: Text  # the value set there: the text, the attribute's value, "show" or "hide"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    order: int  # position across the site's files: breaks priority ties
    priority: int
    pages: Pages
    when: When
    swaps: tuple[Swap, ...]

    def matches(self, view: PageView) -> bool:
        return self.pages.match(view.path) and self.when.matches(view)


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


class RuleIndex:
    """Finds the rules that could match a page view without looking at the others.

    Each rule is filed once under its most selective condition: a keyword rule under one
    term of each of its keywords' term sets, a geo rule under its cities, regions or countries, a
    rule for plain paths under those paths. Only what is left (regex- or source-only
    rules, globbed pages) is tried on every page view: it is kept in the order decide tries rules.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        rules = list(rules)
        self.pages = tuple({rule.pages.globs: rule.pages for rule in rules}.values())  # each set of globs once
        # Each bucket maps rule id → rule, so that a page view gathers its candidates with
        # dict.update and a rule filed under two of its keys counts once.
        self.by_term: dict[str, dict[str, Rule]] = {}
        self.by_city: dict[str, dict[str, Rule]] = {}
        self.by_region: dict[str, dict[str, Rule]] = {}
        self.by_country: dict[str, dict[str, Rule]] = {}
        self.by_path: dict[str, dict[str, Rule]] = {}
        rest: list[Rule] = []
        self.whens = tuple(rule.when for rule in rules)
        # A keyword is filed under its rarest term across the site, so a common word such
        # as «купить» never makes every rule that mentions it a candidate.
        frequency = collections.Counter(term for rule in rules for words in _term_sets(rule.when) for term in words)
        for rule in rules:
            when = rule.when
            if when.keywords or when.guarded:
                rarest = {min(words, key=lambda w: (frequency[w], -len(w), w)) for words in _term_sets(when)}
                _file(self.by_term, rarest, rule)
            elif when.cities:
                _file(self.by_city, when.cities, rule)
            elif when.regions:
                _file(self.by_region, when.regions, rule)
            elif when.countries:
                _file(self.by_country, when.countries, rule)
            elif paths := rule.pages.exact:
                _file(self.by_path, paths, rule)
            else:
                rest.append(rule)
        self.rest = tuple(sorted(rest, key=_rank))

    def candidates(self, view: PageView) -> Sequence[Rule]:
        """The rules that could match, highest priority first."""
        found: dict[str, Rule] = {}
        for term in view.reading.terms:
            found.update(self.by_term.get(term, _NONE))
        geo = view.geo
        for city in geo.city_keys:
            found.update(self.by_city.get(city, _NONE))
        found.update(self.by_region.get((geo.region or "").casefold(), _NONE))
        found.update(self.by_country.get((geo.country or "").casefold(), _NONE))
        found.update(self.by_path.get(view.path, _NONE))
        if not found:
            return self.rest
        return sorted([*found.values(), *self.rest], key=_rank)

    def __len__(self) -> int:
        buckets = (self.by_term, self.by_city, self.by_region, self.by_country, self.by_path)
        return len({rule_id for index in buckets for bucket in index.values() for rule_id in bucket}) + len(self.rest)


_NONE: Mapping[str, Rule] = {}


def _term_sets(when: When) -> Iterable[frozenset[str]]:
    return (*when.keywords, *(words for keyword in when.guarded for words in keyword.variants))


def _file(index: dict[str, dict[str, Rule]], keys: Iterable[str], rule: Rule) -> None:
    for key in keys:
        index.setdefault(key, {})[rule.id] = rule


def _rank(rule: Rule) -> tuple[int, int]:
    return -rule.priority, rule.order


@dataclass(frozen=True, slots=True)
class CallSettings:
    secret: bytes | None = None  # HMAC key of POST /v1/calls; None: refuse them
    qualify_after: int = 30  # seconds of talk that make a target call
    unique_within: int = 7 * 86400  # seconds: a caller seen within this is not new
    time_zone: ZoneInfo | None = None  # of the times a PBX writes without a zone
    # Each vendor's credentials (service.integrations.telephony); None: its endpoint refuses the site's calls.
    twilio_auth_token: str | None = None
    mango_api_key: str | None = None
    mango_api_salt: str | None = None
    zadarma_secret: str | None = None  # Zadarma's, or classic Novofon's, API secret
    uis_token: str | None = None  # UIS / CoMagic sign nothing: their URL carries this
    telphin_token: str | None = None  # Telphin neither


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint of the site's own that gets each conversion (service.integrations.webhooks)."""

    url: str
    secret: str
    kinds: frozenset[str] | None = None  # None: every conversion (alerts only where named)
    format: str = "json"  # or "telegram": a Telegram bot's sendMessage to `chat`
    chat: str | None = None

    def takes(self, kind: str) -> bool:
        return kind in self.kinds if self.kinds is not None else kind != "alert"

    @property
    def group(self) -> str:
        """Its consumer group on the conversion log: named by its address, so a reload keeps it."""
        return "hook:" + hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Metrica:
    counter: int
    token: str  # an OAuth token with the right to edit the counter


@dataclass(frozen=True, slots=True)
class GoogleAds:
    customer: str  # digits, no dashes
    actions: Mapping[str, str]  # conversion kind -> conversion action id
    client_id: str
    client_secret: str
    refresh_token: str
    developer_token: str | None = None  # sent if given (Google stopped requiring it in 2026)
    login_customer: str | None = None  # a manager account's id, when it makes the upload


@dataclass(frozen=True, slots=True)
class Exports:
    """Offline conversions for the ad platforms (service.integrations.exports)."""

    kinds: frozenset[str] = frozenset({"qualified_call", "form"})
    value: float = 0
    currency: str = "RUB"
    metrica: Metrica | None = None
    google_ads: GoogleAds | None = None


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """When the site's alerts speak (service.integrations.alerts)."""

    no_calls_for: int = 0  # seconds of working hours without a call; 0: never
    opens: int = 9 * 60  # minutes after midnight, in calls.time_zone
    closes: int = 21 * 60
    days: frozenset[int] = frozenset(range(5))  # Monday is 0


@dataclass(frozen=True, slots=True)
class VisitSettings:
    timeout: int = 1800  # seconds without a page view that end a visit
    lookback: int = 90 * 86400  # seconds a visitor keeps their last non-direct source
    last_non_direct: bool = True  # a direct visit keeps that source (else it is direct)


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
