"""A page view as the rules see it, and the pages a rule is for (path globs)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.rules.geo import Geo
from service.rules.patterns import Linear
from service.rules.phrase import Traffic
from service.rules.words import Reading


# Not frozen, though nothing changes one: a frozen dataclass sets each field through
# `object.__setattr__`, several times what building a plain one costs (docs/PERFORMANCE.md).
@dataclass(slots=True, unsafe_hash=True)
class PageView:
    """What is known about one page view; built once per request, never changed (plans are
    remembered by it).

    Page views compare equal when all but the visitor is: the visitor id only draws the variants
    of experiments, so what the rest of a decision makes of a page view (a `Plan`) serves them all.
    """

    vid: str = field(compare=False)
    path: str
    traffic: Traffic
    reading: Reading = field(compare=False)  # of the phrase, which the traffic holds
    phrase: str  # normalised: lower case, ё→е, no punctuation
    geo: Geo
    device: str  # mobile | tablet | desktop
    bot: bool = False

    def at(self, path: str) -> PageView:
        """The same page view on `path` (`dataclasses.replace` costs several times more)."""
        return PageView(self.vid, path, self.traffic, self.reading, self.phrase, self.geo, self.device, self.bot)


@dataclass(frozen=True, slots=True)
class Pages:
    """Path globs: `*` stays within one path segment, `**` crosses segments.

    A glob with one wildcard matches on `re` in time linear in the path; with more, a path
    made for it would make `re` backtrack for its length to the power of the wildcards, so
    those match on RE2 (`service.rules.patterns`), linear too and only a little slower.
    """

    globs: tuple[str, ...] = ()
    _simple: re.Pattern[str] | None = None
    _wild: Linear | None = None

    @classmethod
    def compile(cls, globs: Iterable[str]) -> Pages:
        globs = tuple(globs)
        if not globs:
            return cls()
        simple: list[str] = []
        wild: list[str] = []
        for glob in globs:
            (simple if len(_WILDCARD.findall(glob)) <= 1 else wild).append(_glob_regex(normalise_path(glob)))
        return cls(globs, re.compile(f"(?:{'|'.join(simple)})") if simple else None,
                   Linear(f"(?:{'|'.join(wild)})") if wild else None)

    @property
    def exact(self) -> tuple[str, ...]:
        """The paths, when every glob is a plain path; else empty."""
        if not self.globs or any("*" in glob for glob in self.globs):
            return ()
        return tuple(normalise_path(glob) for glob in self.globs)

    def match(self, path: str) -> bool:
        if self._simple is None and self._wild is None:
            return True
        return ((self._simple is not None and self._simple.fullmatch(path) is not None)
                or (self._wild is not None and self._wild.fullmatch(path)))


def normalise_path(path: str) -> str:
    """'/catalog/' and '/catalog' are one page; '/' stays '/'."""
    return path.rstrip("/") or "/"


_WILDCARD = re.compile(r"(\*\*|\*)")  # captured: split keeps the wildcards


def _glob_regex(glob: str) -> str:
    parts = _WILDCARD.split(glob)
    return "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )
