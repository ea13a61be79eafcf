"""`GET /s.js`: the snippet, minified once at start, cacheable, revalidated by ETag."""

from __future__ import annotations

import hashlib
from importlib import resources

import rjsmin
from starlette.requests import Request
from starlette.responses import Response

SOURCE = resources.files("service").joinpath("static", "swapline.js").read_text()
MINIFIED = rjsmin.jsmin(SOURCE).encode()
ETAG = '"' + hashlib.sha256(MINIFIED).hexdigest()[:20] + '"'
HEADERS = {
    "etag": ETAG,
    # Short enough that a new snippet reaches every page within minutes; revalidation is a 304.
    "cache-control": "public, max-age=300",
    "access-control-allow-origin": "*",
    "x-content-type-options": "nosniff",
}


async def snippet_endpoint(request: Request) -> Response:
    if ETAG in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=HEADERS)
    return Response(MINIFIED, media_type="text/javascript; charset=utf-8", headers=HEADERS)
