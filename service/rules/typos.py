"""One typo in a search phrase, corrected against a site's own keywords.

A phrase word no dictionary knows («кандиционер», «ремон») stands for a keyword term when it is
within one edit (letters inserted, deleted, replaced or two swapped) of a term of five letters
or more, or two edits of one of nine or more. A word the dictionary knows is never a typo: it
means itself («покупка» is not «купить»). The deletions of the terms' first letters are indexed
when rules load (SymSpell's method), so a correction costs a few dictionary lookups, not a scan
of the keywords, and is remembered per site. Keyword insertion prints such a typo as the
keywords write it (`Speller.respell`).
"""

from __future__ import annotations

import array
import bisect
import itertools
import re
from collections.abc import Iterable
from typing import NamedTuple

from service.rules.phrase import normalise
from service.rules.words import readings

WORDS_KEPT = 4096  # corrections remembered per site
# The letters of a word and of a spelling that deletions are made of (SymSpell's prefix): a
# long word's typo is found by its start, which the lemmas guessed for it share. At ten, a
# spelling cut short has eleven letters or more; a word within two edits of it has nine or
# more, whose deletions go to two edits anyway, so nothing within reach is missed.
PREFIX = 10
_NUMBER_BITS = 20  # a site's keywords have fewer than a million spellings
_NUMBER = (1 << _NUMBER_BITS) - 1
_RUSSIAN_WORD = re.compile(r"[а-я]+")
_NOT_RUSSIAN = re.compile(r"[^а-я]")
_WORD = re.compile(r"[^\W_]+")  # of a phrase as typed (`phrase.normalise`): a typo's digits too («рем0нт»)


def budget(term: str) -> int:
    """The edits a term of this length forgives."""
    return 2 if len(term) >= 9 else 1 if len(term) >= 5 else 0


class Speller:
    """The typos of a site's keywords: of their words as written («цветов») and of their lemmas."""

    def __init__(self, spellings: Iterable[str]) -> None:
        kept = sorted({s for s in spellings if _RUSSIAN_WORD.fullmatch(s) and budget(s)})
        self._spellings = tuple(kept[:_NUMBER + 1])
        # A longer word is no typo of any: its deletions need not be made (a phrase of one word
        # of 200 letters would make 20,000).
        self._longest = max(map(len, self._spellings), default=0)
        # Spellings by their start («кондиционе»: кондиционер, кондиционера...), neighbours in
        # their order, from one bound to the next: a start's deletions are indexed once for them
        # all, which forgive as many edits (those of ten letters or more, two).
        firsts: dict[str, int] = {}
        for number, spelling in enumerate(self._spellings):
            firsts.setdefault(spelling[:PREFIX], number)
        self._bounds = array.array("I", [*firsts.values(), len(self._spellings)])
        # Each deletion as one machine word, sorted: its hash's top bits, then the number of the
        # start it came from; far smaller than a dict of strings (docs/PERFORMANCE.md). A hash
        # that collides only brings spellings that `within` then turns down. Sorted a
        # sixteenth at a time (by their top bits), so that loading the rules never holds a Python
        # object per deletion.
        parts = [array.array("q") for _ in range(16)]
        for number, start in enumerate(firsts):
            for deleted in _deletions(start, budget(start)):
                key = _hashed(deleted) | number
                parts[(key >> 60) + 8].append(key)
        self._deletions = array.array("q")
        for part in parts:
            self._deletions.extend(sorted(part))
        # A bit per hash, about eight per deletion: most of a word's deletions are no
        # spelling's, and a bit tells so for less than the search of the sorted index would.
        self._slots = (1 << max(6, (8 * len(self._deletions)).bit_length())) - 1
        self._bits = bytearray((self._slots >> 3) + 1)
        for key in self._deletions:
            slot = key >> _NUMBER_BITS & self._slots
            self._bits[slot >> 3] |= 1 << (slot & 7)
        self._known: dict[tuple[str, ...], _Correction] = {}

    def __len__(self) -> int:
        return len(self._deletions)

    def correct(self, words: tuple[str, ...]) -> frozenset[str]:
        """The lemmas of the words these are typos of."""
        return self._corrected(words).lemmas

    def respell(self, phrase: str, words: tuple[str, ...]) -> str:
        """The phrase with each of its words that is a typo of these as the site's keywords
        would write it: the spelling nearest the word («Купить окндиционер» → «Купить
        кондиционер»), or one near a lemma guessed for it, in the word's form («кандиционерами»,
        guessed кандиционер: «кондиционерами»)."""
        typo_of = self._corrected(words).typo_of
        if not typo_of:
            return phrase

        def respelt(typed: re.Match[str]) -> str:
            word = normalise(typed[0])
            if word not in words:  # a word the dictionary knows, or one too short for a typo
                return typed[0]
            lemmas = [lemma for lemma in readings(word) if lemma in typo_of and lemma != word]
            if word not in typo_of and not lemmas:
                return typed[0]
            # The spellings near the word, and those near a lemma guessed for it in the word's
            # form, where they are lemmas too («кондиционера» is none: no «кондиционераы»).
            made = {*typo_of.get(word, ()), *(_in_form(spelling, lemma, word) for lemma in lemmas
                                              for spelling in typo_of[lemma] if spelling in readings(spelling))}
            return typed[0] if word in made else _cased(_nearest(word, made), typed[0])

        return _WORD.sub(respelt, phrase)

    def _corrected(self, words: tuple[str, ...]) -> _Correction:
        found = self._known.get(words)
        if found is None:
            if len(self._known) >= WORDS_KEPT:
                self._known.clear()
            near = self._near(words)
            typo_of = {word: spellings for word in words
                       if (spellings := [s for s in near if within(word, s, budget(s))])} if near else {}
            found = self._known[words] = _Correction(
                frozenset().union(*(readings(s) for spellings in typo_of.values() for s in spellings)),
                typo_of) if typo_of else _NO_TYPOS
        return found

    def _near(self, words: tuple[str, ...]) -> set[str]:
        """The spellings that share a deletion with one of `words`: a word and the lemmas
        guessed for it share most of theirs, so each is looked up once."""
        starts: set[tuple[str, int]] = set()  # the words' starts, and the edits their deletions go to
        for word in words:
            # A spelling within two edits is at most two letters longer or shorter than the word.
            # Each letter that is not Russian (a model number's digits) costs an edit of its own.
            if len(word) <= self._longest + 2 and len(_NOT_RUSSIAN.findall(word)) <= 2:
                # Two of the word's letters deleted meet a spelling's deletions only where that
                # spelling forgives two edits (nine letters or more) and is no longer than the word.
                starts.add((word[:PREFIX], 2 if len(word) >= 9 else 1))
        wanted = set().union(*itertools.starmap(_deletions, starts))
        found: set[str] = set()
        deletions, bits, slots = self._deletions, self._bits, self._slots
        for deleted in wanted:
            hashed = hash(deleted) >> _NUMBER_BITS
            slot = hashed & slots
            if not bits[slot >> 3] >> (slot & 7) & 1:
                continue
            key = hashed << _NUMBER_BITS
            at = bisect.bisect_left(deletions, key)
            while at < len(deletions) and deletions[at] & ~_NUMBER == key:
                number = deletions[at] & _NUMBER
                found.update(self._spellings[self._bounds[number]:self._bounds[number + 1]])
                at += 1
        return found


class _Correction(NamedTuple):
    lemmas: frozenset[str]  # of every spelling some word is a typo of
    typo_of: dict[str, list[str]]  # each such word, and those spellings


_NO_TYPOS = _Correction(frozenset(), {})  # what most words get: one for all, not one each in the memo


def _nearest(word: str, spellings: set[str]) -> str:
    """The spelling fewest edits away, and the one as long as the word where two are:
    «кондиционерв» is «кондиционеры» rather than «кондиционер»."""
    nearest = next((found for edits in (1, 2) if (found := [s for s in spellings if within(word, s, edits)])),
                   spellings)
    return min(nearest, key=lambda spelling: (abs(len(spelling) - len(word)), spelling))


def _in_form(spelling: str, lemma: str, word: str) -> str:
    """`spelling` ending as `word` does where `lemma` ends otherwise (from кандиционер to
    кандиционерами: кондиционер to кондиционерами); `spelling` itself where it ends otherwise."""
    same = next((at for at, (a, b) in enumerate(zip(lemma, word, strict=False)) if a != b),
                min(len(lemma), len(word)))
    ending = lemma[same:]
    return spelling[:len(spelling) - len(ending)] + word[same:] if spelling.endswith(ending) else spelling


def _cased(spelling: str, typed: str) -> str:
    """The spelling in the letter case of the word typed: КОНДИЦИОНЕР, Кондиционер, кондиционер."""
    if typed.isupper() and len(typed) > 1:
        return spelling.upper()
    return spelling.capitalize() if typed[0].isupper() else spelling


def _hashed(deleted: str) -> int:
    return (hash(deleted) >> _NUMBER_BITS) << _NUMBER_BITS


def _deletions(word: str, edits: int) -> set[str]:
    """The word and every string made from it by deleting up to `edits` (at most two) letters."""
    found = {word}
    if edits:  # slices: half the cost of joining combinations of one letter fewer
        found.update([word[:i] + word[i + 1:] for i in range(len(word))])
    if edits == 2 and len(word) >= 2:
        found.update(map("".join, itertools.combinations(word, len(word) - 2)))
    return found


def within(a: str, b: str, edits: int) -> bool:
    """Whether `edits` make one word of the other: letters inserted, deleted or replaced, or two
    neighbours swapped (optimal string alignment). Past the letters both start with, each edit
    the first letter left may take is tried, with one edit fewer: a typo's are one or two."""
    if not edits:
        return a == b
    if abs(len(a) - len(b)) > edits:
        return False
    shorter = min(len(a), len(b))
    start = 0
    while start < shorter and a[start] == b[start]:
        start += 1
    if start == shorter:  # what is left of the longer is letters inserted
        return True
    a, b = a[start:], b[start:]
    return (within(a[1:], b[1:], edits - 1)  # replaced
            or within(a[1:], b, edits - 1)  # deleted
            or within(a, b[1:], edits - 1)  # inserted
            or (a[1:2] == b[:1] and a[:1] == b[1:2] and within(a[2:], b[2:], edits - 1)))  # swapped
