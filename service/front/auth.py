"""The site's report token guards what analysts and operators read, and erasure; its read
tokens (`reports.read_tokens`) open all it reads, and erase nothing.

Wrong guesses are throttled per client network and site (`SWAPLINE_SIGNIN_ATTEMPTS` per 15
minutes, shared by every worker): past that, every attempt from there at that site's token gets
429 until the window ends. Per site, so that an agency's office, reading many sites, is not locked
out of all of them by one stale token of one site.
So only the dashboard's own form may try a token in a browser: a page elsewhere could make
its visitors' browsers guess wrong, and lock their office out (`refuse_foreign_sign_in`).
Wrong telephony credentials sent as they are (UIS's and Telphin's tokens, Mango's key) are
throttled alike, in a count of their own (`counted_guess`, service.integrations.telephony).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request

from service.errors import Forbidden, Unauthorized, UnsupportedType
from service.front.cors import own_origin
from service.front.middleware import client_host
from service.rules.engine import Site

if TYPE_CHECKING:  # the runtime holds the pools, whose endpoint needs this module
    from service.runtime import Runtime


FORM = "application/x-www-form-urlencoded"  # what the sign-in form sends, and all its parser reads
SAME_ORIGIN = ("same-origin", "none")  # Sec-Fetch-Site of the dashboard's own form, or of a typed-in request


def refuse_foreign_sign_in(request: Request) -> None:
    """403 for a sign-in that another site's page sent (before it can count as a wrong token),
    415 for a body that is not the form's. Browsers say where a request comes from in
    `Sec-Fetch-Site`; older ones only in `Origin`, which a script without a browser (curl)
    leaves out. `Origin` is not read when `Sec-Fetch-Site` is there: the dashboard's pages send
    `Referrer-Policy: no-referrer`, so their own form posts `Origin: null`."""
    fetched_from, origin = request.headers.get("sec-fetch-site"), request.headers.get("origin")
    if fetched_from is not None:
        foreign = fetched_from not in SAME_ORIGIN
    else:
        foreign = origin is not None and origin != own_origin(request)
    if foreign:
        raise Forbidden("cross_site_sign_in", "a sign-in must come from the dashboard's own page")
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != FORM:
        raise UnsupportedType("unsupported_content_type", f"a sign-in is a form: token=… as {FORM}")


async def accepts(runtime: Runtime, site: Site, request: Request, given: str) -> str | None:
    """Which of the site's tokens `given` is (its report token or a read token), or None; 429
    once the client has guessed wrong too often."""
    opened = None
    for token in tokens(site):  # each compared whole: compare_digest takes as long for a near miss
        if hmac.compare_digest(given.encode(), token.encode()):
            opened = token
    return opened if await counted_guess(runtime, request, site.id, opened is not None) else None


def tokens(site: Site) -> tuple[str, ...]:
    """What opens the site's reports: its report token, then its read tokens."""
    return (site.report_token, *site.read_tokens) if site.report_token else site.read_tokens


async def counted_guess(runtime: Runtime, request: Request, counter: str, right: bool,
                        what: str | None = None, sent: str | None = None) -> bool:
    """`right`, unless the client's network has guessed wrong `SWAPLINE_SIGNIN_ATTEMPTS` times in
    the window at `counter` (a site's report token, its telephony's credentials): then 429, even
    for a right guess, so that the answer tells nothing past the limit. A wrong guess counts;
    given what was `sent`, only once in the window: a guesser sends something new each time."""
    limiter, batcher, now = runtime.signin_limit, runtime.store.batcher, runtime.clock()
    network = f"{limiter.network(client_host(request.scope))}:{counter}"
    await limiter.consult(network, batcher, now)
    limiter.refuse_if_blocked(network, now, what)
    if not right and (sent is None or (await batcher.submit(*limiter.distinct(network, now, sent)))[0]):
        limiter.note(network, batcher, now)
    return right


async def require_report_token(runtime: Runtime, site: Site, request: Request, erases: bool = False) -> None:
    """401 unless `Authorization: Bearer <token>` carries one of the site's tokens; 403 for a
    read token where the request `erases`."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    opened = await accepts(runtime, site, request, given) if scheme.lower() == "bearer" else None
    if opened is None:
        raise Unauthorized("invalid_token", "a valid 'Authorization: Bearer <report token>' is required")
    if erases and opened != site.report_token:
        raise Forbidden("read_only_token", "this token reads the site's reports; erasing takes its report token")


def fingerprint(runtime: Runtime, token: str) -> str:
    """Stands for the token that opened a dashboard session, so that the session ends when the
    rules no longer have that token. Keyed: it tells nothing about the token."""
    return hmac.new(runtime.caller_key, b"report token\0" + token.encode(), hashlib.sha256).hexdigest()[:16]
