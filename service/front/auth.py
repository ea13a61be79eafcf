"""The site's report token guards what analysts and operators read.

Wrong guesses are throttled per client network (`SWAPLINE_SIGNIN_ATTEMPTS` per 15 minutes,
shared by every worker): past that, every attempt from there gets 429 until the window ends.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request

from service.errors import Unauthorized
from service.front.middleware import client_host
from service.rules.engine import Site

if TYPE_CHECKING:  # the runtime holds the pools, whose endpoint needs this module
    from service.runtime import Runtime


async def accepts(runtime: Runtime, site: Site, request: Request, given: str) -> bool:
    """Whether `given` is the site's report token; 429 once the client has guessed wrong too often."""
    limiter, batcher, now = runtime.signin_limit, runtime.store.batcher, runtime.clock()
    network = limiter.network(client_host(request.scope))
    await limiter.consult(network, batcher, now)
    limiter.refuse_if_blocked(network, now)
    expected = site.report_token
    # compare_digest takes as long for a near miss as for a wild guess: no timing oracle.
    if expected is not None and hmac.compare_digest(given.encode(), expected.encode()):
        return True
    limiter.note(network, batcher, now)
    return False


async def require_report_token(runtime: Runtime, site: Site, request: Request) -> None:
    """401 unless `Authorization: Bearer <token>` carries the site's report token."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not await accepts(runtime, site, request, given):
        raise Unauthorized("invalid_token", "a valid 'Authorization: Bearer <report token>' is required")


def fingerprint(runtime: Runtime, site: Site) -> str:
    """Stands for the site's current report token in a dashboard session, so that a new
    token ends the sessions the old one opened. Keyed: it tells nothing about the token."""
    token = (site.report_token or "").encode()
    return hmac.new(runtime.caller_key, b"report token\0" + token, hashlib.sha256).hexdigest()[:16]
