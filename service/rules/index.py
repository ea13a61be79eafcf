"""A site's rules, and the index that hands a page view only those that could match it."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from service.rules.conditions import When
from service.rules.pageview import Pages, PageView
from service.rules.templates import Text

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
