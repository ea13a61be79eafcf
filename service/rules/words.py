"""What the words of a search phrase and of a keyword stand for, as rules compare them.

A phrase is read once (`read`, remembered per phrase) into two sets of terms. Its *lemmas* are
every dictionary reading of each word as written («полы» is пол, пола and полый); its *terms*
add what people mean by spellings a dictionary does not hold: a hyphenated or fused compound
(«сплит-системы», «сплитсистемы»: сплит, система and the compound сплит+система), Russian
written in Latin letters («kupit kondicioner») or typed with the keyboard in the Latin layout
(«rjylbwbjyth»). Words no dictionary knows are kept aside: a site corrects their typos against
its own keywords (`service.rules.typos`). A keyword is compiled when rules load
(`keyword_terms`) into the term sets a phrase must hold, so matching is a subset test.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import pymorphy3
import snowballstemmer

from service.rules.phrase import normalise

JOINED = "+"  # joins the parts of a compound in its term: «сплит+система»
MIN_PART = 4  # letters of each part a fused word is split into: «евро», not «под»
VARIANTS_KEPT = 64  # of one keyword, from the readings of its words
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[a-z]")

_morph = pymorphy3.MorphAnalyzer(lang="ru")
_stemmer = snowballstemmer.stemmer("english")
_YO = str.maketrans("ё", "е")


def _irregular_forms() -> dict[str, frozenset[str]]:
    bases: dict[str, set[str]] = {}
    text = (Path(__file__).parent.parent / "data" / "en_irregular.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            base, *forms = line.split()
            for form in forms:
                bases.setdefault(form, set()).add(base)
    return {form: frozenset(found) for form, found in bases.items()}


_IRREGULAR = _irregular_forms()

# Russian in Latin letters, as people type it (no one standard): the longest spelling first.
_LATIN_SPELLINGS = {
    "shch": "щ", "sch": "щ", "zh": "ж", "kh": "х", "ts": "ц", "tz": "ц", "ch": "ч", "sh": "ш",
    "yu": "ю", "ju": "ю", "iu": "ю", "ya": "я", "ja": "я", "ia": "я", "yo": "е", "jo": "е",
    "a": "а", "b": "б", "c": "ц", "d": "д", "e": "е", "f": "ф", "g": "г", "h": "х", "i": "и",
    "j": "й", "k": "к", "l": "л", "m": "м", "n": "н", "o": "о", "p": "п", "q": "к", "r": "р",
    "s": "с", "t": "т", "u": "у", "v": "в", "w": "в", "x": "кс", "z": "з", "'": "ь",
}
_SPELLING = re.compile("|".join(sorted([*_LATIN_SPELLINGS, "ye", "y"], key=len, reverse=True)) + "|.", re.DOTALL)
_VOWELS = "аеиоуыэюяьъ"
# The Russian keyboard's letter on each key of the Latin (QWERTY) layout.
_LAYOUT = str.maketrans("qwertyuiop[]asdfghjkl;'zxcvbnm,.`", "йцукенгшщзхъфывапролджэячсмитьбюё")


class Reading(NamedTuple):
    lemmas: frozenset[str]  # each word's dictionary readings, the word as written
    terms: frozenset[str]  # and its compounds, Latin spellings and keyboard layout
    unknown: tuple[str, ...]  # Russian words no dictionary knows (and their guessed lemmas): typos?


class KeywordTerms(NamedTuple):
    variants: tuple[frozenset[str], ...]  # a phrase matches when it holds one of these whole
    minus: frozenset[str]  # and none of these
    words: frozenset[str]  # as written (normalised): what a misspelt word may stand for


@functools.lru_cache(maxsize=20_000)
def read(text: str) -> Reading:
    """What a phrase's words stand for (see the module's docstring)."""
    words = normalise(text).split()
    terms: set[str] = set()
    unknown: dict[str, None] = {}
    for word in (*words, *_russian_in_latin(text)):
        more, maybe_typos = _terms(word)
        terms |= more
        unknown.update(dict.fromkeys(maybe_typos))
    return Reading(frozenset().union(*map(readings, words)), frozenset(terms), tuple(unknown))


@functools.lru_cache(maxsize=100_000)
def readings(word: str) -> frozenset[str]:
    """Every lemma of a word: each dictionary reading of a Russian one, the stem of each
    reading of an English one."""
    if _CYRILLIC.search(word):
        try:
            return frozenset(parse.normal_form.translate(_YO) for parse in _morph.parse(word))
        except ValueError:  # pymorphy3 asks unicodedata for names some letters lack (Tangut)
            return frozenset((word,))
    if _LATIN.search(word):
        return frozenset(_stemmer.stemWord(base) for base in (word, *_IRREGULAR.get(word, ())))
    return frozenset((word,))


@functools.lru_cache(maxsize=100_000)
def _terms(word: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """A word's terms: its readings, and those of its parts when it is a compound; and the
    words of it that may be typos."""
    terms = set(readings(word))
    unknown: list[str] = []
    if "-" in word:  # the parts, as if spaced or fused: a keyword's compounds hold them so too
        for part in filter(None, word.split("-")):
            terms |= readings(part)
            unknown += _typo_candidates(part)
        terms |= readings(word.replace("-", ""))
    elif _CYRILLIC.search(word):
        unknown += _typo_candidates(word)
        for parts in _splits(word):
            terms |= _compounds(parts)
    return frozenset(terms), tuple(unknown)


def _russian_in_latin(text: str) -> list[str]:
    """A phrase's Latin words as Russian, where they read as Russian: spelt in Latin letters
    («kupit kondicioner») or typed with the keyboard in its Latin layout («rjylbwbjyth»). Only
    a phrase with a dictionary word of five letters or more so read counts: «sale» is no «сале»."""
    tokens = [token for token in text.lower().split() if _LATIN.search(token) and not _CYRILLIC.search(token)]
    if not tokens:
        return []
    found: list[str] = []
    spelt = [word for token in tokens for word in normalise(spelt_in_cyrillic(token)).split()]  # «stal'»
    # The layout's punctuation keys are letters too: «;» is «ж», «,» is «б».
    retyped = [word for token in tokens for word in normalise(token.translate(_LAYOUT)).split()]
    for words in (spelt, retyped):
        if any(len(word) >= 5 and _morph.word_is_known(word) for word in words):
            found += words
    return found


def spelt_in_cyrillic(word: str) -> str:
    """A Russian word written in Latin letters, back in Cyrillic: «kondicioner» → «кондиционер»."""
    out = ""
    for match in _SPELLING.finditer(word):
        latin = match[0]
        after_consonant = out[-1:].isalpha() and out[-1] not in _VOWELS
        if latin == "y":  # «novyy» is «новый»
            out += "ы" if after_consonant else "й"
        elif latin == "ye":  # «teplye» is «теплые», «yeli» «ели»
            out += "ые" if after_consonant else "е"
        else:
            out += _LATIN_SPELLINGS.get(latin, latin)
    return out


def _typo_candidates(word: str) -> list[str]:
    if len(word) < 5 or not _CYRILLIC.search(word) or _morph.word_is_known(word):
        return []
    return [word, *sorted(readings(word) - {word})]


def _splits(word: str) -> list[tuple[str, str]]:
    """The ways a fused word is two words a dictionary knows: «сплитсистемы», «евроремонт»."""
    if len(word) < 2 * MIN_PART or not _CYRILLIC.search(word):
        return []
    return [(word[:i], word[i:]) for i in range(MIN_PART, len(word) - MIN_PART + 1)
            if _morph.word_is_known(word[:i]) and _morph.word_is_known(word[i:])]


def _compounds(parts: Iterable[str], lemmas: Callable[[str], frozenset[str]] = readings) -> set[str]:
    """The terms of the words as one: «сплит+система»."""
    combinations = itertools.islice(itertools.product(*map(lemmas, parts)), VARIANTS_KEPT)
    return {JOINED.join(lemmas) for lemmas in combinations}


def keyword_terms(keyword: str, exact: bool = False) -> KeywordTerms:
    """A keyword's term sets. «сплит система» is held by a phrase with both words, or with the
    compound «сплитсистема»; «-волос» is a minus word, as in Yandex Direct. An `exact` keyword
    matches the words as written, in any of their forms, against a phrase's lemmas."""
    tokens = keyword.split()
    words = normalise(" ".join(token for token in tokens if not token.startswith("-"))).split()
    minus_words = normalise(" ".join(token[1:] for token in tokens if token.startswith("-"))).split()
    if exact:
        return KeywordTerms(_variants([[frozenset((term,)) for term in _meant(word)] for word in words]),
                            frozenset().union(*map(readings, minus_words)), frozenset())
    written = frozenset(words + minus_words)
    words = [part for word in words for part in word.split("-") if part]
    choices = [_choices(word) for word in words]
    variants = list(_variants(choices))
    for i in range(len(words) - 1):  # two Russian neighbours written as one word: «сплитсистема»
        if _CYRILLIC.search(words[i]) and _CYRILLIC.search(words[i + 1]):
            fused = [frozenset((term,)) for term in sorted(_compounds(words[i : i + 2], _meant))]
            variants += _variants([*choices[:i], fused, *choices[i + 2 :]])
    minus = frozenset().union(*(_terms(part)[0] for word in minus_words for part in word.split("-") if part))
    return KeywordTerms(tuple(dict.fromkeys(variants))[:VARIANTS_KEPT], minus, written)


def _meant(word: str) -> frozenset[str]:
    """The lemmas a keyword's word means: itself where that is its likeliest reading («пол»,
    not also пола and полый), else every reading («пола»: пол, пола, полый; «mice»: mouse)."""
    found = readings(word)
    if _CYRILLIC.search(word) and word in found:
        try:
            likeliest = _morph.parse(word)[0].normal_form.translate(_YO)
        except ValueError:
            return found
        if likeliest == word:
            return frozenset((word,))
    return found


def _choices(word: str) -> list[frozenset[str]]:
    """The term sets that stand for one keyword word: each lemma it means, or, for a fused word
    no dictionary knows, its parts («сплитсистема»: сплит and система)."""
    choices = [frozenset((term,)) for term in sorted(_meant(word))]
    for parts in _splits(word):
        choices += [frozenset((term,)) for term in sorted(_compounds(parts, _meant))]
        choices += _variants([[frozenset((term,)) for term in sorted(_meant(part))] for part in parts])
    return choices


def _variants(choices: list[list[frozenset[str]]]) -> tuple[frozenset[str], ...]:
    combinations = itertools.islice(itertools.product(*choices), VARIANTS_KEPT)
    return tuple(frozenset().union(*combination) for combination in combinations if combination)
