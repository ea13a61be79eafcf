"""Plain ASGI middleware: no wrapper that costs a task and a body copy per request."""

from __future__ import annotations

import functools
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from service.config import Network
from service.errors import BadRequest, HTTPError
from service.front.responses import refusal

HOPS = 32  # of X-Forwarded-For, the right-most: our proxies' and the client they saw, past any chain of ours


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


def client_host(scope: Scope) -> str:
    """The client's address as `TrustedProxies` resolved it, "" if unknown: what Starlette's
    `Request.client` says without the `Address` it makes at every reading."""
    client = scope.get("client")
    host: str = client[0] if client else ""
    return host


class TrustedProxies:
    """`X-Forwarded-For` and `X-Forwarded-Proto` are read only when the socket peer is a trusted
    proxy. The client is then the right-most address that is not itself a trusted proxy, since
    every address left of that could have been written by the client; the scheme is what the
    nearest proxy says (the right-most value), so `https` behind a TLS-terminating proxy makes
    cookies `Secure`. From anyone else both headers are ignored.
    """

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        # Parsing addresses is most of this work, and the same proxies and the same visitors
        # come again and again: remember the answers (bounded).
        self._is_trusted = functools.lru_cache(maxsize=1024)(self._check_trusted)
        self._client = functools.lru_cache(maxsize=4096)(self._rightmost_untrusted)

    def resolve(self, scope: Scope) -> None:
        """Set `scope["client"]` to the real client and `scope["scheme"]` to the scheme it used
        (in place: outer middleware reads them)."""
        if not self.networks or not scope.get("client") or not self._is_trusted(scope["client"][0]):
            return
        forwarded = proto = None
        for key, value in scope["headers"]:  # a plain loop: a comprehension is a call of its own
            if key == b"x-forwarded-for":  # repeated lines count as one, joined by commas
                forwarded = bytes(value) if forwarded is None else forwarded + b"," + value
            elif key == b"x-forwarded-proto":
                proto = bytes(value)
        if forwarded is not None:
            try:  # the last hops only: what a client writes left of them is never read, however long
                last = b",".join(forwarded.rsplit(b",", HOPS)[-HOPS:]).decode("latin-1")
                scope["client"] = (self._client(last), scope["client"][1])
            except ValueError:  # the proxy is misconfigured
                raise BadRequest("invalid_forwarded_for", "malformed X-Forwarded-For") from None
        if proto is not None:
            scheme = proto.rpartition(b",")[2].strip().lower()
            if scheme in (b"http", b"https"):
                scope["scheme"] = scheme.decode()

    def client_named(self, forwarded: str) -> str:
        """The client an `X-Forwarded-For` value (or a bare address) names: its right-most address
        that is not one of our proxies, of its last hops, as `resolve` reads it. Not remembered:
        anyone may send it. ValueError where a hop is no address."""
        return self._rightmost_untrusted(",".join(forwarded.rsplit(",", HOPS)[-HOPS:]))

    def _check_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def _rightmost_untrusted(self, header: str) -> str:
        """The client, written by a proxy of ours. What stands left of it the client (or a proxy
        of its own: Squid writes "unknown") wrote, and is not read: nothing there refuses it."""
        for hop in reversed(header.split(",")):
            address = _address(hop)
            if not self._is_trusted(address):
                return address
        return address  # every hop one of ours: the farthest


def _address(hop: str) -> str:
    """A hop's address: 203.0.113.7 or 2001:db8::1, or either with the port some load balancers
    add (Azure's: 203.0.113.7:5555, [2001:db8::1]:443)."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    return str(ipaddress.ip_address(hop))
