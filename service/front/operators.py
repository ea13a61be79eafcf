"""The operators' own: the home page and `/metrics` answer only the operators' networks, and
`/healthz` and `/readyz` tell anyone else their status without the details (the store's
address, whose rules file was refused and why)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.config import Network
from service.front.middleware import TrustedProxies, client_host
from service.front.responses import JSON, error
from service.ips import ip_address

Endpoint = Callable[[Request], Awaitable[Response]]


class Operators:
    """A request is the operators' when it comes from one of their networks and no proxy's word
    for its client (`X-Forwarded-For` past the trusted proxies, `X-Real-IP`) names an address
    outside them. So a reverse proxy on the same host that `SWAPLINE_TRUSTED_PROXIES` does not
    name passes on no visitor as the operator because it connects from 127.0.0.1."""

    def __init__(self, networks: tuple[Network, ...], trusted: TrustedProxies) -> None:
        self.networks = networks
        self.trusted = trusted

    def admit(self, request: Request) -> bool:
        claims = [client_host(request.scope)]
        for key, value in request.scope["headers"]:
            if key == b"x-forwarded-for":
                claims.append(value.decode("latin-1"))
            elif key == b"x-real-ip":
                claims.append(value.decode("latin-1").strip())
        try:
            return all(self._inside(self.trusted.client_named(claim)) for claim in claims)
        except ValueError:  # an address nobody could connect from: not the operators'
            return False

    def _inside(self, address: str) -> bool:
        ip = ip_address(address)
        return any(ip in network for network in self.networks)

    def only(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint` for the operators; anyone else gets a 403 that says how to let them in."""
        async def guarded(request: Request) -> Response:
            if self.admit(request):
                return await endpoint(request)
            return error(403, "operators_only", f"{request.url.path} answers only the operators' networks "
                                                "(SWAPLINE_OPERATOR_NETWORKS: loopback and private addresses unless "
                                                "set otherwise, docs/DEPLOY.md)")
        return guarded

    def brief(self, endpoint: Callable[[Request], Awaitable[JSON]]) -> Endpoint:
        """`endpoint`'s status code and its `status` or error code, for a balancer's health check
        from anywhere; the rest only for the operators."""
        async def briefed(request: Request) -> Response:
            answer = await endpoint(request)
            if self.admit(request):
                return answer
            said = orjson.loads(answer.body)
            if "error" in said:
                return error(answer.status_code, said["error"]["code"], "the details answer only the operators' "
                                                                         "networks (SWAPLINE_OPERATOR_NETWORKS)")
            return JSON({"status": said["status"]}, status_code=answer.status_code)
        return briefed
