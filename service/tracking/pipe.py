"""The batcher's connection to a standalone store: batches pipelined on one socket, and each
batch's replies handed over as soon as hiredis has parsed them from the socket's data.

redis-py reads a reply at a time, each through a coroutine awaiting a stream; at a few
replies per page view that machinery cost more CPU than anything else a decision does with
the store. Here the event loop's data callback parses whatever arrived and resolves the
batches it completes: no stream, no task and no await per reply.

redis-py still opens the connection, so TLS, AUTH, SELECT and Unix sockets work as they do
for every other command; the pipe takes over its socket once the handshake is done.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import hiredis
import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError

# The replies of a primary that a failover demoted (READONLY), or that refuses writes since
# its replica left it, as `min-replicas-to-write` tells it to (docs/DEPLOY.md).
DEMOTED = ("READONLY", "NOREPLICAS")


class Pipe(asyncio.Protocol):
    """Sends batches of packed commands; `send` returns a future of the batch's replies in
    order, an error reply as its exception in its place. A lost or broken connection fails
    every batch still waiting and the pipe is `closed`: open a new one."""

    def __init__(self, handshake: AbstractConnection) -> None:
        self._handshake = handshake  # owns the socket's stream objects, which close it when collected
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._batches: deque[tuple[list[Any], int, asyncio.Future[list[Any]]]] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    @classmethod
    async def open(cls, client: redis.Redis) -> Pipe:
        pool = client.connection_pool
        # No time-out of the connection's own: the batcher times each batch.
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        await connection.connect()  # type: ignore[no-untyped-call]
        writer = connection._writer  # redis-py's stream over the socket, after the handshake
        assert writer is not None
        pipe = cls(connection)
        transport = writer.transport
        transport.set_protocol(pipe)
        pipe.connection_made(transport)
        return pipe

    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write `count` commands packed in the Redis protocol; their replies come in the future."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(ConnectionError("the connection to the store is closed"))
            return future
        self._batches.append(([], count, future))
        self._transport.write(packed)
        return future

    def close(self, reason: str = "the connection to the store was closed") -> None:
        """Drop the connection; batches still waiting fail (their replies would be lost)."""
        if self._transport is not None:
            self._transport.abort()
        self._fail(ConnectionError(reason))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not registered as one

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                replies, count, future = self._batches[0]
                if isinstance(reply, ResponseError):
                    if str(reply).startswith(DEMOTED):  # a failover: the next connection finds the primary
                        self.close(f"the store takes no writes: {reply}")
                        return
                    if str(reply).startswith("NOSCRIPT"):
                        reply = NoScriptError(str(reply))
                replies.append(reply)
                if len(replies) == count:
                    self._batches.popleft()
                    if not future.done():  # its waiter may have given up
                        future.set_result(replies)
        except (InvalidResponse, IndexError) as exc:  # garbage, or a reply nothing asked for
            self.close(f"the store's replies make no sense: {exc!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the store closed the connection: {exc or 'EOF'}"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        while self._batches:
            _, _, future = self._batches.popleft()
            if not future.done():
                future.set_exception(error)
