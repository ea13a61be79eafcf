"""The store layer on a real Valkey: batching, exposure counting, the shared secret."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio

from service.tracking.ledger import EXPOSE, Ledger, LedgerKeys, day_number
from service.tracking.store import (
    DEADLINE,
    DEFER,
    RETRY_AFTER,
    STORE_ERRORS,
    Command,
    ScriptCall,
    Store,
    connect,
    pack,
    repeat,
    until_done,
)
from tests.conftest import CLUSTER, free_port


def exposures(site: str, vid: str, page: str, day: str, variants: dict[str, str]) -> list[Command]:
    """The commands of one page view's exposures, from a ledger that has recorded nothing yet."""
    commands, _ = Ledger(Store(connect("redis://127.0.0.1:1"))).exposures(site, vid, page, day, variants)
    return commands


def day_counts(store: redis.Redis, site: str, experiment: str, day: str) -> dict[bytes, int]:
    """The ledger's counts of a cohort day (service/lua/spans.lua), the day's totals left out."""
    counts = store.hgetall(LedgerKeys.of(site, experiment).span(day_number(day), 1))
    return {name: int(n) for name, n in counts.items() if b"|*|" not in name}


def test_concurrent_requests_share_one_round_trip(valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> int:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        await asyncio.gather(*(
            shared.batcher.submit(*exposures("demo", f"visitor-{i:016d}", "/", "2026-11-22",
                                                    {"e": "b", "f": "control"}))
            for i in range(100)
        ))
        trips = shared.batcher.round_trips
        await shared.close()
        return trips

    assert asyncio.run(scenario()) == 1  # 300 script calls from 100 requests, one pipeline
    assert day_counts(store, "demo", "e", "2026-11-22") == {b"e|/|b": 100}
    assert store.hlen("sw:{demo/f}:assign") == 100


def test_exposure_counts_a_visitor_once_whatever_the_page_or_day(valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> None:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        for page, day in (("/", "2026-11-22"), ("/other", "2026-11-23")):
            await shared.batcher.submit(*exposures("demo", "visitor-000000000001", page, day, {"e": "b"}))
        await shared.close()

    asyncio.run(scenario())
    assert day_counts(store, "demo", "e", "2026-11-22") == {b"e|/|b": 1}
    assert day_counts(store, "demo", "e", "2026-11-23") == {}
    assert store.hget("sw:{demo/e}:assign", "visitor-000000000001") == b"b|/|2026-11-22"


def test_every_process_gets_the_same_secret(valkey_url: str, store: redis.Redis) -> None:
    async def secrets() -> list[bytes]:
        stores = [Store(connect(valkey_url, cluster=CLUSTER)) for _ in range(3)]
        found = list(await asyncio.gather(*(s.secret() for s in stores)))
        await asyncio.gather(*(s.close() for s in stores))
        return found

    first, *others = asyncio.run(secrets())
    assert len(first) == 64 and all(other == first for other in others)


def test_a_dead_store_is_reported_to_every_waiter() -> None:
    async def scenario() -> list[BaseException | None]:
        dead = Store(connect("redis://127.0.0.1:1/0"))
        results = await asyncio.gather(
            *(dead.batcher.submit(*exposures("demo", f"v-{i:018d}", "/", "2026-11-22", {"e": "b"}))
              for i in range(5)),
            return_exceptions=True,
        )
        await dead.close()
        return list(results)

    assert all(isinstance(result, redis.ConnectionError) for result in asyncio.run(scenario()))


def test_scripts_come_back_after_the_store_forgets_them(valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> list[list[object]]:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        replies = [await shared.batcher.submit(*exposures("demo", "visitor-forgetful-01", "/", "2026-11-22",
                                                                 {"e": "b"}))]
        store.script_flush()  # what a restarted or flushed server knows: nothing
        replies.append(await shared.batcher.submit(*exposures("demo", "visitor-forgetful-02", "/",
                                                                     "2026-11-22", {"e": "b"})))
        await shared.close()
        return replies

    assert asyncio.run(scenario()) == [[1, 1], [1, 1]]  # each visitor counted in `e` and site-wide
    assert day_counts(store, "demo", "e", "2026-11-22") == {b"e|/|b": 2}


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    expose = EXPOSE(("sw:{a/b}:assign", "sw:{a/b}:exposed"), ("visitor", 17, -3, 0.25, "/страница"))
    shared = EXPOSE(("sw:{a/b}:assign",), ("visitor", "/"), (1000, "шт"))  # packed once with the keys
    own = EXPOSE(("sw:{a|v}:pages",), ("/",), None)  # the visitor's keys: packed with each call
    commands = [expose, ("HINCRBY", "sw:{a/_site}:bots", "2026-11-22", 1), ("SET", b"\x00\xff bytes", "кириллица"),
                expose, shared, own, EXPOSE(("k",), (), ("all of them",)), shared]
    connection = redis.asyncio.Redis().connection_pool.make_connection()
    expected = [command.by_digest() if isinstance(command, ScriptCall) else command for command in commands]
    assert pack(commands) == b"".join(connection.pack_commands(expected))


def test_an_error_reply_fails_only_the_request_it_belongs_to(valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> list[object]:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        store.set("sw:{demo}:text", "not a number")
        results = await asyncio.gather(shared.batcher.submit(("INCR", "sw:{demo}:count")),
                                       shared.batcher.submit(("INCR", "sw:{demo}:text")),
                                       shared.batcher.submit(("INCR", "sw:{demo}:count"), ("GET", "sw:{demo}:nothing")),
                                       return_exceptions=True)
        await shared.close()
        return list(results)

    counted, refused, again = asyncio.run(scenario())
    assert counted == [1] and again == [2, None]
    assert isinstance(refused, redis.ResponseError) and "not an integer" in str(refused)


@pytest.mark.skipif(CLUSTER, reason="on a cluster, batches go through redis-py's cluster pipeline, "
                                     "not service.tracking.pipe")
def test_a_connection_the_store_drops_fails_its_waiters_and_the_next_batch_reconnects(
        valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> tuple[BaseException | list[object], list[object]]:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        await shared.batcher.submit(("CLIENT", "SETNAME", "batcher"))  # names the batcher's own connection
        victim = next(client["id"] for client in store.client_list() if client["name"] == "batcher")
        # Never answers: the kill ends it, within the batcher's own 1 s deadline however busy the machine.
        waiting = shared.batcher.submit(("BLPOP", "sw:{demo}:never", 0))
        while not waiting.done() and not any(client["id"] == victim and client["cmd"] == "blpop"
                                             for client in store.client_list()):
            await asyncio.sleep(0.01)  # until the store holds it
        store.client_kill_filter(_id=victim)
        try:
            lost: BaseException | list[object] = await waiting
        except Exception as exc:
            lost = exc
        await asyncio.sleep(RETRY_AFTER)  # a failed store is left alone that long
        after = await shared.batcher.submit(("INCR", "sw:{demo}:after"))
        await shared.close()
        return lost, after

    lost, after = asyncio.run(scenario())
    assert isinstance(lost, ConnectionError)
    assert after == [1]


def test_a_batch_the_store_does_not_answer_fails_at_its_deadline_and_the_next_reconnects(
        valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> tuple[BaseException | list[object], float, list[object]]:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        await shared.batcher.submit(("INCR", "sw:{demo}:before"))  # its connection is idle now
        started = time.monotonic()
        try:
            lost: BaseException | list[object] = await shared.batcher.submit(("BLPOP", "sw:{demo}:never", 0))
        except Exception as exc:
            lost = exc
        took = time.monotonic() - started
        await asyncio.sleep(RETRY_AFTER)  # a failed store is left alone that long
        after = await shared.batcher.submit(("INCR", "sw:{demo}:after"))
        await shared.close()
        return lost, took, after

    lost, took, after = asyncio.run(scenario())
    assert isinstance(lost, TimeoutError)
    assert DEADLINE <= took < DEADLINE + 1  # a second to spare for a busy machine
    assert after == [1]


class SlowToOpen:
    """A TCP proxy to the store that holds each new connection `delay` seconds before it
    forwards a byte: a store on a slow link, or behind a slow TLS handshake."""

    def __init__(self, target: str, delay: float) -> None:
        self.target, self.delay = urlsplit(target), delay

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return self.target._replace(netloc=f"127.0.0.1:{port}").geturl()

    async def __aexit__(self, *_: object) -> None:
        self._server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.delay)
        upstream_reader, upstream_writer = await asyncio.open_connection(self.target.hostname, self.target.port)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
            sink.close()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer), return_exceptions=True)


@pytest.mark.skipif(CLUSTER, reason="a cluster's connections are redis-py's, opened in its cluster pipeline")
def test_a_store_whose_connections_open_slower_than_a_batch_may_wait_is_reached_all_the_same(
        valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> tuple[BaseException | list[object], list[object]]:
        async with SlowToOpen(valkey_url, 3 * DEADLINE) as slow_url:
            shared = Store(connect(slow_url))
            try:
                first: BaseException | list[object] = await shared.batcher.submit(("INCR", "sw:{demo}:slow"))
            except TimeoutError as exc:  # that page view degrades; the connection's opening goes on
                first = exc
            later: list[object] = []
            for _ in range(40):
                await asyncio.sleep(RETRY_AFTER)  # a failed store is left alone that long
                with contextlib.suppress(TimeoutError):
                    later = await shared.batcher.submit(("INCR", "sw:{demo}:slow"))
                    break
            await shared.close()
        return first, later

    first, later = asyncio.run(scenario())
    assert isinstance(first, TimeoutError)
    assert later == [1]


@pytest.mark.skipif(CLUSTER, reason="a cluster's connections are redis-py's, opened in its cluster pipeline")
def test_connections_opened_as_a_worker_starts_answer_its_first_batch_in_time(
        valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> list[list[object]]:
        async with SlowToOpen(valkey_url, 3 * DEADLINE) as slow_url:
            shared = Store(connect(slow_url))
            await shared.batcher.prepare()  # what a worker does before it takes requests
            first = (shared.batcher.submit(("INCR", "sw:{demo}:first")) for _ in range(3))
            replies = list(await asyncio.gather(*first))
            await shared.close()
        return replies

    assert sorted(asyncio.run(scenario())) == [[1], [2], [3]]


@pytest.mark.skipif(CLUSTER, reason="a cluster has no numbered databases")
def test_the_batchers_connections_keep_what_the_url_selects(valkey_url: str, store: redis.Redis) -> None:
    """redis-py opens the batcher's connections (AUTH, SELECT, TLS) before they take the socket over."""
    database_five = urlsplit(valkey_url)._replace(path="/5").geturl()

    async def scenario() -> None:
        other = Store(connect(database_five))
        await other.batcher.submit(("SET", "sw:{demo}:database", "five"))
        await other.close()

    asyncio.run(scenario())
    assert store.get("sw:{demo}:database") is None
    with redis.Redis.from_url(database_five) as five:
        assert five.getdel("sw:{demo}:database") == b"five"


def test_deferred_commands_ride_with_the_next_batch_before_its_own(valkey_url: str, store: redis.Redis) -> None:
    store.set("sw:{demo}:text", "not a number")

    async def scenario() -> tuple[list[object], int]:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        shared.batcher.defer(("SET", "sw:{demo}:journey", "/page"))
        shared.batcher.defer(("INCR", "sw:{demo}:text"))  # an error reply, which nobody hears
        reply = await shared.batcher.submit(("GET", "sw:{demo}:journey"))
        trips = shared.batcher.round_trips
        await shared.close()
        return reply, trips

    assert asyncio.run(scenario()) == ([b"/page"], 1)  # sent first, in the one round trip


def test_a_quiet_worker_sends_its_deferred_commands_on_its_own(valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> int:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        await shared.writes()  # ready, as in the test below
        shared.batcher.defer(("SET", "sw:{demo}:journey", "/page"))
        shared.batcher.defer(("RPUSH", "sw:{demo}:pages", "/next"))
        while shared.batcher.round_trips == 0:  # no other request comes: its timer sends them
            await asyncio.sleep(DEFER / 10)
        await shared.close()
        return shared.batcher.round_trips

    assert asyncio.run(scenario()) == 1
    assert store.get("sw:{demo}:journey") == b"/page" and store.lrange("sw:{demo}:pages", 0, -1) == [b"/next"]


def test_settling_and_closing_send_what_is_deferred_at_once(valkey_url: str, store: redis.Redis) -> None:
    async def scenario() -> list[bytes | None]:
        shared = Store(connect(valkey_url, cluster=CLUSTER))
        await shared.writes()  # ready, as a worker is before its first request: a cluster's first
        # batch would find its nodes within the batch's deadline, which a busy machine may miss
        shared.batcher.defer(("SET", "sw:{demo}:settled", "yes"))
        await shared.batcher.settle()  # as an erasure does before it erases
        seen = [store.get("sw:{demo}:settled")]
        shared.batcher.defer(("SET", "sw:{demo}:closed", "yes"))
        await shared.close()  # a worker that stops
        return [*seen, store.get("sw:{demo}:closed")]

    assert asyncio.run(scenario()) == [b"yes", b"yes"]


def test_an_outage_is_logged_once_a_minute_not_at_every_try(caplog: pytest.LogCaptureFixture) -> None:
    """Every try is counted (swapline_store_errors_total); the log gets the outage's first
    failure, then a line a minute with how many failed since."""
    from service.observability import STORE_FAILURES

    async def tries() -> None:
        store = Store(connect(f"redis://127.0.0.1:{free_port()}/0"))
        try:
            for _ in range(5):
                store.batcher.down_until = 0.0  # the next request tries the store now, not after RETRY_AFTER
                with contextlib.suppress(*STORE_ERRORS):
                    await store.batcher.submit(("PING",))
        finally:
            await store.close()

    before = STORE_FAILURES._value.get()
    asyncio.run(tries())
    assert STORE_FAILURES._value.get() - before == 5
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("store unavailable")]
    assert len(said) == 1 and "the store does not answer" in said[0], said


@pytest.mark.parametrize("runner", ["repeat", "until_done"])
def test_a_background_job_whose_command_swallowed_its_cancel_still_stops(runner: str) -> None:
    """A store command the shutdown's cancel cut short may be sent again and answered, or end as
    a store error: the cancel is lost. A webhook round's did, and the service's shutdown (and a
    test's) waited for that task for ever."""
    calls = 0

    async def swallowing() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:  # run again after the cancel: what the task must not do (the second cancel stops it)
            await asyncio.sleep(3600)
            return
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # as a retried command does, the first time
            if runner == "until_done":
                raise redis.ConnectionError("the connection was closed") from None

    async def main() -> None:
        job = repeat(0.01, swallowing, "a job", at_once=True) if runner == "repeat" else until_done(swallowing, "a job")
        task = asyncio.create_task(job)
        while not calls:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)  # a safety net: it ends at once, or never
        assert calls == 1

    asyncio.run(main())
