"""Alerts: what an operator must hear of before the reports show it, sent through the site's webhooks.

    pool_overflow     a pool gave visitors its overflow number this hour: it has too few numbers
    no_calls          no call for the site's `alerts.no_calls_for` of its working hours: is the
                      PBX's webhook broken?
    exports_failing   the latest upload to an ad platform failed

Once a minute one process (a lock in the store) checks every site. An alert is an entry of the
conversion log of kind `alert`, logged once per check and period (its id says which), so the
site's webhooks deliver it at least once, retried like a conversion: an endpoint with
`kinds: [alert]` gets alerts only, and `format: telegram` posts each as a Telegram bot's
message. The store's own failures cannot travel through the store: `/metrics` counts them, and
docs/prometheus-alerts.yml has the rules that page for them (docs/ALERTS.md).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, cast
from zoneinfo import ZoneInfo

from service.integrations import exports
from service.rules.engine import Site
from service.tracking.clock import hour_and_day
from service.tracking.journal import Journal, last_call_key
from service.tracking.pools import PoolKeys
from service.tracking.store import Store, repeat

LOCK = "sw:alerts:checked"
UTC = ZoneInfo("UTC")


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
                await self.journal.add(site.id, {
                    "id": alert_id, "kind": "alert", "at": now, "visitor": None, "page": None, "experiments": {},
                    "visit": None, "alert": {"check": check, "message": message}}, now)

    async def _pools(self, site: Site, now: int) -> list[tuple[str, str, str]]:
        hour, _ = hour_and_day(now)
        alerts = []
        for pool in site.pools:
            if pool.numbers:
                overflowed = await self.store.client.hget(PoolKeys.of(site.id, pool.id).stats, f"overflow:{hour}")
                if overflowed and int(overflowed):
                    alerts.append((f"alert:pool_overflow:{pool.id}:{hour}", "pool_overflow",
                                   f"{site.name}: pool {pool.id} gave {int(overflowed)} visitors its overflow number "
                                   f"since {hour[-2:]}:00 UTC: its {len(pool.numbers)} numbers are too few "
                                   f"(GET /v1/pools/{site.id} recommends a size)"))
        return alerts

    async def _calls(self, site: Site, now: int) -> list[tuple[str, str, str]]:
        settings = site.alerts
        if not settings.no_calls_for:
            return []
        zone = site.calls.time_zone or UTC
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
        return [(f"alert:no_calls:{local.date()}", "no_calls",
                 f"{site.name}: no call for {hours:g} h of working hours: check that the telephony's webhook "
                 "still reaches Swapline (docs/CALLS.md)")]

    async def _exports(self, site: Site) -> list[tuple[str, str, str]]:
        latest: dict[str, dict[str, Any]] = {}
        for upload in await exports.latest(self.store, site.id, 20):
            latest.setdefault(upload["target"], upload)  # newest first
        return [(f"alert:exports:{target}:{hour_and_day(upload['at'])[0]}", "exports_failing",
                 f"{site.name}: the upload to {target} failed: {upload['detail']}")
                for target, upload in latest.items() if upload["status"] == "failed"]
