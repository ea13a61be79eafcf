"""The places a search phrase names, left out of keyword insertion.

Russian phrases often end with a town: «окна пвх москва», «купить кондиционер в москве». A text
names the visitor's place in its own words (``{{ keyword() }} {{ city.in }}``), so the phrase's
would say it twice («Окна пвх москва в Москве»), or name another town than the page's.
`without_places` leaves such words out, with the preposition before them: the visitor's own
city in any form, and Russia's larger cities by name or by the nickname people type («спб»,
«питер», «мск»). A larger city whose name is likelier a common word («Клин», «Шахты»,
«Находка») counts only as the visitor's own. English phrases (`without_own_place`) lose the
visitor's own town and state: «ac repair austin tx».
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from service.rules.geo import cities
from service.rules.morphology import likeliest_tag
from service.rules.phrase import normalise
from service.rules.regions import NICKNAMES
from service.rules.words import readings

# Addresses GeoLite2 gives a town for it to count as a larger city: Russia's 180 or so largest.
LARGER = 20_000
_PREPOSITIONS = frozenset({"в", "во", "на", "из", "г", "город"})
_ENGLISH_PREPOSITIONS = frozenset({"in", "near", "around"})
_PUNCTUATION = ",.;:!?"

Name = tuple[frozenset[str], ...]  # each word's lemmas: «нижний новгород» is (нижний), (новгород)


def names_a_place(terms: frozenset[str], city: str | None) -> bool:
    """Whether a phrase of these terms (`service.rules.words.Reading`) may name a place
    `without_places` leaves out: most phrases name none, and this is all they cost."""
    own = _name(city) if city else ()
    return not terms.isdisjoint(_FIRST_WORDS) or (bool(own) and not terms.isdisjoint(own[0]))


def without_places(phrase: str, city: str | None) -> str:
    """`phrase`, as typed, without the places it names and the preposition or «г.» before each
    (see the module's docstring); `city` is the visitor's, in Russian."""
    words = phrase.split()
    lemmas = [_lemmas(word) for word in words]
    own = _name(city) if city else ()
    return _left_out(phrase, words, lambda at: _named_at(lemmas, at, own),
                     lambda word: normalise(word) in _PREPOSITIONS)


def without_own_place(phrase: str, names: tuple[str, ...]) -> str:
    """`phrase` without the visitor's place in English, `names` (their town, their state and
    its code, as American searches add them: «ac repair austin tx»), and «in» or «near» before it."""
    words = phrase.split()
    plain = [word.strip(_PUNCTUATION).lower() for word in words]
    spans = sorted((tuple(name.lower().split()) for name in names if name), key=len, reverse=True)
    return _left_out(phrase, words, lambda at: next((len(span) for span in spans
                                                     if tuple(plain[at:at + len(span)]) == span), 0),
                     lambda word: word.strip(_PUNCTUATION).lower() in _ENGLISH_PREPOSITIONS)


def _left_out(phrase: str, words: list[str], named_at: Callable[[int], int],
              preposition: Callable[[str], bool]) -> str:
    """`phrase` without the runs of `words` that `named_at` says name a place (how many words
    from there), and the prepositions before each."""
    kept: list[str] = []
    at = 0
    while at < len(words):
        size = named_at(at)
        if size:
            while kept and preposition(kept[-1]):
                kept.pop()
            at += size
        else:
            kept.append(words[at])
            at += 1
    return phrase if len(kept) == len(words) else " ".join(kept)


def _lemmas(word: str) -> frozenset[str]:
    """A typed word's lemmas («москве,»: москва); none for words typed as one («окна,москва»)."""
    words = normalise(word).split()
    return readings(words[0]) if len(words) == 1 else frozenset()


def _named_at(lemmas: list[frozenset[str]], at: int, own: Name) -> int:
    """How many words from `at` on name the visitor's city or a larger one; 0 where none starts there."""
    names = [own] if own else []
    for lemma in lemmas[at]:
        names += _LARGER_CITIES.get(lemma, ())
    for name in sorted(names, key=len, reverse=True):  # «Нижний Новгород» whole, not «нижний»
        if len(name) <= len(lemmas) - at and all(not lemmas[at + n].isdisjoint(word) for n, word in enumerate(name)):
            return len(name)
    return 0


@functools.lru_cache(maxsize=4096)
def _name(city: str) -> Name:
    return tuple(readings(word) | {word} for word in normalise(city).split())


def _larger_cities() -> dict[str, tuple[Name, ...]]:
    """The larger cities' names, by each lemma of their first word."""
    names = {city.city_ru for city in cities()
             if city.city_ru and city.addresses >= LARGER and "Geox" in likeliest_tag(city.city_ru.lower())}
    # A nickname that is the start of a name alone is a common word: «нижний».
    names |= {nickname for nickname, city in NICKNAMES.items() if not city.casefold().startswith(nickname)}
    found: dict[str, tuple[Name, ...]] = {}
    for name in map(_name, names):
        for lemma in name[0]:
            found[lemma] = (*found.get(lemma, ()), name)
    return found


_LARGER_CITIES = _larger_cities()
_FIRST_WORDS = frozenset(_LARGER_CITIES)
