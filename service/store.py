"""The store: Redis or Valkey (standalone or cluster), the only home of shared state.

Key layout (docs/STORAGE.md has the full table). Every key starts with `sw:`; keys that a
script or a multi-key command touches together share one hash tag, so they live in one
cluster slot, while different sites and experiments spread over shards:

    sw:secret                      string  signing secret shared by all service processes
    sw:{SITE/EXP}:assign           hash    visitor id → "variant|page|day" (first exposure)
    sw:{SITE/EXP}:exposed          hash    "day|page|variant" → unique exposed visitors
    sw:{SITE:POOL}:...             number pool state and lease history (service.pools)
    sw:{SITE:calls}:calls          hash    call id → call record (service.calls)
    sw:{SITE:calls}:caller:HASH    zset    call id → start ms, per hashed caller number

Scripts go as EVAL rather than EVALSHA: the server caches them by digest all the same,
and EVAL needs no SCRIPT LOAD round trip and no NOSCRIPT retry after a store restart.

`Batcher` sends the commands of concurrent requests together, so a decision costs at most
one round trip that it shares with whatever else arrived in the same event-loop tick.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

Client = redis.Redis | RedisCluster
Queue = Callable[[Any], Any]  # adds exactly one command to a pipeline

CALL = resources.files("service").joinpath("lua", "call.lua").read_text()
EXPOSE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  return 1
end
return 0
"""


def connect(url: str, cluster: bool = False) -> Client:
    if cluster:
        return RedisCluster.from_url(url)
    return redis.Redis.from_url(url, health_check_interval=30)


def experiment_keys(site: str, experiment: str) -> tuple[str, str]:
    tag = f"{{{site}/{experiment}}}"
    return f"sw:{tag}:assign", f"sw:{tag}:exposed"


class Batcher:
    """Queues single commands from concurrent requests and sends them as one pipeline."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._pending: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # strong references until done
        self.round_trips = 0

    def submit(self, queue: Queue) -> asyncio.Future[Any]:
        """Queue a command now; it leaves with everything queued in this event-loop tick.

        Callers submit before their first `await`, so concurrent work shares the pipeline.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
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

    async def expose(self, site: str, vid: str, page: str, day: str,
                     assignments: dict[str, str]) -> None:
        """Count each visitor once per experiment, on the day and page they first saw it."""

        def command(experiment: str, variant: str) -> Queue:
            keys = experiment_keys(site, experiment)
            return lambda pipe: pipe.eval(
                EXPOSE, 2, *keys, vid, f"{variant}|{page}|{day}", f"{day}|{page}|{variant}"
            )

        await asyncio.gather(*[self.batcher.submit(command(*item)) for item in assignments.items()])

    async def record_call(self, site: str, call_id: str, record: dict[str, Any], caller_hash: str, start_ms: int,
                          unique_ms: int, talk: int, qualify_after: int) -> tuple[dict[str, Any], bool]:
        """Store a call once; returns the stored record and whether the id was seen before."""
        prefix = f"sw:{{{site}:calls}}:"
        stored, seen = await self.client.eval(
            CALL, 1, prefix + "calls", call_id, orjson.dumps(record), caller_hash, start_ms, unique_ms, talk,
            qualify_after, prefix,
        )
        return orjson.loads(stored), bool(seen)

    async def close(self) -> None:
        await self.client.aclose()
