"""What operators see: Prometheus metrics, request ids, and JSON logs that carry them.

Counters and histograms live in `prometheus_client`; with several workers `swapline serve`
points `PROMETHEUS_MULTIPROC_DIR` at a directory, so any worker's `/metrics` adds up all of
them. Gauges of shared state (spool depth, pool utilisation) are read at scrape time from
the disk and the store, so every worker reports the same truth.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import operator
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:  # the store counts its errors here, so no import of the runtime at load time
    from service.runtime import Runtime

# A counter's `_created` twin would double the series of every site's counters, for a time
# Prometheus keeps by itself.
disable_created_metrics()  # type: ignore[no-untyped-call]
REQUEST_ID = contextvars.ContextVar("request_id", default="")
# Request ids need to be unique, not secret: a random prefix per process and a counter are,
# without a system call for random bytes on every request.
_ID_PREFIX = secrets.token_hex(4)
_next_id = itertools.count(1).__next__
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME = operator.itemgetter(0)  # of a header

LATENCY = Histogram("swapline_request_seconds", "Time to answer a request", ["route", "method", "status"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
LEASES = Counter("swapline_leases_total", "Number leases by outcome", ["site", "pool", "status"])
SPOOLED = Counter("swapline_spooled_total", "Events and calls written to the spool while the store was down",
                  ["kind"])
SPOOL_FAILURES = Counter("swapline_spool_errors_total",
                         "Events and calls the spool could not keep (full or read-only disk): refused with 503")
SPOOL_CORRUPT = Counter("swapline_spool_corrupt_total", "Spooled records found torn or corrupt, skipped on replay")
EXPORTS = Counter("swapline_export_uploads_total", "Scheduled uploads to ad platforms by outcome",
                  ["site", "target", "status"])
WEBHOOKS = Counter("swapline_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["site", "outcome"])
CALLS = Counter("swapline_calls_total", "Calls heard from telephony by outcome: credited, not_credited (the reason in "
                "the call log), duplicate, spooled, or refused (a 4xx: why in the service's log)", ["site", "outcome"])
STORE_FAILURES = Counter("swapline_store_errors_total", "Round trips to the store that failed")
RULES_CHANGES = Counter("swapline_rules_changes_total", "Changes to the rules directory, applied or refused",
                        ["outcome"])
# By site, so that an installation of many clients' sites shows whose traffic stopped, is
# flooded or is refused: a refusal by its error code (origin_not_allowed: the site moved to an
# address its rules do not list). Site "" for what names no site of the rules.
DECISIONS = Counter("swapline_decisions_total", "Decisions by site and outcome: answered, degraded (the store was "
                    "late: the page keeps its number), or the error code of a refusal (rate_limited: 429)",
                    ["site", "outcome"])
BEACONS = Counter("swapline_beacons_total", "Beacons by site and outcome: heartbeat, reset (205: ask again), a "
                  "conversion's outcome (counted, duplicate, capped …), or the error code of a refusal",
                  ["site", "outcome"])
FLUSH_EVERY = 1.0  # seconds between a `Tally`'s additions to its counter


class Tally:
    """A labelled counter's counts on the hot path (leases, decisions, beacons), kept in a plain
    dict and added to the counter every `FLUSH_EVERY` (`keep_flushing`) and as `/metrics`
    answers: the counter's own `inc` takes a lock and finds its child by the labels on every
    call. With several workers, another worker's counts show within a second."""

    def __init__(self, metric: Counter) -> None:
        self.metric = metric
        self._counts: dict[tuple[str, ...], int] = {}

    def count(self, *labels: str) -> None:
        self._counts[labels] = self._counts.get(labels, 0) + 1

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        for labels, count in counts.items():
            labelled(self.metric, *labels).inc(count)


LEASE_COUNTS = Tally(LEASES)
DECISION_COUNTS = Tally(DECISIONS)
BEACON_COUNTS = Tally(BEACONS)


def flush_tallies() -> None:
    """Every tally's counts to its counter: each second (`keep_flushing`), and as `/metrics` answers."""
    for tally in (LEASE_COUNTS, DECISION_COUNTS, BEACON_COUNTS):
        tally.flush()


async def keep_flushing() -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        flush_tallies()


class RequestMiddleware:
    """Gives every request an id (kept from a sane `X-Request-ID`, else made) that logs carry
    and the answer echoes, and times it by route. Plain ASGI: no task or copy per request.
    (`service.front.fastpath` does the same for the hot routes, with `Tracked` too.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with Tracked(scope) as request:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    request.status = message["status"]
                    message["headers"] = [*message.get("headers", []), request.header]
                await send(message)

            await self.app(scope, receive, send_with_id)


class Activity:
    """The requests a worker has begun, and those running: when it is quiet (`service.collector`)."""

    __slots__ = ("begun", "running")

    def __init__(self) -> None:
        self.begun = self.running = 0

    def __call__(self) -> tuple[int, int]:
        return self.begun, self.running


ACTIVITY = Activity()


class Tracked:
    """One request while it runs: its id, in `REQUEST_ID` for the logs, and on the way out its
    latency by route (as the router or the fast path set `scope["route"]`) and status class.
    Set `status` once the answer starts; an exception leaves it 500."""

    __slots__ = ("_reset", "_started", "id", "scope", "status")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.id = _request_id(scope)
        self.status = 500

    @property
    def header(self) -> tuple[bytes, bytes]:
        return b"x-request-id", self.id.encode()

    def __enter__(self) -> Tracked:
        self._reset = REQUEST_ID.set(self.id)
        self._started = time.perf_counter()
        ACTIVITY.begun += 1
        ACTIVITY.running += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        ACTIVITY.running -= 1
        route = self.scope.get("route")
        path = route.path if route else "unmatched"
        labelled(LATENCY, path, self.scope["method"], f"{self.status // 100}xx").observe(
            time.perf_counter() - self._started
        )
        REQUEST_ID.reset(self._reset)


def _request_id(scope: Scope) -> str:
    """The client's `X-Request-ID` when it is sane, else a new one."""
    headers = scope["headers"]
    if b"x-request-id" in map(_NAME, headers):  # looked for in C: most requests carry none
        given = bytes(next(value for name, value in headers if name == b"x-request-id")).decode("latin-1")
        if _VALID_ID.fullmatch(given):
            return given
    return f"{_ID_PREFIX}{_next_id():08x}"


@functools.lru_cache(maxsize=1024)  # labels() takes a lock and builds a key: once per label set is enough
def labelled(metric: Any, *labels: str) -> Any:
    """The child of `metric` for `labels`, as `metric.labels(*labels)`, for the hot path."""
    return metric.labels(*labels)


class JSONFormatter(logging.Formatter):
    """One JSON object a line, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := REQUEST_ID.get():
            entry["request_id"] = request_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def log_config(level: str, json: bool) -> dict[str, Any]:
    """logging.config for the service and uvicorn alike."""
    formatter = {"()": JSONFormatter} if json else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
                    for name in ("swapline", "uvicorn", "uvicorn.error", "uvicorn.access")},
    }


async def metrics_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    flush_tallies()
    registry = CollectorRegistry()
    if _multiprocess():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest()
    gauges = [
        "# HELP swapline_spool_depth Events and calls waiting in the spool for the store",
        "# TYPE swapline_spool_depth gauge",
        f"swapline_spool_depth {await asyncio.to_thread(runtime.spool.depth)}",
        "# HELP swapline_spool_writable 1 while the spool can keep what a store outage brings, else 0",
        "# TYPE swapline_spool_writable gauge",
        f"swapline_spool_writable {int(await runtime.spool.check() is None)}",
        "# HELP swapline_rules_refused 1 while the last change to the rules directory stands refused (older "
        "rules serve), else 0",
        "# TYPE swapline_rules_refused gauge",
        f"swapline_rules_refused {int(runtime.rules_refused is not None)}",
        "# HELP swapline_sites Sites in the rules this process serves (a file taken out by mistake shows as a fall)",
        "# TYPE swapline_sites gauge",
        f"swapline_sites {len(runtime.rules.sites)}",
        "# HELP swapline_site_served 1 for each site in the rules this process serves: one gone names itself",
        "# TYPE swapline_site_served gauge",
        *(f'swapline_site_served{{site="{site}"}} 1' for site in runtime.rules.sites),
        "# HELP swapline_pool_held Numbers held by visitors now",
        "# TYPE swapline_pool_held gauge",
        "# HELP swapline_pool_size Numbers in the pool",
        "# TYPE swapline_pool_size gauge",
    ]
    pools = [(site.id, pool) for site in runtime.rules.sites.values() for pool in site.pools if pool.numbers]
    try:
        held = await runtime.pools.held(pools, runtime.now_ms())
    except Exception:  # the store is down or late: the gauges are absent rather than wrong, and the scrape on time
        held = []
    for (site, pool), count in zip(pools, held, strict=False):
        labels = f'{{site="{site}",pool="{pool.id}"}}'
        gauges += [f"swapline_pool_held{labels} {count}", f"swapline_pool_size{labels} {len(pool.numbers)}"]
    return Response(text + ("\n".join(gauges) + "\n").encode(), media_type=CONTENT_TYPE_LATEST)


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
