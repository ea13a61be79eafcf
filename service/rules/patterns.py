"""Regular expressions over what visitors send, in time linear in what they send.

Marketers write phrase patterns and path globs; visitors write the phrases and paths. On a
backtracking engine such as Python's `re`, a pattern like `(\\w+\\s?)+$`, or the glob
`/a/**/b/**/c/**`, takes seconds to hours on one phrase or path made for it, holding a worker
the whole time; a time-out would instead turn a busy machine's slow moment into a wrong
answer. These patterns run on RE2 (google-re2), whose matching is linear in the input
whatever the pattern: the syntax Yandex Metrica and Google Analytics filters use. RE2 reads
`\\w` and `\\d` as ASCII, and phrases are Russian, so they are rewritten into their Unicode
classes; `\\b`, which RE2 cannot say for Cyrillic, is refused with what to write instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors reach the marketer as problems, not as lines on stderr
# Python's \w and \d, as RE2 writes them: inside a class, and as a class of their own.
_INSIDE = {"w": r"\p{L}\p{N}_", "d": r"\p{Nd}"}
_OUTSIDE = {"w": r"[\p{L}\p{N}_]", "d": r"\p{Nd}", "W": r"[^\p{L}\p{N}_]", "D": r"\P{Nd}"}


class PatternError(ValueError):
    """A pattern RE2 cannot run as written; the message says why, for a marketer."""


class Linear:
    """A compiled pattern; `search` and `fullmatch` answer whether it matches."""

    __slots__ = ("_compiled", "pattern", "source")

    def __init__(self, pattern: str, *, unicode_classes: bool = False) -> None:
        self.pattern = pattern
        self.source = _unicode(pattern) if unicode_classes else pattern  # as RE2 reads it
        try:
            self._compiled = re2.compile(self.source, _OPTIONS)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise PatternError(f"{reason} (RE2 syntax: no look-arounds and no back-references)") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Linear) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def search(self, text: str) -> bool:
        return self._compiled.search(text) is not None

    def fullmatch(self, text: str) -> bool:
        return self._compiled.fullmatch(text) is not None


class AnyOf:
    """Patterns searched together, as an RE2 set: which of them a text matches, in one pass over
    it and nothing else, where `Linear.search` builds a match and its spans for each."""

    __slots__ = ("_count", "_searched")

    def __init__(self, patterns: Sequence[Linear]) -> None:
        self._searched = re2.Set.SearchSet(_OPTIONS)
        try:
            for pattern in patterns:
                self._searched.Add(pattern.source)
            self._searched.Compile()
        except re2.error:
            raise PatternError("the patterns do not fit in RE2's memory together") from None
        self._count = len(patterns)

    def search(self, text: str) -> tuple[bool, ...]:
        found = self._searched.Match(text) or ()
        return tuple([number in found for number in range(self._count)])


def _unicode(pattern: str) -> str:
    """The pattern with `\\w`, `\\d`, `\\W`, `\\D` as Python reads them, in RE2's Unicode classes."""
    out: list[str] = []
    inside = False  # within [...]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped in "bB":
                raise PatternError(r"\b is not available for Russian words: phrases are words with single "
                                   r"spaces between them, so write (^| )word( |$)")
            if inside and escaped in "WD":
                raise PatternError(rf"\{escaped} cannot stand inside [...]: write it outside the brackets")
            out.append((_INSIDE if inside else _OUTSIDE).get(escaped, pattern[i:i + 2]))
            i += 2
            continue
        if char == "[" and not inside:
            inside = True
            start = pattern[i:i + 2] if pattern.startswith("[^", i) else "["
            out.append(start)
            i += len(start)
            if pattern.startswith("]", i):  # a ] first in a class is a ] of the class
                out.append("]")
                i += 1
            continue
        if char == "]" and inside:
            inside = False
        out.append(char)
        i += 1
    return "".join(out)
