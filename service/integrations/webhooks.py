"""Outgoing webhooks: each call and conversion, signed, to the site's own endpoints (CRMs, warehouses).

A site lists its endpoints in its rules (docs/WEBHOOKS.md):

    webhooks:
      - id: crm                      # optional: names its queue, so the url may change
        url: https://crm.example.com/swapline
        secret: ${CRM_WEBHOOK_SECRET}
        kinds: [call, form]          # optional: which conversions (default: all)

Every entry of the conversion log (`service.tracking.journal`) reaches each endpoint at least once,
through the endpoint's queue in the store (service.integrations.webhook_queues): the store
remembers what each endpoint acknowledged, so deliveries survive restarts and outages, and any
process may deliver (an entry waiting for a retry is claimed by one). A 2xx acknowledges;
anything else (an error status, a refused connection, a timeout) is retried after 1, 2, 4 …
seconds from the failure, at most an hour apart, for as long as the log keeps the entry. The
body's `id` is the conversion's, the same on every attempt: receivers dedupe by it.

Endpoints go at their own pace: each has its own round of deliveries (`AT_ONCE` at a time),
and a slow one holds up only itself, for at most the timeout a delivery
(service.integrations.webhook_posts).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import orjson
from starlette.requests import Request

from service.front.auth import require_report_token
from service.front.responses import JSON
from service.integrations.webhook_posts import Sender
from service.integrations.webhook_queues import MOST_BACKOFF_MS, Queues, groups, orphans, registry
from service.observability import WEBHOOKS
from service.rules.engine import Site
from service.rules.geo import GeoDB
from service.rules.settings import Webhook
from service.runtime import Runtime
from service.tracking.journal import bodies
from service.tracking.journal import key as log_key
from service.tracking.store import STORE_ERRORS, Store, repeat
from service.tracking.visits import city_named, learn_city_names

BATCH = 50  # entries looked at for a retry, per endpoint
AT_ONCE = 10  # deliveries in flight per endpoint
KEPT_DELIVERIES = 1000  # of the delivery log, per site
log = logging.getLogger("swapline")


class Entry(NamedTuple):
    id: bytes  # in the log's stream
    attempt: int  # 1, then 2, 3 … for retries
    fields: dict[bytes, bytes] | None  # None: trimmed from the log since it was read


def deliveries_key(site: str) -> str:
    return f"sw:{{{site}:log}}:deliveries"


class Deliveries:
    """Delivers the log of every site to its endpoints, in every process."""

    def __init__(self, store: Store, sites: Callable[[], list[Site]], now_ms: Callable[[], int], geo: GeoDB,
                 timeout: float = 10.0, first_retry_ms: int = 1000) -> None:
        self.store, self.sites, self.now_ms, self.geo = store, sites, now_ms, geo
        self.first_retry_ms = first_retry_ms
        self.consumer = f"{socket.gethostname()}:{os.getpid()}"
        self.sender = Sender(timeout)
        self.queues = Queues(store, self.consumer, now_ms)
        self._rounds: dict[tuple[str, str], asyncio.Task[None]] = {}  # (site, group) -> its round under way

    async def keep_delivering(self, tick: float = 1.0) -> None:
        try:  # at once, so each endpoint's queue starts before traffic; quietly, or each tick would say so
            await repeat(tick, self.deliver_due, "webhooks", logging.DEBUG, at_once=True)
        finally:
            for under_way in self._rounds.values():
                under_way.cancel()
            await asyncio.gather(*self._rounds.values(), return_exceptions=True)
            await self.sender.aclose()

    async def deliver_due(self) -> None:
        """A round for every endpoint whose last round is over: what is new, and what failed and is
        due again. Rounds are not awaited: an endpoint that is slow to answer delays no other."""
        self._rounds = {key: under_way for key, under_way in self._rounds.items() if not under_way.done()}
        for site in self.sites():
            await self.queues.settle(site)
            for hook in site.webhooks:
                if (site.id, hook.group) not in self._rounds:
                    self._rounds[site.id, hook.group] = asyncio.create_task(self._round(site, hook))

    async def _round(self, to: Site, hook: Webhook) -> None:
        """`AT_ONCE` deliveries at a time, until the endpoint has no more, one fails, or the rules change it."""
        try:
            while True:
                entries = await self._due(to.id, hook)
                if len(entries) < AT_ONCE:
                    entries += await self._new(to.id, hook, AT_ONCE - len(entries))
                delivered = await asyncio.gather(*(self._deliver(to, hook, *entry) for entry in entries))
                if len(entries) < AT_ONCE or not all(delivered) or not self._configured(to.id, hook):
                    return
        except STORE_ERRORS as exc:
            if "NOGROUP" in str(exc):
                self.queues.unsettle(to.id)  # its queue went (another process's rules left it): made again
            else:
                log.debug("webhooks of %s wait for the store: %s", to.id, exc)
        except Exception:  # a round of its own: nobody else would hear of it
            log.exception("a round of deliveries to %s failed", hook.url)

    def _configured(self, site: str, hook: Webhook) -> bool:
        """Whether the rules still have the endpoint as it was: a backlog's round ends at a change."""
        return any(current.id == site and hook in current.webhooks for current in self.sites())

    async def _new(self, site: str, hook: Webhook, count: int) -> list[Entry]:
        streams = await self.store.client.xreadgroup(hook.group, self.consumer, {log_key(site): ">"}, count=count)
        return [Entry(entry_id, 1, fields) for _, entries in cast(list[Any], streams or [])
                for entry_id, fields in entries]

    async def _due(self, site: str, hook: Webhook) -> list[Entry]:
        """Entries waiting for a retry whose time has come, claimed from whichever process had them."""
        client, stream = self.store.client, log_key(site)
        due: list[Entry] = []
        waiting = await client.xpending_range(stream, hook.group, "-", "+", BATCH, idle=self.first_retry_ms)
        for pending in cast(list[dict[str, Any]], waiting):
            if len(due) == AT_ONCE:
                break
            attempts, entry_id = int(pending["times_delivered"]), pending["message_id"]
            if int(pending["time_since_delivered"]) < self._backoff(attempts):
                continue
            # Only if still idle that long: of two processes, one claims it.
            claimed = cast(list[Any], await client.xclaim(stream, hook.group, self.consumer, self._backoff(attempts),
                                                          [entry_id]))
            due += [Entry(claimed_id, attempts + 1, fields) for claimed_id, fields in claimed]
            if not claimed and not await client.xrange(stream, entry_id, entry_id):
                await client.xack(stream, hook.group, entry_id)  # trimmed from the log since: nothing to deliver
        return due

    def _backoff(self, attempts: int) -> int:
        return min(MOST_BACKOFF_MS, self.first_retry_ms << min(attempts - 1, 30))

    async def _deliver(self, to: Site, hook: Webhook, entry_id: bytes, attempt: int,
                       fields: dict[bytes, bytes] | None) -> bool:
        """One attempt; acknowledged on a 2xx, else left waiting for its retry. Logged either way.
        Whether it went (or was not this endpoint's to send)."""
        site, client = to.id, self.store.client
        entry, = await bodies(self.store, site, [(entry_id, fields)])
        if entry is None or not hook.takes(entry.get("kind", "")):
            await client.xack(log_key(site), hook.group, entry_id)  # not this endpoint's
            return True
        now = self.now_ms()
        await learn_city_names(self.store, self.geo)
        named = city_named(entry, self.geo, to.language)  # as the call's answer and the log name it
        status, delivered = await self.sender.post(hook, site, named, attempt, now)
        if delivered:
            await client.xack(log_key(site), hook.group, entry_id)
        else:  # its wait for the retry starts now, not when it was read (JUSTID: not an attempt)
            await client.xclaim(log_key(site), hook.group, self.consumer, 0, [entry_id], justid=True)
        WEBHOOKS.labels(site, "delivered" if delivered else "failed").inc()
        await self.store.batcher.submit(("XADD", deliveries_key(site), "MAXLEN", "~", KEPT_DELIVERIES, "*", "d",
                                         orjson.dumps({"id": entry["id"], "url": hook.url, "attempt": attempt,
                                                       "status": status, "at": now})))
        return delivered


async def webhooks_endpoint(request: Request) -> JSON:
    """`GET /v1/webhooks/{site}` (the report token): each endpoint's backlog, and the latest deliveries."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    return JSON(await _status(runtime.store, site))


async def _status(store: Store, site: Site) -> dict[str, Any]:
    """Each endpoint's queue, those the rules left with conversions undelivered, the latest attempts."""
    client = store.client
    on_log = await groups(client, site.id)
    endpoints = []
    for hook in site.webhooks:
        group = on_log.get(hook.group)
        endpoints.append({"id": hook.id, "url": hook.url, "kinds": sorted(hook.kinds) if hook.kinds else None,
                          "waiting": int(group["pending"]) if group else 0,
                          "undelivered": int(group.get("lag") or 0) if group else 0})
    latest = await client.xrevrange(deliveries_key(site.id), count=100)
    return {"site": site.id, "endpoints": endpoints, "orphaned": orphans(site, on_log, await registry(client, site.id)),
            "deliveries": [orjson.loads(fields[b"d"]) for _, fields in cast(list[Any], latest)]}
