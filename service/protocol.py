"""HTTP/1.1 connections: uvicorn's httptools protocol with the bounds a public server needs.

uvicorn (0.54) bounds neither how long a client may take to send its request nor how large
its head may be, and answers malformed requests in plain text. Here a whole request (line,
headers and body) must arrive within `SWAPLINE_REQUEST_TIMEOUT` seconds of its first byte
(or of the connection opening), and its line and headers must fit in `MAX_HEAD` bytes, or
the client gets 408 or 431 and the connection closes; malformed HTTP gets the service's JSON
error. One timer per connection does it: the application never waits on a slow body for
longer, and pays nothing per request for it. `swapline serve` gives uvicorn this class as
its `http` protocol, and `SWAPLINE_MAX_CONNECTIONS` as its `limit_concurrency`, past which
new requests get 503.
"""

from __future__ import annotations

import asyncio
import functools

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.config import Settings

# The request line and headers: a decision's URL carries the page's URL and referrer, each
# up to 4,096 characters that percent-encoding may make 6 bytes each.
MAX_HEAD = 64 * 1024
_settings = functools.cache(Settings.from_env)  # the worker's own, read once


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request already answered."""


class Protocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    _head = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is dropped too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._grow(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "malformed_request", "the request is not valid HTTP/1.1")

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(_settings().request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:  # answered already: nothing to say
            self.transport.close()
        else:  # the application, if it is reading the body, hears that the client went away
            self._refuse(408, "request_timeout", "the request did not arrive in time")

    def _grow(self, size: int) -> None:
        self._head += size
        if self._head > MAX_HEAD:
            self._refuse(431, "headers_too_large", f"the request line and headers are larger than {MAX_HEAD} bytes")
            raise _Refused  # stops the parser: nothing more of this request is read

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request that never reached the application, and close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": {"code": code, "message": message}})
        self.transport.write(b"".join([
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body,
        ]))
        self.transport.close()
