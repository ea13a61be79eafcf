"""A rule's conditions on a page view (`When`), and what a site's conditions name (`Conditions`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any

from service.rules.pageview import PageView
from service.rules.patterns import AnyOf, Linear, PatternError
from service.rules.words import KeywordTerms, Narrowing

PHRASES_KEPT = 4096  # phrases whose pattern tests a site remembers


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
            if len(self._matched) >= PHRASES_KEPT:
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
