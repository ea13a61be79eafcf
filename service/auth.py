"""The site's report token guards what analysts and operators read."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from service.engine import Site
from service.errors import Unauthorized


def require_report_token(site: Site, request: Request) -> None:
    """401 unless `Authorization: Bearer <token>` carries the site's report token."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = site.report_token
    # compare_digest takes as long for a near miss as for a wild guess: no timing oracle.
    if expected is None or scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("invalid_token", "a valid 'Authorization: Bearer <report token>' is required")
