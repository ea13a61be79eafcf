"""Regular expressions over what visitors send, in bounded time.

Marketers write phrase patterns and path globs; visitors write the phrases and paths. A
pattern that backtracks, such as `(\\w+\\s?)+$` or the glob `/a/**/b/**/c/**`, can take
seconds or hours on one crafted phrase or path, holding a worker the whole time. Such
patterns run on the `regex` engine (the syntax of Python's `re`), which gives up after
`TIMEOUT`: that counts as no match, and the operator hears of the pattern once.
"""

from __future__ import annotations

import logging

import regex

TIMEOUT = 0.002  # seconds; a sane pattern takes microseconds on a phrase or a path
log = logging.getLogger("swapline")


class Bounded:
    """A compiled pattern whose `search` and `fullmatch` give up after `TIMEOUT`."""

    __slots__ = ("_compiled", "_warned", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled = regex.compile(pattern, regex.VERSION0)
        self._warned = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bounded) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def search(self, text: str) -> bool:
        try:
            return self._compiled.search(text, timeout=TIMEOUT) is not None
        except TimeoutError:
            return self._gave_up()

    def fullmatch(self, text: str) -> bool:
        try:
            return self._compiled.fullmatch(text, timeout=TIMEOUT) is not None
        except TimeoutError:
            return self._gave_up()

    def backtracks(self, length: int) -> bool:
        """Whether the pattern gives up on an input of `length` characters made to trip
        backtracking: runs of its own letters, of words and spaces, that fail at their end."""
        letters = "".join(dict.fromkeys(char for char in self.pattern if char.isalnum())) or "a"
        probes = [letters, "a", "а", "a ", "1", "a-"]
        for probe in probes:
            text = (probe * length)[:length - 1] + "!"
            try:
                self._compiled.search(text, timeout=TIMEOUT)
            except TimeoutError:
                return True
        return False

    def _gave_up(self) -> bool:
        if not self._warned:
            self._warned = True
            log.warning("pattern %r took over %g ms on one input and counts as no match; "
                        "it backtracks: rewrite it", self.pattern, TIMEOUT * 1000)
        return False
