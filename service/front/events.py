"""Beacons from the snippet: `POST /v1/events`.

The snippet sends `text/plain` JSON (so browsers send no CORS pre-flight) with the decision
token it was given; the token says which site, visitor and experiment variants the beacon
speaks for, so a beacon can only credit what the service itself decided.

    {"type": "form" | "tel_click" | "goal" | "heartbeat", "id": "<event id>", "name": "<goal>",
     "token": "<decision token>"}

Conversions need an id (a retry with the same id counts once); heartbeats keep the visitor's
tracking number while the page is visible, and a 205 to one says the page shows a number its
visitor no longer holds: the snippet asks for the page's decision again. The snippet reads the
answers: a 2xx may be read by the site's origins only (CORS), a refusal by any page, as it tells
nothing of a site. The snippet keeps a conversion until it is taken, or refused with a status
below 429 (no retry gets past it).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.errors import BadRequest, Forbidden, HTTPError, Unauthorized
from service.front import bodies
from service.front.cors import cors_headers
from service.front.middleware import client_host
from service.front.responses import JSON, reset
from service.observability import BEACON_COUNTS
from service.rules.engine import Site
from service.runtime import Runtime
from service.tracking import ledger, visits
from service.tracking.store import STORE_ERRORS
from service.tracking.visitors import BrowserHeaders

log = logging.getLogger("swapline")
MAX_BODY = 4096
CONVERSIONS = ("form", "tel_click", "goal")
EVENT_TYPES = (*CONVERSIONS, "heartbeat")
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
GOAL_NAME = re.compile(r"[a-z0-9_-]{1,64}")


def verified(runtime: Runtime, token: Any) -> tuple[Site, dict[str, Any]]:
    """The site and payload of a decision token this service signed, or 401; a token speaks
    for its page view for `token_days` days (a page left open that long, then used)."""
    payload = runtime.signer.verify(token) if isinstance(token, str) and len(token) < 2048 else None
    site = runtime.rules.sites.get(payload.get("s", "")) if payload else None
    if payload is None or site is None:
        raise Unauthorized("invalid_token", "the token is missing, forged or for another service")
    issued = payload.get("t")
    if not isinstance(issued, int) or runtime.clock() - issued > runtime.settings.token_days * 86_400:
        raise Unauthorized("expired_token", "the token is too old: a new page view brings a new one")
    return site, payload


async def events_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    named = ""  # the site, once the token names one
    now = runtime.now_ms()
    try:
        # Every beacon counts, a forged or malformed one's too. The store's count goes with the
        # beacon's own store commands, or the next request's.
        runtime.beacon_limit.admit(client_host(request.scope), runtime.store.batcher, now / 1000)
        event = bodies.json_object(await bodies.read(request, MAX_BODY))
        site, token = verified(runtime, event.get("token"))
        named = site.id
        outcome, response = await _beacon(runtime, request, event, site, token, now)
    except HTTPError as exc:  # refused before the token names a site, too: no site's origins to go by
        BEACON_COUNTS.count(named, exc.code)
        exc.headers["Access-Control-Allow-Origin"] = "*"
        raise
    BEACON_COUNTS.count(named, outcome)
    return response


async def _beacon(runtime: Runtime, request: Request, event: dict[str, Any], site: Site, token: dict[str, Any],
                  now: int) -> tuple[str, Response]:
    """What came of the beacon, and the answer."""
    browser = BrowserHeaders.of(request.scope)
    headers = cors_headers(site, request, browser.origin)
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise BadRequest("unknown_event", f"event type must be one of: {', '.join(EVENT_TYPES)}")
    if not (isinstance(event.get("id", ""), str) and isinstance(event.get("name", ""), str)):
        raise BadRequest("invalid_event", "an event's id and name are texts")
    if not browser.from_browser:
        raise Forbidden("not_a_browser", "beacons come from the snippet in a browser")
    if token.get("pv"):  # a preview page view: its beacons record nothing
        return "preview", JSON({"accepted": kind, "outcome": "preview"}, status_code=202, headers=headers)
    if kind == "heartbeat":  # lost in an outage, harmlessly: the next page view renews the hold
        pool = site.pool(token.get("n"))
        pool = pool if pool and pool.numbers else None
        shown = token.get("l", "")
        try:
            number = await runtime.pools.extend(site.id, pool, token["v"], now, shown) if pool else None
        except STORE_ERRORS:
            number, shown = None, ""  # nothing known of the number: the page keeps the one it shows
        if pool and shown and number != shown:
            # The page shows a number its visitor no longer holds (another visitor has it now): it
            # asks again, or a call to it would be the other's.
            return "reset", reset(headers)
        return kind, JSON({"accepted": kind, "number": number}, status_code=202, headers=headers)
    event_id = event.get("id")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise BadRequest("invalid_event", "a conversion needs an id: 1-64 letters, digits or _.:-")
    kinds = [kind]
    if kind == "goal":
        name = event.get("name")
        if not isinstance(name, str) or not GOAL_NAME.fullmatch(name):
            raise BadRequest("invalid_event",
                             "a goal needs a name: 1-64 lower-case Latin letters (a-z), digits, _ or -")
        kinds.append(f"goal:{name}")
    conversion = {"vid": token["v"], "id": f"{kind}:{event_id}", "kinds": kinds, "now": now, "page": token.get("p"),
                  "visit": visits.visit_id(event["token"]), "view": event["token"].rpartition(".")[2]}
    try:
        outcome = await convert(runtime, site, conversion)
    except STORE_ERRORS as exc:  # accepted all the same, once on disk: counted when the store is back
        log.debug("%s spooled: %s", kind, exc)
        await runtime.spool.keep({"site": site.id, "conversion": conversion})
        outcome = "spooled"
    return outcome, JSON({"accepted": kind, "outcome": outcome}, status_code=202, headers=headers)


async def convert(runtime: Runtime, site: Site, conversion: dict[str, Any]) -> str:
    """Count a conversion (from a beacon now, or from the spool later) for every experiment the
    visitor was exposed to before it, on any page: the store knows which. Then log it, with
    those variants and the visit it came from (once: a retry may be the first to get there).
    A page view adds at most `conversions_per_view` of each type (the settings'): a made-up id
    is no new conversion past them, and neither is anything an erased visitor's page view sends."""
    vid, now, view = conversion["vid"], conversion["now"], conversion.get("view")
    visit, kind = conversion.get("visit"), conversion["kinds"][0]
    # One page view's set, or none for a conversion spooled before page views were capped.
    views = [visits.page_view_conversions(site.id, vid, view, kind)] if view else []
    settings = runtime.settings
    admitting = [visits.admits(key, conversion["id"], settings.conversions_per_view, settings.token_days * 86_400)
                 for key in views]
    *admitted, gone = await runtime.store.batcher.submit(*admitting, ("EXISTS", visits.erased(site.id, vid)))
    if gone:  # an erased visitor's page view: nothing counted names them, nothing is logged or kept
        runtime.store.batcher.defer(*(("DEL", key) for key in views))
        return "erased"
    if admitted and not admitted[0]:
        return "capped"
    counting = runtime.ledger.conversion(site.id, vid, site.experiment_ids, conversion["id"], conversion["kinds"], now,
                                         site.time_zone)
    asking = ledger.assignments(site.id, vid, site.experiment_ids)
    seeing = visits.reads(site.id, vid, visit) if visit else ()
    # One round trip (one future, no task each), so the variants are read as they are counted.
    replies = await runtime.store.batcher.submit(*counting, *asking, *seeing)
    read = len(counting) + len(asking)
    await runtime.journal.add(site.id, {
        "id": conversion["id"], "kind": kind, "at": now, "visitor": vid, "page": conversion.get("page"),
        "experiments": ledger.assigned(site.experiment_ids, replies[len(counting):read]),
        "visit": visits.journey_of(replies[read:], now) if visit else None,
        **({"goal": conversion["kinds"][1].removeprefix("goal:")} if kind == "goal" else {}),
    }, now, site.time_zone)
    return ledger.converted(replies)
