"""CORS per site: a browser may call the service only from the site's own origins."""

from __future__ import annotations

import functools

from starlette.requests import Request

from service.errors import Forbidden
from service.front.responses import RawHeaders
from service.rules.engine import Site

_VARY: RawHeaders = ((b"vary", b"Origin"),)


def cors_headers(site: Site, request: Request, origin: str | None) -> RawHeaders:
    """Headers that let the request's `origin` read the answer; refuses an origin the site
    does not list. Requests without an Origin (servers, curl, the preview) and the service's
    own pages (the demo) need no permission.
    """
    if origin is None:
        return _VARY
    if origin in site.origins:
        return _allowed(origin)
    if origin == own_origin(request):
        return _VARY
    raise Forbidden("origin_not_allowed", f"origin {origin!r} is not allowed for site {site.id!r}")


def own_origin(request: Request) -> str:
    """The service's origin as the browser sees it: the scheme a trusted proxy says it took
    (`service.front.middleware.TrustedProxies`) and the Host the browser sent. From the
    scope, without building request.url on the hot path."""
    return f"{request.scope['scheme']}://{request.headers.get('host', '')}"


def refusal_headers(site: Site | None, request: Request, origin: str | None) -> dict[str, str]:
    """Headers for a refusal: the site's own origins read it as they read its answers; before
    any site's origins apply (an unknown site), any page may, as a refusal tells nothing of a
    site; an origin the site does not list, as ever, may not."""
    if site is None:
        return {"Access-Control-Allow-Origin": "*"}
    try:
        allowed = cors_headers(site, request, origin)
    except Forbidden:
        allowed = _VARY
    return {name.decode(): value.decode("latin-1") for name, value in allowed}


@functools.lru_cache(maxsize=1024)  # the sites' own origins only: others are refused above
def _allowed(origin: str) -> RawHeaders:
    return (b"access-control-allow-origin", origin.encode("latin-1")), *_VARY
