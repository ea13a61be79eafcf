"""The routes every page view calls, answered in one step in front of the application.

`GET /v1/decide` and `POST /v1/events` carry nearly all of the traffic. Through the whole
stack (Starlette's entry and error layer, the request-id and client-IP middleware, each
with a frame and a wrapped `send` per request) the way in and out cost about 30 µs of a
decision's CPU. `FastPath` stands in front of it and does for these routes what those
layers do (the request id, the client address, the latency by route, 4xx answers for
`HTTPError`), with the same parts, then sends the endpoint's response itself. They stay
ordinary Starlette routes (the route table is the one source of truth; the application
still serves them, e.g. other methods get their 405 from the router).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.errors import HTTPError
from service.front.middleware import TrustedProxies
from service.front.responses import refusal
from service.observability import Tracked

log = logging.getLogger("swapline")
DISCONNECTED = 499  # nginx's status for a client that closed the request: counted as a 4xx


class FastPath:
    """Plain ASGI: answers `routes` itself; everything else, lifespan included, goes to `app`."""

    def __init__(self, app: Starlette, routes: Iterable[Route], trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted
        self.routes = {(method, route.path): route for route in routes for method in route.methods or ()}

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # as Starlette would: endpoints find the runtime in its state
        scope["route"] = route  # as the router would: latency is kept by route
        with Tracked(scope) as request:
            try:
                self.trusted.resolve(scope)
                response = await route.endpoint(Request(scope, receive))
            except HTTPError as exc:
                response = refusal(exc)
            except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing wrong here
                log.debug("client disconnected from %s", scope["path"])
                request.status = DISCONNECTED
                return
            request.status = response.status_code
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [*response.raw_headers, request.header]})
            await send({"type": "http.response.body", "body": response.body})
