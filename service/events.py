"""Beacons from the snippet: `POST /v1/events`.

The snippet sends `text/plain` JSON (so browsers send no CORS pre-flight) with the decision
token it was given; the token says which site, visitor and pool the beacon speaks for.
Heartbeats keep the visitor's number while the page is visible.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from service import bodies
from service.cors import cors_headers
from service.engine import Site
from service.errors import BadRequest, Unauthorized
from service.responses import JSON
from service.runtime import Runtime

MAX_BODY = 4096
EVENT_TYPES = ("heartbeat",)


def verified(runtime: Runtime, token: Any) -> tuple[Site, dict[str, Any]]:
    """The site and payload of a decision token this service signed, or 401."""
    payload = runtime.signer.verify(token) if isinstance(token, str) and len(token) < 2048 else None
    site = runtime.rules.sites.get(payload.get("s", "")) if payload else None
    if payload is None or site is None:
        raise Unauthorized("invalid_token", "the token is missing, forged or for another service")
    return site, payload


async def events_endpoint(request: Request) -> JSON:
    runtime: Runtime = request.app.state.runtime
    event = bodies.json_object(await bodies.read(request, MAX_BODY))
    site, token = verified(runtime, event.get("token"))
    headers = cors_headers(site, request.headers.get("origin"))
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise BadRequest("unknown_event", f"event type must be one of: {', '.join(EVENT_TYPES)}")
    pool = next((p for p in site.pools if p.id == token.get("n") and p.numbers), None)
    number = await runtime.pools.extend(site.id, pool, token["v"], runtime.now_ms()) if pool else None
    return JSON({"accepted": kind, "number": number}, status_code=202, headers=headers)
