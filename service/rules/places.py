"""Place names in every grammatical case, for templates like ``Кондиционеры {{ city.in }}``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from pymorphy3.analyzer import Parse

from service.rules.morphology import ANALYZER as _morph

CASES = ("nomn", "gent", "datv", "accs", "ablt", "loct")
# The forms with a preposition, and the case each one is built from.
PREPOSITIONS = {"in": "loct", "to": "accs", "from": "gent"}
FORMS = (*CASES, *PREPOSITIONS)

# «Ростов-на-Дону», «Комсомольск-на-Амуре»: only the part before these declines.
_INNER_PREPOSITIONS = frozenset({"на", "над", "под", "при", "де", "ди", "дель", "сюр", "ам", "ан"})
# «во» goes before these clusters too, though they do not start with в/ф: «во Пскове».
_VO_CLUSTERS = ("льв", "льг", "мц", "пск", "рж")
_VOWELS = frozenset("аеёиоуыэюя")
_NOMINALS = ("NOUN", "ADJF")
# English names said with «the»: in the United States, to the Netherlands, from the Canary Islands.
_THE = re.compile(r"^(United|Republic|Democratic)\b|\b(Islands|Emirates|States|Kingdom|Republic)$"
                  r"|^(Netherlands|Philippines|Bahamas|Maldives|Gambia|Seychelles|Comoros)$")
# Surname endings shared by towns named after people: «Суворов», «Кропоткин».
_POSSESSIVE = ("ов", "ев", "ёв", "ин", "ын")
_DATA = Path(__file__).parent.parent / "data" / "ru_places.txt"


@dataclass(frozen=True, slots=True)
class Place:
    """A name with its forms; ``{{ city }}`` prints the name, ``{{ city.in }}`` «во Владимире»."""

    name: str
    # A mappingproxy cannot be hashed; the name alone is enough to hash on.
    forms: Mapping[str, str] = field(hash=False)
    brief: Place | None = field(default=None, compare=False)  # the short name usage prefers

    def __str__(self) -> str:
        return self.name

    def __bool__(self) -> bool:
        # A town GeoIP does not know is no town: `{{ city or 'Texas' }}` and `{% if city %}`.
        return bool(self.name)

    @property
    def short(self) -> Place:
        """``{{ region.short.in }}``: «на Камчатке», where ``{{ region.in }}`` is «в Камчатском крае»."""
        return self.brief or self

    def __getitem__(self, key: str) -> str:
        # A typo in a marketer's template should print the name, not break the page.
        return self.forms.get(key, self.name)

    def __getattr__(self, key: str) -> str:
        # Lets the sandbox read ``city.loct``. Checks FORMS rather than self.forms so that
        # an instance whose slots are not filled yet (copy, pickle) cannot recurse.
        if key in FORMS:
            return self.forms[key]
        raise AttributeError(key)


@lru_cache(maxsize=65536)
def place(name: str, language: str = "ru") -> Place:
    """Decline a nominative name; for other languages only the prepositions change."""
    if language != "ru":
        forms = dict.fromkeys(CASES, name)
        named = f"the {name}" if _THE.search(name) else name
        forms.update((key, f"{key} {named}" if name else "") for key in PREPOSITIONS)
        return _make(name, forms)
    forms = _decline(name)
    forms.update((key, _prefix(key, forms[case])) for key, case in PREPOSITIONS.items())
    return _make(name, forms)


def with_overrides(base: Place, overrides: Mapping[str, str]) -> Place:
    """Apply a site's corrections; a corrected case also corrects its prepositional form."""
    forms = {**base.forms, **{key: value for key, value in overrides.items() if key in FORMS}}
    for key, case in PREPOSITIONS.items():
        if case in overrides and key not in overrides:
            forms[key] = _prefix(key, forms[case])
    return _make(base.name, forms, base.brief)


def warm(names: Iterable[str]) -> None:
    """Fill the cache, so that the first visitors from a city do not pay for its declension."""
    for name in names:
        place(name)


def known_places() -> list[str]:
    """The Russian cities and regions of the GeoLite2 database (scripts/extract_places.py)."""
    return _DATA.read_text(encoding="utf-8").splitlines()


def _make(name: str, forms: dict[str, str], brief: Place | None = None) -> Place:
    # Cached places are shared between requests, so their forms must not be mutable.
    return Place(name, MappingProxyType(forms), brief)


def _prefix(key: str, form: str) -> str:
    if not form.strip():
        return ""
    if key == "from":
        return f"из {form}"
    lower = form.lower()
    consonant = lower[1:2].isalpha() and lower[1] not in _VOWELS
    vo = (lower[0] in "вф" and consonant) or lower.startswith(_VO_CLUSTERS)
    return f"{'во' if vo else 'в'} {form}"


@dataclass(frozen=True, slots=True)
class _Token:
    """A space-separated word, perhaps a compound: «Петропавловск-Камчатский», «Стар.Руза»."""

    parts: tuple[str, ...]  # the words, with the separators between them
    declining: tuple[Parse | None, ...]  # for each part, what to inflect; None keeps it
    head: Parse | None  # the reading that agrees with the neighbouring tokens

    def inflect(self, case: str) -> str:
        return "".join(
            part if parse is None else _restore(part, _inflect(parse, case))
            for part, parse in zip(self.parts, self.declining, strict=True)
        )


def _decline(name: str) -> dict[str, str]:
    texts = name.split()
    tokens = [_token(text, attributive=i < len(texts) - 1) for i, text in enumerate(texts)]
    # Leading adjectives and the noun after them decline; what follows is left as written:
    # «в Нижнем Новгороде», «в Республике Татарстан», «в Ханты-Мансийском автономном округе».
    lead = next((i for i, token in enumerate(tokens) if _pos(token.head) != "ADJF"), len(tokens))
    head = tokens[lead].head if lead < len(tokens) and _pos(tokens[lead].head) == "NOUN" else None
    if head is None and not all(text.isupper() for text in texts[lead:]):
        # «Старая Русса»: the noun has no reading, and half a declension reads worse than none.
        # Adjectives alone or before an abbreviation still decline: «в Ненецком АО».
        lead = 0
    declining = [
        (i == lead and head is not None)
        or (i < lead and (head is None or _agree(token.head, head)))
        for i, token in enumerate(tokens)
    ]
    forms = {"nomn": name}
    for case in CASES[1:]:
        words = zip(tokens, texts, declining, strict=True)
        forms[case] = " ".join(token.inflect(case) if d else text for token, text, d in words)
    return forms


def _token(text: str, attributive: bool) -> _Token:
    parts = re.split(r"([-.])", text)
    words = parts[::2]
    if len(words) == 1:
        parse = _parse(text, attributive)
        return _Token((text,), (_declinable(parse),), parse)
    if any(word.lower() in _INNER_PREPOSITIONS for word in words[1:-1]):
        first = _parse(words[0], attributive=False)
        return _Token((words[0], text[len(words[0]) :]), (_declinable(first), None), first)
    if _morph.word_is_known(text.lower()):
        # The dictionary knows many compounds whole: «Санкт-Петербург», «Улан-Удэ».
        whole = _parse(text, attributive)
        return _Token((text,), (_declinable(whole),), whole)
    parses = [_parse(word, attributive=False) for word in words]
    # The last word is the head and the nouns before it are frozen («Усть-Кут», «Кош-Агач»),
    # unless it is an adjective agreeing with a noun before it: «Петропавловск-Камчатский».
    noun = last = max((i for i, word in enumerate(words) if not word.isdigit()), default=0)
    if _pos(parses[last]) == "ADJF":
        noun = next((i for i in reversed(range(last)) if _pos(parses[i]) == "NOUN"), last)
    declining: list[Parse | None] = [None] * len(parts)
    declining[::2] = [
        _declinable(parse)
        if i == noun or (_pos(parse) == "ADJF" and _agree(parse, parses[noun]))
        else None
        for i, parse in enumerate(parses)
    ]
    return _Token(tuple(parts), tuple(declining), parses[noun])


def _parse(word: str, attributive: bool) -> Parse | None:
    """The nominative noun or adjective reading of a word, None if it has none."""
    if not word.replace("-", "").isalpha() or word.isupper():
        return None  # Numbers and abbreviations: «Янино-2», «Ненецкий АО».
    parses = [p for p in _morph.parse(word) if p.tag.case == "nomn" and p.tag.POS in _NOMINALS]
    if not _morph.word_is_known(word.lower()):
        # pymorphy guesses unknown words by their ending. Believe an adjective («Афипский») or
        # a place («Трубчевск»); failing those, a noun in its base form («Магас»), or a plural
        # where the word looks plural («Шушары»), but not «Стрелица» as a plural.
        guesses = [p for p in parses if "Fixd" not in p.tag and "Poss" not in p.tag]
        parses = [p for p in guesses if p.tag.POS == "ADJF" or "Geox" in p.tag] or [
            p
            for p in guesses
            if p.normal_form == p.word or (p.tag.number == "plur" and p.word.endswith(("ы", "и")))
        ]
    adjectives = [p for p in parses if p.tag.POS == "ADJF"]
    if attributive and adjectives:
        return adjectives[0]  # «Тверская область», «Сергиев Посад»
    # Alone, a possessive is not a place: «Гришино» is no form of «Гришин».
    parses = [p for p in parses if "Poss" not in p.tag]
    places = [p for p in parses if "Geox" in p.tag]
    if places:
        # Where the dictionary has a place both ways, decline it: «в Туймазах».
        return min(places, key=lambda p: "Fixd" in p.tag)
    return parses[0] if parses else None


def _declinable(parse: Parse | None) -> Parse | None:
    return None if parse is None or "Fixd" in parse.tag else parse


def _inflect(parse: Parse, case: str) -> str:
    # Places are inanimate: the accusative is the nominative unless feminine singular
    # («в Москву»), never the genitive that a person's reading gives («в Суворова»).
    if case == "accs" and (parse.tag.gender, parse.tag.number) != ("femn", "sing"):
        return str(parse.word)
    if case == "ablt" and "Surn" in parse.tag and parse.word.endswith(_POSSESSIVE):
        return f"{parse.word}ом"  # A town is a noun: «Суворовом», not the surname's «Суворовым».
    kept = {grammeme for grammeme in (parse.tag.gender, parse.tag.number) if grammeme}
    form = parse.inflect({case, *kept}) or parse.inflect({case}) or parse
    return str(form.word)


def _restore(original: str, form: str) -> str:
    """Give a lowercase dictionary form the capitals of the original, and its е for ё."""
    if "ё" not in original.lower():
        form = form.replace("ё", "е")
    sources = original.split("-")
    return "-".join(
        piece.capitalize() if i < len(sources) and sources[i][:1].isupper() else piece
        for i, piece in enumerate(form.split("-"))
    )


def _pos(parse: Parse | None) -> str | None:
    return None if parse is None else str(parse.tag.POS)


def _agree(adjective: Parse | None, noun: Parse | None) -> bool:
    if adjective is None or noun is None or adjective.tag.number != noun.tag.number:
        return False
    return bool(noun.tag.number == "plur" or adjective.tag.gender == noun.tag.gender)
