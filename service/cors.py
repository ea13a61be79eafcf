"""CORS per site: a browser may call the service only from the site's own origins."""

from __future__ import annotations

from service.engine import Site
from service.errors import Forbidden


def cors_headers(site: Site, origin: str | None) -> dict[str, str]:
    """Headers that let `origin` read the answer; refuses an origin the site does not list.

    Requests without an Origin header (servers, curl, the preview) need no CORS at all.
    """
    if origin is None:
        return {"Vary": "Origin"}
    if origin not in site.origins:
        raise Forbidden("origin_not_allowed", f"origin {origin!r} is not allowed for site {site.id!r}")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
