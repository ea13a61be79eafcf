"""Who is visiting: the visitor id, the kind of device and whether it is a bot."""

from __future__ import annotations

import functools
import re
import secrets

from crawlerdetect import CrawlerDetect

# The snippet makes 22 url-safe characters (128 random bits); accept a sane range so ids
# from older snippets or custom integrations keep working.
VID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TABLET = re.compile(r"iPad|Tablet|PlayBook|Silk|Kindle|Android(?!.*Mobile)", re.IGNORECASE)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android|Opera Mini|IEMobile|BlackBerry", re.IGNORECASE)
_crawlers = CrawlerDetect()


def valid_vid(vid: str | None) -> bool:
    return vid is not None and VID.fullmatch(vid) is not None


def new_vid() -> str:
    return secrets.token_urlsafe(16)


@functools.lru_cache(maxsize=4096)
def device(user_agent: str) -> str:
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


@functools.lru_cache(maxsize=4096)
def is_bot(user_agent: str) -> bool:
    """Crawlers by user agent; an empty agent is a script, not a browser."""
    return not user_agent.strip() or bool(_crawlers.isCrawler(user_agent))
