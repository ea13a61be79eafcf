"""What the words of a search phrase and of a keyword stand for, as rules compare them.

A phrase is read once (`read`, remembered per phrase) into two sets of terms. Its *lemmas* are
every dictionary reading of each word as written («полы» is пол, пола and полый); its *terms*
add what people mean by spellings a dictionary does not hold: a hyphenated compound's parts
(«сплит-системы»: сплит, система), Russian written in Latin letters («kupit kondicioner») or
typed with the keyboard in the Latin layout («rjylbwbjyth»). Two kinds of word are kept aside
for a site to read against its own keywords (`Site.match`): words no dictionary knows, whose
typos it corrects (`service.rules.typos`), and fused compounds («сплитсистемы»,
«евроремонт»), which stand for their two nouns where a keyword names them side by side. A
keyword is compiled when rules load (`keyword_terms`) into the term sets a phrase must hold,
so matching is a subset test; what Yandex Direct's operators ask besides (no other words, a
form, an order) is a test of the phrase's words (`Narrowing`).
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import snowballstemmer

from service.rules.morphology import ANALYZER as _morph
from service.rules.morphology import is_known, likeliest_tag, normal_forms
from service.rules.phrase import as_ye, normalise

JOINED = "+"  # joins the lemmas of a fused compound's two nouns: «сплит+система»
MIN_PART = 4  # letters of each part a fused word is split into: «евро», not «под»
VARIANTS_KEPT = 64  # of one keyword, from the readings of its words
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_BRACKETED = re.compile(r"\[([^\]]*)\]")  # Direct's fixed order: «[москва ремонт]»
_LATIN = re.compile(r"[a-z]")

_stemmer = snowballstemmer.stemmer("english")


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
    terms: frozenset[str]  # and a hyphenated compound's parts, Latin spellings and keyboard layout
    unknown: tuple[str, ...]  # Russian words no dictionary knows (and their guessed lemmas): typos?
    fused: tuple[str, ...]  # the two nouns a fused word may be, joined: «сплит+система»


class Narrowing(NamedTuple):
    """What Yandex Direct's operators ask of a phrase besides a keyword's words: no other words
    («"купить кондиционер"»), a word in the form written («!купить»), words in the order written
    («[москва ремонт]», other words may stand between)."""

    words: int | None  # a quoted keyword's count of words: the phrase has as many
    forms: frozenset[str]  # words the phrase holds as written
    orders: tuple[tuple[frozenset[str], ...], ...]  # of each bracketed group, its words' lemmas in order

    def holds(self, phrase: str) -> bool:
        """Whether a normalised phrase is narrowed so."""
        words = phrase.split()
        if self.words is not None and len(words) != self.words:
            return False
        return self.forms.issubset(words) and all(_in_order(order, words) for order in self.orders)


class KeywordTerms(NamedTuple):
    variants: tuple[frozenset[str], ...]  # a phrase matches when it holds one of these whole
    minus: frozenset[str]  # and none of these
    words: frozenset[str]  # as written (normalised): what a misspelt word may stand for
    pairs: frozenset[str]  # neighbouring nouns, joined: a fused word that is them holds both
    narrowing: Narrowing | None = None  # and, if Direct's operators ask more, that


@functools.lru_cache(maxsize=20_000)
def read(text: str) -> Reading:
    """What a phrase's words stand for (see the module's docstring)."""
    words = normalise(text).split()
    terms: set[str] = set()
    unknown: dict[str, None] = {}
    fused: dict[str, None] = {}
    for word in (*words, *_russian_in_latin(text)):
        more, maybe_typos, pairs = _terms(word)
        terms |= more
        unknown.update(dict.fromkeys(maybe_typos))
        fused.update(dict.fromkeys(pairs))
    lemmas = frozenset().union(*map(readings, words))
    # Most phrases' terms are their lemmas: one set, kept once in the memo.
    return Reading(lemmas, lemmas if terms == lemmas else frozenset(terms), tuple(unknown), tuple(fused))


@functools.lru_cache(maxsize=20_000)
def readings(word: str) -> frozenset[str]:
    """Every lemma of a word: each dictionary reading of a Russian one, the stem of each
    reading of an English one."""
    if _CYRILLIC.search(word):
        try:
            return frozenset(map(as_ye, normal_forms(word)))
        except ValueError:  # pymorphy3 asks unicodedata for names some letters lack (Tangut)
            return frozenset((word,))
    if _LATIN.search(word):
        return frozenset(_stemmer.stemWord(base) for base in (word, *_IRREGULAR.get(word, ())))
    return frozenset((word,))


@functools.lru_cache(maxsize=20_000)
def _terms(word: str) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]:
    """A word's terms: its readings, and those of its parts when it is hyphenated; the words of
    it that may be typos; and the pairs of nouns it may be fused from."""
    terms = readings(word)
    unknown: list[str] = []
    if "-" in word:  # the parts, as if spaced; and the word as if fused («мульти-сплит»)
        more = set(terms)
        for part in filter(None, word.split("-")):
            more |= readings(part)
            unknown += _typo_candidates(part)
        terms = frozenset(more | readings(word.replace("-", "")))
    elif _CYRILLIC.search(word):
        unknown += _typo_candidates(word)
    return terms, tuple(unknown), tuple(sorted(_fused(word)))


def _russian_in_latin(text: str) -> list[str]:
    """A phrase's Latin words as Russian, where they read as Russian (`_latin_russian`)."""
    spelt, retyped = _latin_russian(text)
    return [*spelt, *retyped]


def _latin_russian(text: str) -> tuple[list[str], list[str]]:
    """A phrase's Latin words as Russian spelt in Latin letters («kupit kondicioner»), and as
    typed with the keyboard in its Latin layout («rjylbwbjyth»); each empty unless the phrase
    so read has a dictionary word of five letters or more: «sale» is no «сале»."""
    lowered = text.lower()
    if not _LATIN.search(lowered):  # most phrases: read once, not word by word
        return [], []
    tokens = [token for token in lowered.split() if _LATIN.search(token) and not _CYRILLIC.search(token)]
    if not tokens:
        return [], []
    spelt = [word for token in tokens for word in normalise(spelt_in_cyrillic(token)).split()]  # «stal'»
    # The layout's punctuation keys are letters too: «;» is «ж», «,» is «б».
    retyped = [word for token in tokens for word in normalise(token.translate(_LAYOUT)).split()]
    return _if_russian(spelt), _if_russian(retyped)


def _if_russian(words: list[str]) -> list[str]:
    return words if any(len(word) >= 5 and is_known(word) for word in words) else []


@functools.lru_cache(maxsize=4096)
def as_meant(phrase: str) -> str | None:
    """A Russian site's search phrase as its visitor meant it, for keyword insertion: typed in
    the keyboard's Latin layout, retyped («rjylbwbjyth» → «кондиционер»); spelt in Latin
    letters, None, so that the default shows («kupit kondicioner» is no headline); else as it came."""
    if _CYRILLIC.search(phrase):
        return phrase
    spelt, retyped = _latin_russian(phrase)
    if retyped:
        return phrase.lower().translate(_LAYOUT)
    return None if spelt else phrase


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
    if len(word) < 5 or not _CYRILLIC.search(word) or is_known(word):
        return []
    return [word, *sorted(readings(word) - {word})]


def _splits(word: str) -> list[tuple[str, str]]:
    """The ways a word is two nouns written as one: «сплитсистемы», «евроремонт», «стеклопакет»."""
    if len(word) < 2 * MIN_PART or not _CYRILLIC.search(word):
        return []
    return [(word[:i], word[i:]) for i in range(MIN_PART, len(word) - MIN_PART + 1)
            if is_known(word[:i]) and is_known(word[i:])
            and _noun(word[:i]) and _noun(word[i:])]


def _fused(word: str) -> set[str]:
    """The pairs of nouns a word may be written from, their lemmas joined: «сплит+система»."""
    return {pair for parts in _splits(word) for pair in _pairs(parts, readings)}


def _pairs(nouns: Iterable[str], lemmas: Callable[[str], frozenset[str]]) -> set[str]:
    combinations = itertools.islice(itertools.product(*map(lemmas, nouns)), VARIANTS_KEPT)
    return {sys.intern(JOINED.join(found)) for found in combinations}


def keyword_terms(keyword: str, exact: bool = False) -> KeywordTerms:
    """A keyword's term sets. «сплит система» is held by a phrase with both words, or with the
    compound «сплитсистема»; «-волос» is a minus word, and Direct's other operators narrow the
    match (`Narrowing`), as in Yandex Direct. An `exact` keyword matches the words as written, in
    any of their forms, against a phrase's lemmas."""
    tokens = keyword.split()
    words = normalise(" ".join(token for token in tokens if not token.startswith("-"))).split()
    minus_words = normalise(" ".join(token[1:] for token in tokens if token.startswith("-"))).split()
    narrowing = _narrowing(keyword, len(words))
    if exact:
        return KeywordTerms(_variants([[frozenset((term,)) for term in _meant(word)] for word in words]),
                            frozenset().union(*map(readings, minus_words)), frozenset(), frozenset(), narrowing)
    written = frozenset(map(sys.intern, words + minus_words))
    words = [part for word in words for part in word.split("-") if part]
    # Two neighbouring nouns, which a phrase may write as one word: «сплитсистема», «видеонаблюдение».
    pairs = frozenset().union(*(_pairs(words[i:i + 2], _meant) for i in range(len(words) - 1)
                                if _noun(words[i]) and _noun(words[i + 1])))
    minus = frozenset().union(*(_terms(part)[0] for word in minus_words for part in word.split("-") if part))
    return KeywordTerms(_variants([_choices(word) for word in words]), minus, written, pairs, narrowing)


def _narrowing(keyword: str, words: int) -> Narrowing | None:
    """What Direct's operators in a keyword ask (`Narrowing`), None where it has none. `+word`
    asks nothing: every word counts already."""
    tokens = keyword.replace('"', " ").replace("[", " ").replace("]", " ").split()
    forms = frozenset(normalise(token[1:]) for token in tokens if token.startswith("!")) - {""}
    orders = tuple(order for group in _BRACKETED.findall(keyword)
                   if len(order := tuple(map(_meant, normalise(group).split()))) > 1)
    quoted = keyword.count('"') >= 2
    if not (quoted or forms or orders):
        return None
    return Narrowing(words if quoted else None, forms, orders)


def _in_order(order: tuple[frozenset[str], ...], words: list[str]) -> bool:
    """Whether the words hold a word of each lemma set of `order`, one after another."""
    found = 0
    for word in words:
        if found < len(order) and not readings(word).isdisjoint(order[found]):
            found += 1
    return found == len(order)


def _meant(word: str) -> frozenset[str]:
    """The lemmas a keyword's word means: itself where that is its likeliest reading («пол»,
    not also пола and полый), else every reading («пола»: пол, пола, полый; «mice»: mouse)."""
    found = readings(word)
    if _CYRILLIC.search(word) and word in found:
        try:
            likeliest = as_ye(_morph.parse(word)[0].normal_form)
        except ValueError:
            return found
        if likeliest == word:
            return frozenset((word,))
    return found


def _choices(word: str) -> list[frozenset[str]]:
    """The term sets that stand for one keyword word: each lemma it means, or, for a word fused
    from two nouns, both of them («евроремонт»: евро and ремонт)."""
    choices = [frozenset((term,)) for term in sorted(_meant(word))]
    for parts in _splits(word):
        choices += _variants([[frozenset((term,)) for term in sorted(_meant(part))] for part in parts])
    return choices


@functools.lru_cache(maxsize=100_000)  # the parts of fused words recur: «евро», «ремонт»
def _noun(word: str) -> bool:
    """Whether a Russian word is likeliest a noun: what a compound is made of («стекло пакет»)."""
    try:
        return _CYRILLIC.search(word) is not None and likeliest_tag(word).POS == "NOUN"
    except ValueError:
        return False


def _variants(choices: list[list[frozenset[str]]]) -> tuple[frozenset[str], ...]:
    combinations = itertools.islice(itertools.product(*choices), VARIANTS_KEPT)
    # Interned: 10,000 rules' keywords say «купить» thousands of times.
    return tuple(dict.fromkeys(frozenset(map(sys.intern, frozenset().union(*combination)))
                               for combination in combinations if combination))
