"""One delivery to an endpoint: a signed POST, bounded in time, in what it reads and in where it goes.

- Time: the whole exchange (resolving the name, connecting, sending, the answer) within the
  timeout. An endpoint that trickles its answer a byte at a time is a timeout like one that
  never answers, and holds up nothing but its own deliveries.
- What it reads: the status, and at most `PREFIX` bytes of the body, so that a short answer
  leaves the connection for the next delivery; a longer one is hung up on, never held in memory.
  The body is not shown anywhere: an endpoint on a private network would otherwise be read
  through the status page.
- Where: never a link-local address, where cloud metadata answers (`refused_address`). The
  addresses a name resolves to are checked as the connection is made to them, so a name that
  resolves elsewhere a moment later cannot slip past the check.

Each POST is signed: `X-Swapline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
with the endpoint's secret; a receiver compares in constant time and refuses a `t` more than
five minutes from its clock, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import orjson

from service.rules.settings import Webhook, refused_address

PREFIX = 4096  # bytes of an answer read at most
MOST_AT_ONCE = 100  # deliveries in flight in a process, over every endpoint
SHOWN = 200  # characters of an error's own words kept in the delivery log


class RefusedDestination(httpcore.ConnectError):
    """The endpoint's name resolves to an address no webhook may post to."""


class _NoMetadata(httpcore.AnyIOBackend):
    """Connects as httpcore does, to the addresses the host resolves to, unless one is refused."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc.strerror or exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        if refused := [address for address in addresses if refused_address(address)]:
            raise RefusedDestination(f"{host} is {refused[0]}, a link-local address (cloud metadata): "
                                     "no webhook posts there")
        failed: httpcore.ConnectError | None = None
        for address in addresses:  # in the resolver's order, as a client without the check tries them
            try:
                return await super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failed = exc
        raise failed or httpcore.ConnectError(f"{host}: no address")


def _client(timeout: float) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport()
    # httpx takes no network backend of its own: its pool, with the one that checks where it connects.
    transport._pool = httpcore.AsyncConnectionPool(ssl_context=httpx.create_ssl_context(),
                                                   max_connections=MOST_AT_ONCE, network_backend=_NoMetadata())
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False,
                             headers={"user-agent": "Swapline-Webhooks/1"})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Swapline-Signature` of a delivery: its time, and the MAC of time and body."""
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def telegram_text(entry: dict[str, Any]) -> str:
    """A conversion or an alert as one line of a Telegram chat."""
    if entry["kind"] == "alert":
        return f"⚠️ {entry['alert']['message']}"
    visit, call = entry.get("visit") or {}, entry.get("call")
    came = " / ".join(part for part in (visit.get("source"), visit.get("campaign")) if part) or "direct"
    phrase = f" «{visit['phrase']}»" if visit.get("phrase") else ""
    if call:
        what = f"{'Target call' if call['qualified'] else 'Call'} to {call['number']}, {call['talk_seconds']} s"
        if entry["kind"] == "missed_call":
            what = f"Missed call to {call['number']}"
    else:
        what = {"form": "Form", "tel_click": "Tap on the number", "goal": f"Goal {entry.get('goal')}"}.get(
            entry["kind"], entry["kind"])
        what += f" on {entry.get('page')}"
    return f"{what} · {came}{phrase}"


def failure(exc: Exception) -> str:
    """What went wrong, as the delivery log shows it: a refused destination or a certificate by
    name (httpx wraps both in a bare ConnectError), else the error and its own words."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RefusedDestination):
            return f"refused: {cause}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"error: certificate verify failed: {cause.verify_message}"
        cause = cause.__cause__ or cause.__context__
    words = str(exc)[:SHOWN]
    return f"error: {type(exc).__name__}" + (f": {words}" if words else "")


class Sender:
    """Signed POSTs to the sites' endpoints, at most `MOST_AT_ONCE` at a time in the process."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.client = _client(timeout)
        self._at_once = asyncio.Semaphore(MOST_AT_ONCE)

    async def post(self, hook: Webhook, site: str, entry: dict[str, Any], attempt: int,
                   now_ms: int) -> tuple[str, bool]:
        """One signed POST of a log entry to an endpoint, in its format: (what came back, whether
        that acknowledges it)."""
        body = orjson.dumps({"chat_id": hook.chat, "text": telegram_text(entry)} if hook.format == "telegram" else
                            {"id": entry["id"], "type": entry["kind"], "site": site, "attempt": attempt,
                             "conversion": entry})
        headers = {"content-type": "application/json", "x-swapline-id": entry["id"],
                   "x-swapline-signature": signature(hook.secret, now_ms // 1000, body)}
        async with self._at_once:  # waiting here is no endpoint's fault: outside its time
            try:
                async with asyncio.timeout(self.timeout), \
                        self.client.stream("POST", hook.url, content=body, headers=headers) as response:
                    taken = 0
                    async for chunk in response.aiter_raw():  # as it came: nothing to inflate
                        taken += len(chunk)
                        if taken >= PREFIX:
                            break  # leaving the stream unread closes its connection
            except (TimeoutError, httpx.TimeoutException):
                return "timeout", False
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return failure(exc), False
        return str(response.status_code), response.is_success

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
