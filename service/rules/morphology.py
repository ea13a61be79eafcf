"""Russian morphology: pymorphy3's analyzer of the OpenCorpora dictionary, one per process.

A phrase's words (`service.rules.words`) and a town's cases (`service.rules.places`) read
the same dictionary, and every `MorphAnalyzer` loads a copy of its own (18 MiB in a worker).
"""

from __future__ import annotations

import re
from typing import Any

import pymorphy3
from pymorphy3 import units

# Loading the dictionaries takes under a tenth of a second: on import, not under a lock.
ANALYZER = pymorphy3.MorphAnalyzer(lang="ru")

# The analyzer's units in its order, but for those that read a word's shape: numbers,
# punctuation, Roman numerals, Latin letters, hyphens. A word of Russian letters alone meets none.
_SHAPES = (units.NumberAnalyzer, units.PunctuationAnalyzer, units.RomanNumberAnalyzer, units.LatinAnalyzer,
           units.HyphenSeparatedParticleAnalyzer, units.HyphenAdverbAnalyzer, units.HyphenatedWordsAnalyzer)
_LETTERS_UNITS = [(unit, terminal) for unit, terminal in ANALYZER._units if not isinstance(unit, _SHAPES)]
_RUSSIAN_LETTERS = re.compile("[а-яё]+")


def normal_forms(word: str) -> set[str]:
    """The normal forms of every reading `ANALYZER.parse` gives a word. A lower-case word of
    Russian letters, as phrases hold them, goes only through the units that can read it, and its
    readings are not scored: their forms are all that is wanted (docs/PERFORMANCE.md)."""
    if not _RUSSIAN_LETTERS.fullmatch(word):
        return {parse.normal_form for parse in ANALYZER.parse(word)}
    seen: set[tuple[Any, ...]] = set()
    found: list[tuple[Any, ...]] = []
    for unit, terminal in _LETTERS_UNITS:
        found.extend(unit.parse(word, word, seen))
        if terminal and found:
            break
    return {parse[2] for parse in found}
