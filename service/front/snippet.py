"""`GET /s.js` and `GET /s/{version}.js`: the snippet as built (`scripts/build-snippet`).

Minified, and compressed at build for the encodings browsers ask for (brotli, then gzip), so
no request compresses anything. Each encoding has its own ETag, and `Vary: Accept-Encoding`
keeps caches from mixing them. `/s.js` is revalidated every few minutes; `/s/{version}.js`
(the version is the identity ETag) never changes, for sites that pin the snippet, e.g. with
Subresource Integrity. A version this service no longer has redirects to the one it has: a
pinned page keeps working, and one that checks integrity refuses the new file.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

STATIC = resources.files("service").joinpath("static")
MINIFIED = STATIC.joinpath("swapline.min.js").read_bytes()
VERSION = hashlib.sha256(MINIFIED).hexdigest()[:20]
PINNED = f"/s/{VERSION}.js"
# Preferred first; identity is always acceptable unless a client refuses it outright.
ENCODINGS = {
    "br": STATIC.joinpath("swapline.min.js.br").read_bytes(),
    "gzip": STATIC.joinpath("swapline.min.js.gz").read_bytes(),
    "identity": MINIFIED,
}
COMMON = {
    "access-control-allow-origin": "*",
    "x-content-type-options": "nosniff",
    "vary": "Accept-Encoding",
}
# Short enough that a new snippet reaches every page within minutes; revalidation is a 304.
REVALIDATED = "public, max-age=300"
IMMUTABLE = "public, max-age=31536000, immutable"


def accepted(header: str) -> str:
    """The encoding to send for an `Accept-Encoding` value: the first of `ENCODINGS` it allows
    (`q=0` refuses; `*` stands for any not named)."""
    weights: dict[str, float] = {}
    for item in header.lower().split(",")[:32]:  # no browser sends more; a flood costs nothing
        name, _, params = item.partition(";")
        weight = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[name.strip()] = weight
    for encoding in ENCODINGS:
        # Not named: what `*` says; without it, identity is acceptable (RFC 9110), others not.
        unnamed = weights.get("*", 1.0 if encoding == "identity" else 0.0)
        if weights.get(encoding, unnamed) > 0:
            return encoding
    return "identity"  # nothing acceptable: send it plain rather than nothing


def _snippet(request: Request, cache_control: str) -> Response:
    encoding = accepted(request.headers.get("accept-encoding", ""))
    etag = f'"{VERSION}"' if encoding == "identity" else f'"{VERSION}-{encoding}"'
    headers = {**COMMON, "etag": etag, "cache-control": cache_control}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if encoding != "identity":
        headers["content-encoding"] = encoding
    return Response(ENCODINGS[encoding], media_type="text/javascript; charset=utf-8", headers=headers)


async def snippet_endpoint(request: Request) -> Response:
    return _snippet(request, REVALIDATED)


async def pinned_snippet_endpoint(request: Request) -> Response:
    if request.path_params["version"] != VERSION:
        return RedirectResponse(PINNED, status_code=302, headers={**COMMON, "cache-control": REVALIDATED})
    return _snippet(request, IMMUTABLE)
