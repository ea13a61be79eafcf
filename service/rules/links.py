"""What a swap may set as an address (an image's `src` and `srcset`, a link's `href`): http(s)
or relative, never a `javascript:` or `data:` URL, even when a template puts the visitor's
phrase in it."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_IGNORED = str.maketrans("", "", "\t\n\r")  # browsers drop these anywhere in a URL
_EDGES = "".join(map(chr, range(33)))  # and C0 controls and spaces at either end
_DESCRIPTOR = re.compile(r"(\d+w|\d+(\.\d+)?x)?")


def address(value: str) -> bool:
    """Whether `value` is an http(s) or relative address, read as a browser reads it."""
    url = value.translate(_IGNORED).strip(_EDGES)
    scheme = _SCHEME.match(url)
    return bool(url) and (scheme is None or scheme.group().lower() in ("http:", "https:"))


def srcset(value: str) -> bool:
    """Whether every candidate of a `srcset` is an `address` with at most one 1x/2x or width."""
    for candidate in value.split(","):
        url, *descriptor = candidate.split() or [""]
        if not address(url) or len(descriptor) > 1 or not _DESCRIPTOR.fullmatch(descriptor[0] if descriptor else ""):
            return False
    return True


CHECKS = {"src": address, "srcset": srcset, "href": address}  # by the attribute a swap sets
