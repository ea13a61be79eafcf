"""Alerts: what an operator must hear of before the reports show it, sent through the site's webhooks.

    pool_overflow     a pool gave visitors its overflow number this hour: it has too few numbers
    pool_capped       it gave visitors the overflow number while numbers were free: their network
                      held its share (a mobile carrier's NAT, an office, or made-up visitors)
    no_calls          no call for the site's `alerts.no_calls_for` of its working hours: is the
                      PBX's webhook broken?
    exports_failing   the latest upload to an ad platform failed, or the platform took none of it
    store_degraded    the store has not answered in time for a while (`StoreWatch`)
    store_recovered   it answers again

Each alert's message is in the site's `language` (Russian by default), as its owner reads it;
its `check` names it for programs.

Once a minute one process (a lock in the store) checks every site. An alert is an entry of the
conversion log of kind `alert`, logged once per check and period (its id says which), so the
site's webhooks deliver it at least once, retried like a conversion: an endpoint with
`kinds: [alert]` gets alerts only, and `format: telegram` posts each as a Telegram bot's
message. The store's own trouble cannot wait in the store: `StoreWatch` posts it straight to
the endpoints, and `/metrics` counts it for the rules of docs/prometheus-alerts.yml (docs/ALERTS.md).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any, cast

from service.analytics.language import Words
from service.integrations import exports
from service.integrations.webhook_posts import Sender
from service.observability import WEBHOOKS
from service.rules.engine import Site
from service.tracking.clock import hour_and_day
from service.tracking.journal import Journal, last_call_key
from service.tracking.pools import PoolKeys
from service.tracking.store import STORE_ERRORS, Store, repeat

LOCK = "sw:alerts:checked"
# The messages, by check: English here, Russian in the dashboard's catalogue (service/pages/ru.json).
OVERFLOW = ("%(site)s: pool %(pool)s gave %(count)s visitor its overflow number since %(since)s: its %(numbers)s "
            "numbers are too few (the dashboard's Numbers tab says how many it needs)")
CAPPED = ("%(site)s: pool %(pool)s gave %(count)s visitor its overflow number since %(since)s while numbers were free: "
          "their network held its share of the pool. If real visitors share an address (a mobile carrier's, an "
          "office's), ask for a larger share (SWAPLINE_NETWORK_SHARE) or more numbers; made-up visitors from one "
          "address need nothing (docs/RULES.md)")
NO_CALLS = ("%(site)s: no call for %(hours)s h of working hours: check that the telephony's webhook still reaches "
            "Swapline (docs/CALLS.md)")
UPLOAD = "%(site)s: the upload to %(target)s %(status)s: %(detail)s"
DEGRADED = ("%(site)s: Swapline's store (Redis/Valkey) has not taken a write within %(ms)s ms since %(since)s: "
            "decisions are answered without tracking numbers and experiments, and events and calls wait on disk "
            "until it is back")
RECOVERED = ("%(site)s: Swapline's store answers again, after about %(minutes)s min; the events and calls kept on "
             "disk meanwhile are being credited")
log = logging.getLogger("swapline")


class Alerts:
    def __init__(self, store: Store, journal: Journal, sites: Callable[[], list[Site]], now_ms: Callable[[], int],
                 every: int = 60) -> None:
        self.store, self.journal, self.sites, self.now_ms, self.every = store, journal, sites, now_ms, every

    async def keep_checking(self) -> None:
        async def check_if_due() -> None:
            if await self.store.client.set(LOCK, 1, nx=True, ex=max(1, self.every - 1)):
                await self.check()

        # The store's own trouble is for /metrics and Prometheus' rules to tell.
        await repeat(self.every, check_if_due, "alerts")

    async def check(self) -> None:
        now = self.now_ms()
        for site in self.sites():
            for alert_id, check, message in [*await self._pools(site, now), *await self._calls(site, now),
                                             *await self._exports(site)]:
                await self.journal.add(site.id, _alert(alert_id, check, now, message), now, site.time_zone)

    async def _pools(self, site: Site, now: int) -> list[tuple[str, str, str]]:
        hour, _ = hour_and_day(now, site.time_zone)  # as the leases count their overflows
        alerts = []
        for pool in site.pools:
            if not pool.numbers:
                continue
            overflowed, capped = await self.store.client.hmget(PoolKeys.of(site.id, pool.id).stats,
                                                                f"overflow:{hour}", f"capped:{hour}")
            since = f"{hour[-2:]}:00 ({site.time_zone})"
            for check, template, count in (("pool_overflow", OVERFLOW, overflowed), ("pool_capped", CAPPED, capped)):
                if count and int(count):
                    alerts.append((f"alert:{check}:{pool.id}:{hour}", check, _message(
                        site, template, int(count), pool=pool.id, since=since, numbers=str(len(pool.numbers)))))
        return alerts

    async def _calls(self, site: Site, now: int) -> list[tuple[str, str, str]]:
        settings = site.alerts
        if not settings.no_calls_for:
            return []
        zone = site.calls.time_zone or site.time_zone  # the PBX's hours, else the site's
        local = datetime.datetime.fromtimestamp(now / 1000, zone)
        opens = local.replace(hour=settings.opens // 60, minute=settings.opens % 60, second=0, microsecond=0)
        minute = local.hour * 60 + local.minute
        if local.weekday() not in settings.days or not settings.opens <= minute < settings.closes:
            return []
        last = cast(bytes | None, await self.store.client.get(last_call_key(site.id)))
        quiet_since = max(int(last or 0), int(opens.timestamp() * 1000))  # the night does not count
        if now - quiet_since < settings.no_calls_for * 1000:
            return []
        hours = settings.no_calls_for / 3600
        return [(f"alert:no_calls:{local.date()}", "no_calls", _message(site, NO_CALLS, hours=f"{hours:g}"))]

    async def _exports(self, site: Site) -> list[tuple[str, str, str]]:
        latest: dict[str, dict[str, Any]] = {}
        for upload in await exports.latest(self.store, site.id, 20):
            latest.setdefault(upload["target"], upload)  # newest first
        # A click too old is refused now and then ("partly refused"); none taken is a setup
        # to fix: a conversion action of another account, say.
        words = Words(site.language)
        return [(f"alert:exports:{target}:{hour_and_day(upload['at'])[0]}", "exports_failing",
                 _message(site, UPLOAD, target=target, status=words.gettext(upload["status"]), detail=upload["detail"]))
                for target, upload in latest.items() if upload["status"] in ("failed", "refused")]


class StoreWatch:
    """Tells the sites' alert endpoints when the store fails, without the store.

    Every `every` seconds each process writes to the store (a full one answers a PING, and
    refuses every lease). Once `after` writes in a row were not taken within the store's deadline
    (a decision's own), the process posts `store_degraded`
    straight to every endpoint that takes alerts: signed as any delivery, tried once, since the
    outbox lives in the store. Each process that sees the outage posts it, under one id per
    hour for receivers to dedupe by. When the store answers again, `store_recovered` is logged
    like any alert, so it reaches the endpoints at least once.
    """

    def __init__(self, store: Store, journal: Journal, sites: Callable[[], list[Site]], now_ms: Callable[[], int],
                 every: float = 60, after: int = 2, timeout: float = 10.0) -> None:
        self.store, self.journal, self.sites, self.now_ms = store, journal, sites, now_ms
        self.every, self.slow, self.after, self.timeout = every, store.deadline, after, timeout
        self.missed = 0  # asks in a row without an answer in time
        self.since: int | None = None  # ms: when the outage told of began

    async def keep_watching(self) -> None:
        async with Sender(self.timeout) as sender:
            while True:
                await asyncio.sleep(self.every)
                await self.check(sender)

    async def check(self, sender: Sender) -> None:
        now = self.now_ms()
        if not await self._answers():
            self.missed += 1
            if self.missed == self.after:
                self.since = now - int(self.every * 1000) * (self.after - 1)
                await self._tell_degraded(sender, now)
            return
        self.missed = 0
        if self.since is not None:
            try:
                await self._log_recovered(now)
            except STORE_ERRORS as exc:  # it answered, then failed again: the next ask tells
                log.warning("store_recovered waits for the store: %s", exc)
                return
            self.since = None

    async def _answers(self) -> bool:
        try:
            async with asyncio.timeout(self.slow):
                await self.store.writes()
        except (TimeoutError, *STORE_ERRORS):
            return False
        return True

    async def _tell_degraded(self, sender: Sender, now: int) -> None:
        assert self.since is not None
        for site in self.sites():
            began = datetime.datetime.fromtimestamp(self.since / 1000, site.time_zone).strftime(
                f"%H:%M ({site.time_zone})")
            entry = _alert(f"alert:store_degraded:{hour_and_day(self.since)[0]}", "store_degraded", now,
                           _message(site, DEGRADED, ms=f"{self.slow * 1000:g}", since=began))
            for hook in site.webhooks:
                if hook.takes("alert"):
                    status, delivered = await sender.post(hook, site.id, entry, 1, now)
                    WEBHOOKS.labels(site.id, "delivered" if delivered else "failed").inc()
                    if not delivered:
                        log.warning("store_degraded not delivered to %s: %s", hook.url, status)

    async def _log_recovered(self, now: int) -> None:
        assert self.since is not None
        minutes = max(1, round((now - self.since) / 60_000))
        for site in self.sites():
            await self.journal.add(site.id, _alert(
                f"alert:store_recovered:{hour_and_day(self.since)[0]}", "store_recovered", now,
                _message(site, RECOVERED, minutes=str(minutes))), now, site.time_zone)


def _alert(alert_id: str, check: str, now: int, message: str) -> dict[str, Any]:
    """A log entry of kind `alert`."""
    return {"id": alert_id, "kind": "alert", "at": now, "visitor": None, "page": None, "experiments": {},
            "visit": None, "alert": {"check": check, "message": message}}


def _message(site: Site, template: str, count: int | None = None, **values: str) -> str:
    """An alert's message in the site's language; with `count`, in the form its number takes
    (1 visitor, 2 visitors; 1 посетителю, 5 посетителям)."""
    words = Words(site.language)
    if count is None:
        return words.gettext(template) % {"site": site.name, **values}
    plural = template.replace("%(count)s visitor ", "%(count)s visitors ", 1)  # English's differs in that word
    return words.ngettext(template, plural, count) % {"site": site.name, "count": str(count), **values}
