"""The routes every page view calls, dispatched without Starlette's routing and exception layers.

`GET /v1/decide` and `POST /v1/events` carry nearly all of the traffic. Routing a request through
the whole route table, then through two wrappers that each build a Request and closures, costs
as much CPU as a decision's own work; these routes are instead matched by one dictionary lookup
and their endpoint is called directly. They stay ordinary Starlette routes (the route table is
the one source of truth; other methods still get their 405 from the router).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import HTTPError
from service.responses import error


class FastPath:
    """Plain ASGI middleware that answers `routes` itself; everything else goes on to `app`."""

    def __init__(self, app: ASGIApp, routes: Iterable[Route]) -> None:
        self.app = app
        self.routes = {(method, route.path): route for route in routes for method in route.methods or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router would: metrics label requests by route
        try:
            response = await route.endpoint(Request(scope, receive))
        except HTTPError as exc:
            response = error(exc.status, exc.code, exc.message)
        await response(scope, receive, send)
