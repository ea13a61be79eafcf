"""Russian morphology: pymorphy3's analyzer of the OpenCorpora dictionary, one per process.

A phrase's words (`service.rules.words`) and a town's cases (`service.rules.places`) read
the same dictionary, and every `MorphAnalyzer` loads a copy of its own (18 MiB in a worker).

`normal_forms` gives what `ANALYZER.parse` gives a word, normal forms only. For a lower-case
word of Russian letters, as phrases hold them, it walks the dictionary itself the way
pymorphy3's units do (by lookup, by a known or unknown prefix, by a known suffix), without
what only a `Parse` needs: the readings' scores, their tag objects and their method stacks.
A word no dictionary holds is where that counts (docs/PERFORMANCE.md, "Unseen words read
the dictionary directly"); `tests/test_properties.py` holds it to the analyzer's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pymorphy3
from pymorphy3 import units
from pymorphy3.utils import word_splits

# Loading the dictionaries takes under a tenth of a second: on import, not under a lock.
ANALYZER = pymorphy3.MorphAnalyzer(lang="ru")

_RUSSIAN_LETTERS = re.compile("[а-яё]+")
_UNITS = {type(unit): unit for unit, _ in ANALYZER._units}
_KNOWN_PREFIX = _UNITS[units.KnownPrefixAnalyzer]
_KNOWN_SUFFIX = _UNITS[units.KnownSuffixAnalyzer]
_DICTIONARY = ANALYZER.dictionary
_PARADIGMS = _DICTIONARY.paradigms
_PREFIXES: Sequence[str] = _DICTIONARY.paradigm_prefixes
_SUFFIXES: Sequence[str] = _DICTIONARY.suffixes
_SUBSTITUTES = ANALYZER.char_substitutes
(_SUBSTITUTED,) = (letter.decode() for letter in _SUBSTITUTES)  # е, which the dictionary may spell ё
_WORDS = _DICTIONARY.words
_PREDICTIONS = [(prefix, _DICTIONARY.prediction_suffixes_dawgs[prefix_id])
                for prefix_id, prefix in _KNOWN_SUFFIX._paradigm_prefixes]
_GRAMTAB = _DICTIONARY.gramtab
_SPELT = tuple(map(str, _GRAMTAB))
_CHANCES = ANALYZER.prob_estimator.p_t_given_w  # P(tag | word) for the dictionary's words, as integers
# Each tag by one id, as `Tag`s compare (the gramtab spells a few tags two ways), UnknAnalyzer's
# among them; and whether words may be made on a tag's model: the units skip readings of those not.
_EVERY_TAG = [*_GRAMTAB, _UNITS[units.UnknAnalyzer]._tag]
_TAGS = {tag._grammemes_tuple: n for n, tag in reversed(list(enumerate(_EVERY_TAG)))}
_TAG = tuple(_TAGS[tag._grammemes_tuple] for tag in _EVERY_TAG)
_PRODUCTIVE = tuple(tag.is_productive() for tag in _EVERY_TAG)
_UNKNOWN = _TAG[-1]

# A reading: the word as the dictionary spells it, its tag's id, its normal form, and the
# paradigm of the dictionary word it was read from (None for a reading of no paradigm).
Reading = tuple[str, int, str, int | None]
Seen = set[tuple[str, int, int | None]]


def normal_forms(word: str) -> set[str]:
    """The normal forms of every reading `ANALYZER.parse` gives a word."""
    if not _RUSSIAN_LETTERS.fullmatch(word):
        return {parse.normal_form for parse in ANALYZER.parse(word)}
    return {reading[2] for reading in _readings(word)}


def is_known(word: str) -> bool:
    """`ANALYZER.word_is_known` of a lower-case word, by an exact lookup where it has no е."""
    if _SUBSTITUTED in word:
        return bool(_WORDS.similar_keys(word, _SUBSTITUTES))
    return word in _WORDS


def likeliest_tag(word: str) -> Any:
    """`ANALYZER.parse(word)[0].tag`. Of a dictionary word's readings, pymorphy3 puts first the
    likeliest by its estimate of P(tag | word), the first in the dictionary's order among equals
    or when it has no estimate; only those chances are read here, no reading built."""
    if not (_RUSSIAN_LETTERS.fullmatch(word) and is_known(word)):
        return ANALYZER.parse(word)[0].tag
    best, likeliest = -1, None
    for _, forms in _similar(_WORDS, word):
        for para_id, idx in forms:
            paradigm = _PARADIGMS[para_id]
            tag_id = paradigm[len(paradigm) // 3 + idx]
            chance = _CHANCES.get(f"{word}:{_SPELT[tag_id]}", 0)
            if chance > best:
                best, likeliest = chance, _GRAMTAB[tag_id]
    return likeliest


def _readings(word: str) -> list[Reading]:
    """`ANALYZER.parse`'s readings of a word of lower-case Russian letters, unscored and in no
    order: its units in turn, each terminal one ending the walk if there are readings by then.
    The units that read a word's shape (digits, Latin, hyphens, capitals) find nothing here."""
    found = _by_lookup(word)
    if found:
        return found
    seen: Seen = set()
    found = _by_prefix(word, seen)
    if found:
        return found
    found = _by_unknown_prefix(word, seen)
    found += _by_suffix(word, seen)
    return found or [(word, _UNKNOWN, word, None)]  # UnknAnalyzer's


def _similar(dawg: Any, key: str) -> list[tuple[str, list[tuple[int, ...]]]]:
    """A DAWG's items for `key` and for it spelt with ё for е (`similar_items`). Most keys have no
    е, and an exact lookup costs a fifth of the search with substitutes."""
    if _SUBSTITUTED in key:
        return dawg.similar_items(key, _SUBSTITUTES)  # type: ignore[no-any-return]
    found = dawg.get(key)
    return [(key, found)] if found else []


def _by_lookup(word: str) -> list[Reading]:
    """The dictionary's readings of the word (ё for е where the dictionary has it)."""
    found: list[Reading] = []
    for spelt, forms in _similar(_WORDS, word):
        for para_id, idx in forms:
            paradigm = _PARADIGMS[para_id]
            size = len(paradigm) // 3
            normal = _normal(paradigm, size, idx, spelt) if idx else spelt
            found.append((spelt, _TAG[paradigm[size + idx]], normal, para_id))
    return found


def _normal(paradigm: Sequence[int], size: int, idx: int, spelt: str) -> str:
    """The normal form of the `idx`th form (not the first) of a paradigm, `spelt` so (`build_normal_form`)."""
    suffix = _SUFFIXES[paradigm[idx]]
    stem = spelt[len(_PREFIXES[paradigm[2 * size + idx]]):len(spelt) - len(suffix)]
    return _PREFIXES[paradigm[2 * size]] + stem + _SUFFIXES[paradigm[0]]


def _prefixed(prefix: str, readings: list[Reading], found: list[Reading], seen: Seen) -> None:
    """The productive readings of a word's remainder, as readings of the word with `prefix`."""
    for spelt, tag, normal, para_id in readings:
        if _PRODUCTIVE[tag]:
            reading = (prefix + spelt, tag, prefix + normal, para_id)
            key = reading[0], tag, para_id
            if key not in seen:
                seen.add(key)
                found.append(reading)


def _by_prefix(word: str, seen: Seen) -> list[Reading]:
    """KnownPrefixAnalyzer: a known prefix and a word read whole («псевдо» + «кошка»)."""
    found: list[Reading] = []
    for prefix in sorted(_KNOWN_PREFIX.get_prefixes(word), key=len, reverse=True):
        if len(word) - len(prefix) >= _KNOWN_PREFIX.min_remainder_length:
            _prefixed(prefix, _readings(word[len(prefix):]), found, seen)
    return found


def _by_unknown_prefix(word: str, seen: Seen) -> list[Reading]:
    """UnknownPrefixAnalyzer: up to five letters of any prefix and a dictionary word («байт» + «код»)."""
    found: list[Reading] = []
    for prefix, rest in word_splits(word):
        _prefixed(prefix, _by_lookup(rest), found, seen)
    return found


def _by_suffix(word: str, seen: Seen) -> list[Reading]:
    """KnownSuffixAnalyzer: the paradigms of the dictionary's words that end as this one does,
    the longest ending that any productive one has (for each paradigm prefix the word has)."""
    found: list[Reading] = []
    if len(word) < _KNOWN_SUFFIX.min_word_length:
        return found
    for prefix, endings in _PREDICTIONS:
        if not word.startswith(prefix):
            continue
        counts = 1  # the unit's smoothing: it stops at the first length whose productive forms count
        for length in _KNOWN_SUFFIX._prediction_splits:
            start = word[:-length]
            for ending, forms in _similar(endings, word[-length:]):
                spelt = start + ending
                for count, para_id, idx in forms:
                    paradigm = _PARADIGMS[para_id]
                    size = len(paradigm) // 3
                    tag = _TAG[paradigm[size + idx]]
                    if not _PRODUCTIVE[tag]:
                        continue
                    counts += count
                    key = spelt, tag, para_id
                    if key not in seen:
                        seen.add(key)
                        found.append((spelt, tag, _normal(paradigm, size, idx, spelt) if idx else spelt, para_id))
            if counts > 1:
                break
    return found
