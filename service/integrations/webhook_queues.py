"""Each webhook endpoint's queue: a consumer group on the site's conversion log, in the store.

The group remembers what its endpoint acknowledged, so deliveries survive restarts, deploys
and outages. It is named by the endpoint's `id` when the rules give one, else by its url
(`Webhook.group`). As the rules change, `Queues.settle` brings the store in line:

- a new endpoint's queue starts at the log's end: it gets what is logged from then on;
- an endpoint that is given an id takes over the queue of its url (each endpoint of that url a
  copy, adopt_queue.lua), so that giving ids loses nothing; its url may change from then on;
- a queue the rules no longer name, that had not delivered everything, is kept and told of
  (a warning as the rules load, `orphaned` on the status page) until its endpoint comes back or
  the log's retention drops what it waited for; one that had delivered everything goes.

Beside the groups the store keeps what each was for (`registry_key`): a group's name is a
hash, the warning names the url.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

import orjson
import redis.exceptions

from service.rules.engine import Site
from service.rules.settings import Webhook, url_group
from service.tracking.journal import key as log_key
from service.tracking.store import Client, Script, Store

ADOPT = Script.named("adopt_queue")
MOST_BACKOFF_MS = 3_600_000  # the longest wait between a delivery's attempts
RECHECKED = 3600.0  # seconds between looks at orphaned queues the log's retention may have emptied
log = logging.getLogger("swapline")


def registry_key(site: str) -> str:
    """Hash: group name -> what it is for, JSON {url, id, kinds[, orphaned]}."""
    return f"sw:{{{site}:log}}:webhooks"


async def groups(client: Client, site: str) -> dict[str, dict[str, Any]]:
    """The consumer groups on the site's log, by name, as XINFO GROUPS describes them."""
    if not await client.exists(log_key(site)):
        return {}
    return {group["name"].decode(): group for group in await client.xinfo_groups(log_key(site))}


async def registry(client: Client, site: str) -> dict[str, dict[str, Any]]:
    kept = cast(dict[bytes, bytes], await client.hgetall(registry_key(site)))
    return {name.decode(): orjson.loads(record) for name, record in kept.items()}


def orphans(site: Site, on_log: dict[str, dict[str, Any]], records: dict[str, dict[str, Any]]
            ) -> list[dict[str, Any]]:
    """The queues of endpoints the rules no longer name that had not delivered everything: what
    they had not when they were left (once the store has noticed), else what they have now."""
    found = []
    for name in _unnamed(site, on_log):
        record = records.get(name, {})
        left = record.get("orphaned") or _backlog(on_log[name])
        if not _empty(left):
            found.append({"queue": name, "id": record.get("id"), "url": record.get("url"), "kinds": record.get("kinds"),
                          "waiting": left["waiting"], "undelivered": left["undelivered"], "since": left.get("since")})
    return found


def _unnamed(site: Site, on_log: dict[str, dict[str, Any]]) -> list[str]:
    """The webhook queues on the log that none of the site's endpoints has."""
    wanted = {hook.group for hook in site.webhooks}
    return [name for name in on_log if name.startswith("hook:") and name not in wanted]


def _backlog(group: dict[str, Any]) -> dict[str, Any]:
    """Read and not acknowledged (waiting for a retry), and not read yet (of every kind; None:
    the store cannot count them, after entries were deleted)."""
    lag = group.get("lag")
    return {"waiting": int(group["pending"]), "undelivered": None if lag is None else int(lag)}


def _empty(backlog: dict[str, Any]) -> bool:
    return not backlog["waiting"] and backlog["undelivered"] == 0


def _stream_id(text: str | bytes) -> tuple[int, int]:
    milliseconds, _, sequence = (text.decode() if isinstance(text, bytes) else text).partition("-")
    return int(milliseconds), int(sequence or 0)


class Queues:
    """Keeps the store's queues as the rules say, a site at a time, when its endpoints change."""

    def __init__(self, store: Store, consumer: str, now_ms: Callable[[], int]) -> None:
        self.store, self.consumer, self.now_ms = store, consumer, now_ms
        self._settled: dict[str, tuple[tuple[Webhook, ...], float]] = {}  # site -> its endpoints, and when

    def unsettle(self, site: str) -> None:
        """Settle the site again at the next tick: one of its queues went (another process's rules)."""
        self._settled.pop(site, None)

    async def settle(self, site: Site) -> None:
        """On a change of the site's endpoints: their queues made or taken over, and those left
        behind told of; now and then again, for the orphaned queues the retention emptied."""
        settled = self._settled.get(site.id)
        changed = settled is None or settled[0] != site.webhooks
        if settled is not None and not changed and time.monotonic() - settled[1] < RECHECKED:
            return
        await self._adopt(site, await groups(self.store.client, site.id))
        await self._make(site, await registry(self.store.client, site.id))
        await self._sweep(site, loud=changed)
        self._settled[site.id] = (site.webhooks, time.monotonic())

    async def _adopt(self, site: Site, on_log: dict[str, dict[str, Any]]) -> None:
        """Endpoints with a new id take the queue of their url, unless an endpoint without an id still has it."""
        wanted = {hook.group for hook in site.webhooks}
        takers: dict[str, list[str]] = {}
        for hook in site.webhooks:
            source = url_group(hook.url)
            if hook.id is not None and hook.group not in on_log and source in on_log and source not in wanted:
                takers.setdefault(source, []).append(hook.group)
        for source, targets in takers.items():
            await self.store.client.eval(ADOPT.source, 1, log_key(site.id), source, self.consumer, *targets)
            await self.store.client.hdel(registry_key(site.id), source)

    async def _make(self, site: Site, records: dict[str, dict[str, Any]]) -> None:
        client = self.store.client
        for hook in site.webhooks:
            try:  # from the log's end: an endpoint gets what is logged after it is configured
                await client.xgroup_create(log_key(site.id), hook.group, id="$", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            if (record := records.get(hook.group)) is not None and record["url"] != hook.url:
                await self._retry_now(site.id, hook.group)
        if site.webhooks:  # an endpoint back in the rules is no longer orphaned
            await client.hset(registry_key(site.id), mapping={hook.group: orjson.dumps({
                "url": hook.url, "id": hook.id, "kinds": sorted(hook.kinds) if hook.kinds is not None else None})
                for hook in site.webhooks})

    async def _retry_now(self, site: str, group: str) -> None:
        """A new url: what failed at the old one is due at once, however long it was to wait."""
        client, stream, start = self.store.client, log_key(site), "-"
        while waiting := cast(list[dict[str, Any]], await client.xpending_range(stream, group, start, "+", 100)):
            entry_ids = [pending["message_id"] for pending in waiting]
            await client.xclaim(stream, group, self.consumer, 0, entry_ids, idle=MOST_BACKOFF_MS, justid=True)
            start = f"({entry_ids[-1].decode()}"

    async def _sweep(self, site: Site, loud: bool) -> None:
        """The queues no endpoint has: kept while they hold what their endpoint had not delivered when
        it was left (noted then, as of the log's last entry: what is logged later was never its
        endpoint's), until the retention drops that; else removed."""
        client, log_name = self.store.client, log_key(site.id)
        on_log, records = await groups(client, site.id), await registry(client, site.id)
        if gone := [name for name in records if name not in on_log]:
            await client.hdel(registry_key(site.id), *gone)
        for name in _unnamed(site, on_log):
            record = records.get(name, {})
            noted = record.get("orphaned")
            if noted is None and not _empty(backlog := _backlog(on_log[name])):
                last = cast(list[Any], await client.xrevrange(log_name, count=1))
                noted = {**backlog, "since": self.now_ms(), "until": last[0][0].decode() if last else "0-0"}
                await client.hset(registry_key(site.id), name, orjson.dumps({**record, "orphaned": noted}))
            elif noted is not None:
                first = cast(list[Any], await client.xrange(log_name, count=1))
                if not first or _stream_id(first[0][0]) > _stream_id(noted["until"]):
                    noted = None  # the retention dropped all it waited for
            if noted is None:
                await client.xgroup_destroy(log_name, name)
                await client.hdel(registry_key(site.id), name)
            elif loud:
                log.warning("site %s: the webhook %s is no longer in the rules, and its queue (%s) holds %s%d "
                            "conversions it has not delivered: put it back to deliver them; to deliver them to "
                            "another url, put it back with an id, then change the url once that is loaded "
                            "(docs/WEBHOOKS.md)", site.id, record.get("url") or "of a url not recorded", name,
                            "at least " if noted["undelivered"] is None else "",
                            noted["waiting"] + (noted["undelivered"] or 0))
