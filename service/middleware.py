"""Plain ASGI middleware: no wrapper that costs a task and a body copy per request."""

from __future__ import annotations

import functools
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from service.config import Network
from service.errors import BadRequest, HTTPError
from service.responses import refusal


class ClientIPMiddleware:
    """Puts the real client IP into `scope["client"]` (see `TrustedProxies`); a trusted proxy
    that sends a malformed header gets a 400: it is misconfigured."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.trusted.resolve(scope)
            except HTTPError as exc:
                await refusal(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TrustedProxies:
    """`X-Forwarded-For` is read only when the socket peer is a trusted proxy; then the client
    is the right-most address that is not itself a trusted proxy, since every address left
    of that could have been written by the client. From anyone else the header is ignored.
    """

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        # Parsing addresses is most of this work, and the same proxies and the same visitors
        # come again and again: remember the answers (bounded).
        self._is_trusted = functools.lru_cache(maxsize=1024)(self._check_trusted)
        self._client = functools.lru_cache(maxsize=4096)(self._rightmost_untrusted)

    def resolve(self, scope: Scope) -> None:
        """Set `scope["client"]` to the real client (in place: outer middleware reads it)."""
        if self.networks and scope.get("client"):
            peer, port = scope["client"]
            header = _header(scope, b"x-forwarded-for")
            if header is not None and self._is_trusted(peer):
                try:
                    scope["client"] = (self._client(header), port)
                except ValueError:  # the proxy is misconfigured
                    raise BadRequest("invalid_forwarded_for", "malformed X-Forwarded-For") from None

    def _check_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def _rightmost_untrusted(self, header: str) -> str:
        hops = [hop.strip() for hop in header.split(",")]
        if len(hops) > 32 or len(header) > 2048:
            raise ValueError("too many hops")
        addresses = [str(ipaddress.ip_address(hop)) for hop in hops]
        for address in reversed(addresses):
            if not self._is_trusted(address):
                return address
        return addresses[0]


def _header(scope: Scope, name: bytes) -> str | None:
    """All values of a header joined by commas, as HTTP defines for repeated headers."""
    found = None
    for key, value in scope["headers"]:  # a plain loop: a comprehension is a call of its own
        if key == name:
            found = bytes(value) if found is None else found + b"," + value
    return None if found is None else found.decode("latin-1")
