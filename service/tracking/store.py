"""The store: Redis or Valkey (standalone, behind Sentinel, or a cluster), the only home of shared state.

Key layout (docs/STORAGE.md has the full table). Every key starts with `sw:`; keys that a
script or a multi-key command touches together share one hash tag, so they live in one
cluster slot, while different sites and experiments spread over shards:

    sw:secret              string  signing secret shared by all service processes
    sw:secret:fingerprint  string  a keyed hash of the secret the processes sign with, never the secret
    sw:{SITE/EXPERIMENT}:… exposures and conversions (service.tracking.ledger)
    sw:{SITE:POOL}:…       number pool state and lease history (service.tracking.pools)
    sw:number:{E164}       the pool that last listed a tracking number (service.tracking.moves)
    sw:{SITE:calls}:…      call records and hashed callers (service.integrations.calls)

Commands are plain tuples of arguments, made by the modules that own the keys; `Batcher`
sends the commands of concurrent requests together, so a decision costs at most one round
trip that it shares with everything else that arrived meanwhile. Scripts travel by digest
(EVALSHA); a server that does not know one yet (new, restarted, flushed) gets it once by EVAL.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import redis.asyncio as redis
from hiredis import pack_command
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

from service.config import SENTINEL, sentinel_url
from service.observability import STORE_FAILURES
from service.tracking.pipe import DEMOTED, Pipe

log = logging.getLogger("swapline")
Client = redis.Redis | RedisCluster


# A store that does not answer must cost a request milliseconds, not the client's defaults
# of seconds and retries: the page is waiting. Work that must not be lost is spooled instead.
# One immediate retry on a fresh connection: after a store restart, the connections pooled
# for the rarer commands (reports, pool sync) are dead, and nothing else would notice.
TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0, "retry": Retry(NoBackoff(), 1)}
RETRY_AFTER = 0.5  # seconds a failed store is left alone before the next request tries it
WARN_EVERY = 60.0  # seconds between the log lines of one outage (swapline_store_errors_total counts every try)
# Seconds a batch may take, a new connection's handshake included: a page is waiting, and a
# store that is frozen rather than dead (it accepts connections, answers nothing) must cost
# no more than a dead one. Round trips take a millisecond or two. SWAPLINE_STORE_DEADLINE_MS.
DEADLINE = 0.2
# Seconds a command nobody waits for (a page on a visit's journey) may wait for a batch to
# ride with: under load one leaves every millisecond or two; a quiet worker sends its own.
DEFER = 0.25
# Batches out at once, each on a connection of its own. One would make the biggest batches,
# but then a worker sits idle while every request waits on the one round trip.
IN_FLIGHT = 2
# Seconds a connection of the batcher's may take to open (TCP, TLS, AUTH, a Sentinel's answer).
# Not a batch's deadline: a batch gives up on its connection, the opening goes on for the next.
OPENING = 2.0


class StoreDown(ConnectionError):
    """The store failed a moment ago; nothing was sent."""


PROBE = "sw:probe"  # written to learn whether the store takes writes (`Store.writes`)
STORE_ERRORS = (redis.RedisError, OSError)  # OSError covers StoreDown, refused sockets, time-outs


def refuses_us(exc: BaseException) -> bool:
    """Whether the store answered, refusing the credentials of SWAPLINE_REDIS_URL (none, or wrong
    ones): a setting to mend, not a store to wait for."""
    return isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS", "HELLO must be called")))


def why(exc: BaseException) -> str:
    """What a failed round trip says, in a sentence for a log line or `/readyz` (a time-out says
    nothing itself)."""
    if refuses_us(exc):
        return f"the store refuses the password of SWAPLINE_REDIS_URL, or its lack ({exc})"
    if refuses_writes(exc):
        return f"the store refuses writes: {exc}"
    return f"the store does not answer: {str(exc) or ('timed out' if isinstance(exc, TimeoutError) else repr(exc))}"


# Error replies of a store that answers and cannot serve: full (maxmemory with noeviction), unable
# to save its snapshot (MISCONF), a replica (READONLY), loading its data, a cluster that is down.
REFUSALS = ("OOM ", "MISCONF ", "READONLY ", "LOADING ", "MASTERDOWN ", "CLUSTERDOWN ", "BUSY ")


def refuses_writes(exc: BaseException) -> bool:
    """redis-py reads the first three as their own errors (the code left out of the message);
    the batcher's reader keeps every error reply whole."""
    return isinstance(exc, OutOfMemoryError | ReadOnlyError | BusyLoadingError) or (
        isinstance(exc, ResponseError) and str(exc).startswith(REFUSALS))


async def repeat(seconds: float, job: Callable[[], Awaitable[Any]], what: str, level: int = logging.WARNING,
                 at_once: bool = False) -> None:
    """Run `job` every `seconds` for as long as the process runs, the first time after them
    unless `at_once`: a store that is away costs a run, logged at `level`, never the loop."""
    if not at_once:
        await asyncio.sleep(seconds)
    while True:
        try:
            await job()
        except STORE_ERRORS as exc:
            log.log(level, "%s waits for the store: %s", what, exc)
        _stop_if_cancelled()
        await asyncio.sleep(seconds)


async def until_done(job: Callable[[], Awaitable[None]], what: str) -> None:
    """Run `job` until it is done: while the store is away, try again every second."""
    while True:
        try:
            return await job()
        except STORE_ERRORS as exc:
            log.debug("%s waits for the store: %s", what, exc)
            _stop_if_cancelled()
            await asyncio.sleep(1)


def _stop_if_cancelled() -> None:
    """Stop a task that was told to, though the job it ran returned: a store command cut short by
    the cancel may end as a store error, or be sent again and answered, and the cancel with it
    is lost. Else the task runs on, and whatever waits for it at shutdown waits for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary the Sentinels name, left when the server says it is a
    replica now (READONLY) or refuses writes for want of replicas (NOREPLICAS: they follow a
    new primary), for the primary the Sentinels name then."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:  # past redis-py's handling of READONLY, whose retry finds the old address again
            return await super(SentinelManagedConnection, self).read_response(*args, **kwargs)
        except ResponseError as exc:
            if not isinstance(exc, ReadOnlyError) and not str(exc).startswith(DEMOTED):
                raise
            await self.disconnect()
            self.host, self.port = await self.connection_pool.get_master_address()  # where the retry goes
            raise redis.ConnectionError(f"the store takes no writes: {exc}") from exc


def connect(url: str, cluster: bool = False) -> Client:
    if cluster:
        return RedisCluster.from_url(url, **TIMEOUTS)
    if url.startswith(f"{SENTINEL}:"):
        # Each new connection asks the Sentinels where the primary is; one that finds a replica
        # where the primary was (a failover) is dropped (`Pipe`, `_PrimaryConnection`).
        given = sentinel_url(url)
        sentinels = Sentinel(given.sentinels, sentinel_kwargs={
            "socket_connect_timeout": TIMEOUTS["socket_connect_timeout"], "socket_timeout": TIMEOUTS["socket_timeout"],
            "password": given.sentinel_password})
        primary: redis.Redis = sentinels.master_for(
            given.service, connection_class=_PrimaryConnection, db=given.db, username=given.username,
            password=given.password, health_check_interval=30, **TIMEOUTS)
        return primary
    return redis.Redis.from_url(url, health_check_interval=30, **TIMEOUTS)


_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script from `service/lua/`, called by its digest."""

    source: str
    sha: str

    @classmethod
    def named(cls, name: str, *uses: str) -> Script:
        """`service/lua/NAME.lua`, after the files whose local functions it uses."""
        folder = resources.files("service").joinpath("lua")
        source = "".join(folder.joinpath(f"{part}.lua").read_text() for part in (*uses, name))
        return cls(source, hashlib.sha1(source.encode()).hexdigest())

    def __call__(self, keys: tuple[str, ...], args: tuple[Any, ...],
                 shared: tuple[Any, ...] | None = ()) -> ScriptCall:
        # A few calls a page view: made without the named tuple's `__new__`, a Python frame.
        return _new_tuple(ScriptCall, (self, keys, args, shared))


class ScriptCall(NamedTuple):
    """A command that runs a script: EVALSHA, or EVAL where the server does not know it yet.

    The script's arguments are `shared` then `args`. `shared` are those that calls with the
    same keys repeat (a pool's hold, a day's dimension names): `pack` packs them with the
    digest and the keys once, not with every call. None: the keys are the call's own (a
    visitor's), nothing to pack once.
    """

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    shared: tuple[Any, ...] | None = ()

    def by_digest(self) -> tuple[Any, ...]:
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *(self.shared or ()), *self.args)

    def with_source(self) -> tuple[Any, ...]:
        """The server runs it and keeps it by its digest from then on."""
        return ("EVAL", self.script.source, len(self.keys), *self.keys, *(self.shared or ()), *self.args)


Command = tuple[Any, ...]  # a command's arguments as sent, ("HINCRBY", key, field, 1), or a ScriptCall
# Each request's commands and its future; None: deferred commands, nobody waits for them.
Batch = list[tuple[Sequence[Command], asyncio.Future[list[Any]] | None]]


def pack(commands: list[Command]) -> bytes:
    """The commands in the Redis protocol (RESP), as one buffer: what redis-py's `pack_commands`
    makes, by hiredis's packer in C (packing argument by argument in Python was the hottest
    part of a decision's store round trip). hiredis still costs a `sprintf` an argument, so
    what script calls repeat is packed once (`_head`)."""
    packed, last, bulks = [], None, b""
    for command in commands:
        if type(command) is not ScriptCall:
            packed.append(pack_command(command))
            continue
        keys, shared, rest = command.keys, command.shared, command.args
        if shared is None:  # the keys are the call's own (a visitor's): only the digest is packed once
            keys, shared, rest = (), (), (*keys, *rest)
        packed.append(_head(command.script.sha, len(command.keys), keys, shared, len(rest)))
        if rest:
            if rest is not last:  # calls may share theirs (a conversion's, one per experiment): packed once
                last, bulks = rest, pack_command(rest)
                bulks = bulks[bulks.index(b"\n") + 1:]  # without their count: the head has the call's
            packed.append(bulks)
    return b"".join(packed)


@functools.lru_cache(maxsize=4096)  # a few per pool and hour, experiment, site and day
def _head(sha: str, count: int, keys: tuple[str, ...], shared: tuple[Any, ...], more: int) -> bytes:
    """A script call's count of arguments, digest and `count` of keys, packed, then its `keys`
    and `shared` arguments where they are shared; `more` arguments follow."""
    head = pack_command(("EVALSHA", sha, count, *keys, *shared))
    return b"*%d\r\n%s" % (3 + len(keys) + len(shared) + more, head[head.index(b"\n") + 1:])


class Batcher:
    """Sends the commands of concurrent requests together, at most `IN_FLIGHT` batches at a time.

    A request submits all of its commands before its first `await`; whatever is submitted
    while the batches are out leaves together as soon as one is back, so under load the
    batches grow instead of the round trips. A standalone store gets them pipelined on
    connections of the batcher's own (no pipeline object per batch); a cluster through
    redis-py's cluster pipeline, which splits them by slot.
    """

    def __init__(self, client: Client, deadline: float = DEADLINE) -> None:
        self._client, self._deadline = client, deadline
        self._cluster = isinstance(client, RedisCluster)  # a slow isinstance (a Protocol): once, not per batch
        self._pending: Batch = []
        self._sending: set[asyncio.Future[Any]] = set()  # batches out; also the strong references to their tasks
        self._idle: list[Pipe] = []  # connections of the batcher's own, made when none is idle
        self._opening: set[asyncio.Task[Pipe]] = set()
        # The batches out on idle connections, oldest first, by their replies' future; one timer
        # watches the oldest's deadline (a timer each would cost a batch more than its packing).
        self._out: dict[asyncio.Future[list[Any]], tuple[Batch, list[Command], Pipe, float]] = {}
        self._watch: asyncio.TimerHandle | None = None
        self._deferred: list[Command] = []
        self._timer: asyncio.TimerHandle | None = None  # sends the deferred commands of a quiet worker
        self.round_trips = 0
        self.failures = 0
        self.down_until = 0.0  # monotonic time; before it, commands fail without a round trip
        self._warn_after = 0.0  # monotonic time; before it, a failure is not logged again
        self._warned = 0  # `failures` at the last line logged

    def submit(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """Queue the commands; the future gets their replies in order, or the first error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if time.monotonic() < self.down_until:
            future.set_exception(StoreDown("the store failed a moment ago"))
            return future
        if not self._pending and len(self._sending) < IN_FLIGHT:
            loop.call_soon(self._flush)
        self._pending.append((commands, future))
        return future

    def defer(self, *commands: Command) -> None:
        """Queue commands nobody waits for: they ride with the next batch that leaves, or leave
        on their own within `DEFER`, so they never cost a round trip while requests come. A
        failing store loses them, as it would fail a request's own commands."""
        self._deferred += commands
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(DEFER, self._send_deferred)

    def _send_deferred(self) -> asyncio.Future[list[Any]] | None:
        self._timer = None
        if not self._deferred:
            return None
        commands, self._deferred = self._deferred, []
        sent = self.submit(*commands)
        sent.add_done_callback(_unheard)
        return sent

    async def settle(self) -> None:
        """Send the deferred commands now, and wait for them (whatever the store says)."""
        if sent := self._send_deferred():
            await asyncio.wait([sent])

    def _flush(self) -> None:
        if not self._pending or len(self._sending) >= IN_FLIGHT:
            return  # nothing to send, or it leaves when a batch in flight is back
        batch, self._pending = self._pending, []
        if self._deferred:  # they ride along, first as they came first; their replies go unread
            batch.insert(0, (self._deferred, None))
            self._deferred = []
        self.round_trips += 1
        commands = [command for group, _ in batch for command in group]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline
        pipe = self._idle_pipe()
        sending: asyncio.Future[Any]
        if pipe is None:  # a cluster, or a new connection to open: a task of its own
            sending = loop.create_task(self._send(batch, commands, None, deadline))
            sending.add_done_callback(self._sent)
        else:  # most batches: the reply's callback answers them (no task), the watch bounds the wait
            sending = pipe.send(pack(commands), len(commands))
            self._out[sending] = batch, commands, pipe, deadline
            sending.add_done_callback(self._received)
            if self._watch is None:
                self._watch = loop.call_at(deadline, self._overdue)
        self._sending.add(sending)

    def _sent(self, sending: asyncio.Future[Any]) -> None:
        self._sending.discard(sending)
        self._flush()

    def _overdue(self) -> None:
        """Batches on idle connections past their deadline fail as `asyncio.timeout` fails the
        others (their callback closes the connection); the watch moves on to the oldest left."""
        self._watch = None
        loop = asyncio.get_running_loop()
        for sending, (*_, deadline) in self._out.items():
            if deadline > loop.time():
                self._watch = loop.call_at(deadline, self._overdue)
                return
            if not sending.done():
                sending.set_exception(TimeoutError())

    def _received(self, sent: asyncio.Future[list[Any]]) -> None:
        """A batch sent on an idle connection is back, or failed, or ran out of time."""
        batch, commands, pipe, deadline = self._out.pop(sent)
        error = sent.exception()
        if error is not None:
            pipe.close()  # replies may be left unread: start over on a fresh connection
            self._failed(batch, error)
        else:
            self._idle.append(pipe)
            replies = sent.result()
            if NoScriptError in map(type, replies):  # the scripts, within the batch's deadline
                sending = asyncio.get_running_loop().create_task(self._send(batch, commands, replies, deadline))
                sending.add_done_callback(self._sent)
                self._sending.add(sending)
            else:
                self._answer(batch, replies)
        self._sent(sent)

    async def _send(self, batch: Batch, commands: list[Command], replies: list[Any] | None, deadline: float) -> None:
        """A batch's round trip that needs more than a reply: a new connection, the cluster's
        pipeline, or the scripts a new or restarted server does not know (`replies` came back)."""
        try:
            async with asyncio.timeout_at(deadline):
                if replies is None:
                    replies = await self._execute(commands)
                if NoScriptError in map(type, replies):  # a new or restarted server: the scripts, once
                    unknown = {i: command.with_source() for i, command in enumerate(commands)
                               if isinstance(command, ScriptCall) and isinstance(replies[i], NoScriptError)}
                    for i, reply in zip(unknown, await self._execute(list(unknown.values())), strict=True):
                        replies[i] = reply
        except Exception as exc:
            self._failed(batch, exc)
            return
        self._answer(batch, replies)

    def _failed(self, batch: Batch, exc: BaseException) -> None:
        """The store is down: every waiter hears it."""
        self._count_failure(exc)
        self.down_until = time.monotonic() + RETRY_AFTER
        for _, future in batch:
            if future and not future.done():
                future.set_exception(exc)

    def _answer(self, batch: Batch, replies: list[Any]) -> None:
        """Each request its replies, or its first error reply. A store that refuses writes fails
        as one that is down does, in the log and the metrics, though it answers."""
        # Error replies are rare: one look over the batch decides whether to look closer.
        failed = any(isinstance(reply, Exception) for reply in replies)
        if failed and (refusal := next((reply for reply in replies if refuses_writes(reply)), None)):
            self._count_failure(refusal)
        start = 0
        for group, future in batch:
            mine = replies[start:start + len(group)]
            start += len(group)
            if future is None or future.done():
                continue
            error = failed and next((reply for reply in mine if isinstance(reply, Exception)), None)
            if error:
                future.set_exception(error)
            else:
                future.set_result(mine)

    def _count_failure(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now >= self._warn_after:  # an outage is a line a minute, not one a try
            since = f" ({self.failures - self._warned} failures since the last line)" if self._warned else ""
            log.warning("store unavailable: %s; decisions degrade, events and calls are spooled%s", why(exc), since)
            self._warn_after, self._warned = now + WARN_EVERY, self.failures
        self.failures += 1
        STORE_FAILURES.inc()

    async def _execute(self, commands: list[Command]) -> list[Any]:
        """The replies of `commands`, an error reply as its exception in its place."""
        if self._cluster:
            assert isinstance(self._client, RedisCluster)
            pipeline = self._client.pipeline(transaction=False)
            for command in commands:
                pipeline.execute_command(*(command.by_digest() if type(command) is ScriptCall else command))
            return list(await pipeline.execute(raise_on_error=False))
        pipe = await self._pipe()
        try:
            replies = await pipe.send(pack(commands), len(commands))
        except BaseException:  # replies may be left unread: start over on a fresh connection
            pipe.close()
            raise
        self._idle.append(pipe)
        return replies

    async def prepare(self) -> None:
        """Open the connections the first batches will take, as a worker starts: a page view
        should not wait for a connection's opening, nor miss its deadline for one."""
        if not self._cluster:
            await asyncio.wait([self._open() for _ in range(IN_FLIGHT)])

    async def _pipe(self) -> Pipe:
        """An idle connection that is still open, else the next one opened."""
        while not (pipe := self._idle_pipe()):
            if len(self._opening) < IN_FLIGHT:
                self._open()
            done, _ = await asyncio.wait(self._opening, return_when=asyncio.FIRST_COMPLETED)
            for opened in done:
                if error := opened.exception():
                    raise error
        return pipe

    def _open(self) -> asyncio.Task[Pipe]:
        """Open a connection for the idle ones, in a task of its own: a batch whose deadline
        comes first gives up waiting, not the opening (on a slow link, every opening would)."""
        assert isinstance(self._client, redis.Redis)
        opening = asyncio.create_task(asyncio.wait_for(Pipe.open(self._client), OPENING))
        self._opening.add(opening)
        opening.add_done_callback(self._opened)
        return opening

    def _opened(self, opening: asyncio.Task[Pipe]) -> None:
        self._opening.discard(opening)
        if opening.cancelled():
            return
        if error := opening.exception():  # whoever waits hears it; the next batch tries again
            log.debug("a connection to the store failed to open: %r", error)
        else:
            self._idle.append(opening.result())

    def _idle_pipe(self) -> Pipe | None:
        while self._idle:
            pipe = self._idle.pop()
            if not pipe.closed:
                return pipe
        return None

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.settle()
        while self._sending or self._opening:  # a batch back may send the next one
            await asyncio.gather(*self._sending, *self._opening, return_exceptions=True)
        if self._watch is not None:
            self._watch.cancel()
        for pipe in self._idle:
            pipe.close()


def _unheard(future: asyncio.Future[list[Any]]) -> None:
    """Nobody waits for deferred commands: a failure is only worth a debug line."""
    if not future.cancelled() and (error := future.exception()):
        log.debug("deferred commands failed: %r", error)


FINGERPRINT = "sw:secret:fingerprint"


def fingerprint(secret: bytes) -> bytes:
    """What the store keeps of the signing secret, so that a process with another one is told:
    a hash keyed by the secret, which says nothing of it."""
    return hmac.new(secret, b"swapline secret fingerprint", hashlib.sha256).hexdigest().encode()


class Store:
    def __init__(self, client: Client, deadline: float = DEADLINE) -> None:
        self.client, self.deadline = client, deadline
        self.batcher = Batcher(client, deadline)

    async def secret(self) -> bytes:
        """The signing secret every process shares; made once, kept in the store."""
        await self.client.set("sw:secret", secrets.token_hex(32), nx=True)
        value = await self.client.get("sw:secret")
        assert isinstance(value, bytes)
        return value

    async def in_a_cluster(self) -> bool:
        """Whether the server is a node of a Redis/Valkey Cluster (whose keys a plain client
        reaches only in its own slots)."""
        return bool((await self.client.info("cluster")).get("cluster_enabled"))

    async def vouched_before(self) -> bool:
        """Whether any process has left its secret's mark here yet (`vouch`): on a store that
        holds none, this is the first start, or not the store the other replicas use."""
        return bool(await self.client.exists(FINGERPRINT))

    async def vouch(self, mark: bytes) -> bool:
        """Whether the processes on this store sign with the secret of `mark` (`fingerprint`);
        the first to ask leaves its mark."""
        await self.client.set(FINGERPRINT, mark, nx=True)
        return bool(await self.client.get(FINGERPRINT) == mark)

    async def time(self) -> float:
        """The store's clock, in seconds since the epoch."""
        seconds, micros = await asyncio.wait_for(self.client.time(), self.deadline)
        return int(seconds) + int(micros) / 1e6

    async def setting(self, name: str) -> str | None:
        """A setting of the store's; None from a store that does not let its configuration be
        read (some managed ones)."""
        try:
            value = (await self.client.config_get(name)).get(name)
        except ResponseError:
            return None
        return None if value is None else str(value)

    async def writes(self) -> None:
        """Raises unless the store takes a write: a full one, or one that cannot save, answers a
        PING and refuses every lease (`REFUSALS`)."""
        await self.client.set(PROBE, 1, px=60_000)

    async def close(self) -> None:
        await self.batcher.close()
        await self.client.aclose()
        pool = getattr(self.client, "connection_pool", None)
        if isinstance(pool, SentinelConnectionPool):  # the connections that asked the Sentinels
            await pool.sentinel_manager.aclose()
