"""The store: Redis or Valkey (standalone or cluster), the only home of shared state.

Key layout (docs/STORAGE.md has the full table). Every key starts with `sw:`; keys that a
script or a multi-key command touches together share one hash tag, so they live in one
cluster slot, while different sites and experiments spread over shards:

    sw:secret              string  signing secret shared by all service processes
    sw:{SITE/EXPERIMENT}:… exposures and conversions (service.ledger)
    sw:{SITE:POOL}:…       number pool state and lease history (service.pools)
    sw:{SITE:calls}:…      call records and hashed callers (service.calls)

Scripts go as EVAL rather than EVALSHA: the server caches them by digest all the same,
and EVAL needs no SCRIPT LOAD round trip and no NOSCRIPT retry after a store restart.

`Batcher` sends the commands of concurrent requests together, so a decision costs at most
one round trip that it shares with whatever else arrived in the same event-loop tick.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.observability import STORE_FAILURES

log = logging.getLogger("swapline")
Client = redis.Redis | RedisCluster
Queue = Callable[[Any], Any]  # adds exactly one command to a pipeline


# A store that does not answer must cost a request milliseconds, not the client's defaults
# of seconds and retries: the page is waiting. Work that must not be lost is spooled instead.
TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0, "retry": Retry(NoBackoff(), 0)}
RETRY_AFTER = 0.5  # seconds a failed store is left alone before the next request tries it


class StoreDown(ConnectionError):
    """The store failed a moment ago; nothing was sent."""


STORE_ERRORS = (redis.RedisError, OSError)  # OSError covers StoreDown, refused sockets, time-outs


def connect(url: str, cluster: bool = False) -> Client:
    if cluster:
        return RedisCluster.from_url(url, **TIMEOUTS)
    return redis.Redis.from_url(url, health_check_interval=30, **TIMEOUTS)


class Batcher:
    """Queues single commands from concurrent requests and sends them as one pipeline."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._pending: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # strong references until done
        self.round_trips = 0
        self.failures = 0
        self.down_until = 0.0  # monotonic time; before it, commands fail without a round trip

    def submit(self, queue: Queue) -> asyncio.Future[Any]:
        """Queue a command now; it leaves with everything queued in this event-loop tick.

        Callers submit before their first `await`, so concurrent work shares the pipeline.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if time.monotonic() < self.down_until:
            future.set_exception(StoreDown("the store failed a moment ago"))
            return future
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((queue, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Queue, asyncio.Future[Any]]]) -> None:
        self.round_trips += 1
        try:
            pipe = self._client.pipeline(transaction=False)
            for queue, _ in batch:
                queue(pipe)
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the store is down: every waiter hears it
            if not self.failures or time.monotonic() - self.down_until > RETRY_AFTER:
                log.warning("store unavailable: %s; decisions degrade, events and calls are spooled", exc)
            self.failures += 1
            STORE_FAILURES.inc()
            self.down_until = time.monotonic() + RETRY_AFTER
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class Store:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.batcher = Batcher(client)

    async def secret(self) -> bytes:
        """The signing secret every process shares; made once, kept in the store."""
        await self.client.set("sw:secret", secrets.token_hex(32), nx=True)
        value = await self.client.get("sw:secret")
        assert isinstance(value, bytes)
        return value

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()
