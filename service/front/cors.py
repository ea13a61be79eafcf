"""CORS per site: a browser may call the service only from the site's own origins."""

from __future__ import annotations

from starlette.requests import Request

from service.errors import Forbidden
from service.rules.engine import Site


def cors_headers(site: Site, request: Request, origin: str | None) -> dict[str, str]:
    """Headers that let the request's `origin` read the answer; refuses an origin the site
    does not list. Requests without an Origin (servers, curl, the preview) and the service's
    own pages (the demo) need no permission.
    """
    if origin is None:
        return {"Vary": "Origin"}
    if origin in site.origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    # The service's own origin from the scope, without building request.url on the hot path.
    if origin == f"{request.scope['scheme']}://{request.headers.get('host', '')}":
        return {"Vary": "Origin"}
    raise Forbidden("origin_not_allowed", f"origin {origin!r} is not allowed for site {site.id!r}")
