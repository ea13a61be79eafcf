"""HTTP/1.1 connections: uvicorn's httptools protocol with the bounds a public server needs.

uvicorn (0.54) bounds neither how long a client may take to send its request nor how large
its head may be, and answers malformed requests in plain text. Here a whole request (line,
headers and body) must arrive within `SWAPLINE_REQUEST_TIMEOUT` seconds of its first byte
(or of the connection opening), and its line and headers must fit in `MAX_HEAD` bytes, or
the client gets 408 or 431 and the connection closes; malformed HTTP gets the service's JSON
error. One timer per connection does it: the application never waits on a slow body for
longer, and pays nothing for it: it is not made anew per request (a timer made and cancelled
cost a request more than anything else here), it looks at the request arriving, if any, when
it fires, and moves on to that request's deadline. The head is measured a packet at a time,
so what came in the same packet as its end (a body's first bytes) counts too. `swapline
serve` gives uvicorn this class as its `http` protocol, and `SWAPLINE_MAX_CONNECTIONS` as its
`limit_concurrency`. Past it, a new connection takes the place of one that waits on its client
(`Protocol._make_room`), and a request gets 503 only while every connection has one being
answered, in JSON as well: uvicorn's own is plain text, so the limit is kept here instead
(`Protocol.__init__`).
"""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.config import Settings

# The request line and headers: a decision's URL carries the page's URL and referrer, each
# up to 4,096 characters that percent-encoding may make 6 bytes each.
MAX_HEAD = 64 * 1024
_QUERY_BYTES = bytes(range(0x21, 0x7F)).replace(b"#", b"")  # a query's, by httptools' strict parser
# A refusal comes before the application has read the page's origin. It is no site's data, so
# any page may read it: a snippet's developer sees the 431 or the 503, not a CORS error.
ANY_ORIGIN = (b"access-control-allow-origin", b"*")
LINGER = 2.0  # seconds a refused client may go on sending before its connection closes
_settings = functools.cache(Settings.from_env)  # the worker's own, read once


class Protocol(HttpToolsProtocol):
    # The base class's callbacks are called by name, not through super(): super() makes an
    # object per call, and these run several times for every request.
    _deadline: asyncio.TimerHandle | None = None
    _since: float | None = None  # loop time the arriving request (or the connection) began; None: none arriving
    _head = 0  # bytes received while the request's line and headers were not all in
    _in_head = True
    _draining = False

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        HttpToolsProtocol.__init__(self, config, server_state, app_state, _loop)
        # The limit is kept here, as uvicorn keeps it, so that past it the answer is JSON (`_overloaded`).
        self._most, self.limit_concurrency = self.limit_concurrency, None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        HttpToolsProtocol.connection_made(self, transport)
        self._arm()  # a connection that never sends a byte is dropped too
        if self._most is not None and len(self.connections) > self._most:
            self._make_room()

    def _make_room(self) -> None:
        """Close the connection that has waited longest on its client, if one waits: an idle one
        between requests first, else the one whose request has been arriving longest. A client
        that opens connections and sends nothing, or a byte at a time, would otherwise keep
        everyone else out until its deadlines (`SWAPLINE_REQUEST_TIMEOUT`); only connections
        whose requests are being answered are kept. When every one of them is, the new
        request gets the 503 (`on_headers_complete`)."""
        waiting = [other for other in self.connections if isinstance(other, Protocol) and other is not self
                   and (other.timeout_keep_alive_task is not None or other._since is not None)]
        if not waiting:
            return
        victim = min(waiting, key=lambda other: -math.inf if other._since is None else other._since)
        self.connections.discard(victim)  # room now, not when the loop next calls connection_lost
        if victim._since is None:  # between requests: closed as the keep-alive timeout closes it
            victim.transport.close()
        else:
            victim._refuse(503, "overloaded", "the service needed this connection for another client while this "
                                              "request was still arriving; send it again")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._deadline is not None:
            self._deadline.cancel()
        HttpToolsProtocol.connection_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        if self._draining:  # refused: read and dropped until the connection closes
            return
        if self._in_head:  # counted a packet at a time: a header at a time costs every request more
            self._head += len(data)
            if self._head > MAX_HEAD:
                self._refuse(431, "headers_too_large",
                             f"the request line and headers are larger than {MAX_HEAD} bytes")
                return
        HttpToolsProtocol.data_received(self, data)

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        app, before = self.app, self.cycle
        if self._most is not None and (len(self.connections) > self._most or len(self.tasks) >= self._most):
            self.logger.warning("Exceeded concurrency limit.")
            self.app = _overloaded  # uvicorn starts what `self.app` is: this request gets the JSON 503
        # httptools parses a URL a character at a time, and a decision's query (the page's URL,
        # its referrer, the visit's token) is most of its bytes: only the path is left to it, and
        # the query is what follows the first "?", where it holds only what httptools accepts.
        path, mark, query = self.url.partition(b"?")
        if not mark or b"#" in path or query.translate(None, _QUERY_BYTES):  # none, a fragment, a byte refused
            HttpToolsProtocol.on_headers_complete(self)
        else:
            self.url = path
            HttpToolsProtocol.on_headers_complete(self)
            self.scope["query_string"] = query  # before the application's task first runs
        self.app = app
        if self.cycle is not before and self.scope["method"] != "HEAD":  # an answer with a body to come
            self.cycle.transport = OneWrite(self.transport)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head = True, 0
        HttpToolsProtocol.on_message_complete(self)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "malformed_request", "the request is not valid HTTP/1.1")

    def _arm(self) -> None:
        if self._since is None:  # the connection's first request is due from its opening
            self._since = self.loop.time()
        if self._deadline is None:
            self._deadline = self.loop.call_at(self._since + _settings().request_timeout, self._watch)

    def _disarm(self) -> None:
        self._since = None

    def _watch(self) -> None:
        self._deadline = None
        if self._since is None:  # between requests: the next one arms it again
            return
        if self.loop.time() < self._since + _settings().request_timeout:  # a later request: its own deadline
            self._arm()
            return
        if self.cycle is not None and self.cycle.response_started:  # answered already: nothing to say
            self.transport.close()
        else:  # the application, if it is reading the body, hears that the client went away
            self._refuse(408, "request_timeout", "the request did not arrive in time")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request that never reached the application, and close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": {"code": code, "message": message}})
        self.transport.write(b"".join([
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s: %s\r\n\r\n" % (
                len(body), *ANY_ORIGIN),
            body,
        ]))
        if self.cycle is None and self.transport.can_write_eof():
            # A request refused before the application saw it (too large, malformed) may still
            # be arriving, and closing under unread bytes resets the connection: the client
            # would lose this answer. So, as nginx's lingering close: send it, half-close, drop
            # whatever else comes, and close when the client hangs up or after LINGER.
            self._draining = True
            self.transport.write_eof()
            self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer past `SWAPLINE_MAX_CONNECTIONS`, as uvicorn's `service_unavailable` but JSON."""
    body = orjson.dumps({"error": {"code": "overloaded",
                                   "message": "the service has as many connections as it takes; try again shortly"}})
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), (b"retry-after", b"1"),
        (b"connection", b"close"), ANY_ORIGIN]})
    await send({"type": "http.response.body", "body": body})


class OneWrite(asyncio.Transport):
    """A connection as one response writes to it. uvicorn writes an answer's head and its body
    apart, two system calls and two packets; here the head waits for the body, which uvicorn
    writes for every response but one to HEAD (those are not held), so an answer leaves in one.
    A response cut short sends its head as the connection closes."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if self._first:
            self._first = False
            if not data.startswith(b"HTTP/1.1 100 "):  # "100 Continue" is waited for: it goes at once
                self._head = data
                return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
