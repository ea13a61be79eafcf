"""`GET /s.js`: the snippet as built (`scripts/build-snippet`), cacheable, revalidated by ETag."""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

MINIFIED = resources.files("service").joinpath("static", "swapline.min.js").read_bytes()
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
