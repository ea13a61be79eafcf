"""Who is visiting: the visitor id, the kind of device and whether it is a bot."""

from __future__ import annotations

import functools
import re
import secrets
from typing import NamedTuple

from crawlerdetect.providers.crawlers import data as _crawler_patterns
from crawlerdetect.providers.exclusions import data as _browser_patterns
from starlette.types import Scope

# The snippet makes 22 url-safe characters (128 random bits); accept a sane range so ids
# from older snippets or custom integrations keep working.
VID = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Every browser's user agent fits in this many characters; only they are read, since the
# crawler patterns cost time in proportion to what they read.
AGENT_READ = 512
_TABLET = re.compile(r"iPad|Tablet|PlayBook|Silk|Kindle|Android(?!.*Mobile)", re.IGNORECASE)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android|Opera Mini|IEMobile|BlackBerry", re.IGNORECASE)
# crawlerdetect's own patterns, compiled here: one of them starts with `[a-z0-9\-_]*`, which
# makes the search quadratic in the agent's length and changes nothing about whether a
# search finds a match. Browser tokens are removed first, as crawlerdetect does.
_LEADING_RUN = r"[a-z0-9\-_]*"
_crawlers = re.compile("|".join(p.removeprefix(_LEADING_RUN) for p in _crawler_patterns), re.IGNORECASE)
_browser_tokens = re.compile("|".join(_browser_patterns), re.IGNORECASE)


def valid_vid(vid: str | None) -> bool:
    return vid is not None and VID.fullmatch(vid) is not None


def new_vid() -> str:
    return secrets.token_urlsafe(16)


def device(user_agent: str) -> str:
    return _device(user_agent[:AGENT_READ])


@functools.lru_cache(maxsize=4096)
def _device(user_agent: str) -> str:
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


def is_bot(user_agent: str) -> bool:
    """Crawlers by user agent; an empty agent is a script, not a browser."""
    return _is_bot(user_agent[:AGENT_READ])


@functools.lru_cache(maxsize=4096)
def _is_bot(user_agent: str) -> bool:
    agent = user_agent.strip()
    return not agent or _crawlers.search(_browser_tokens.sub("", agent)) is not None


class BrowserHeaders(NamedTuple):
    """What decisions and beacons read of a request's headers."""

    user_agent: str
    fetch_mode: str | None
    origin: str | None

    @classmethod
    def of(cls, scope: Scope) -> BrowserHeaders:
        # One dict made in C: Starlette's `Headers` scans the whole list for every lookup,
        # and browsers send a dozen headers or more. Of a repeated header, the last counts.
        headers = dict(scope["headers"])
        agent, mode, origin = headers.get(b"user-agent"), headers.get(b"sec-fetch-mode"), headers.get(b"origin")
        return cls(agent.decode("latin-1") if agent else "", mode and mode.decode("latin-1"),
                   origin and origin.decode("latin-1"))

    @property
    def from_browser(self) -> bool:
        """Whether the request came from a page's script: browsers send `Sec-Fetch-Mode` with
        every request (older Safari only `Origin`, with every cross-origin one); scripts that
        fake a browser's user agent rarely send either. The spec's missing-JS heuristic."""
        return self.fetch_mode is not None or self.origin is not None
