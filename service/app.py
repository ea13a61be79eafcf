"""The ASGI application: `create_app()` for uvicorn (`--factory`) and for tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Route, Router
from starlette.types import Receive, Scope, Send

from service import embedded
from service.analytics.dashboard import (
    DOWNLOADS,
    calls_page_endpoint,
    dashboard_endpoint,
    download_endpoint,
    language_endpoint,
    login_endpoint,
    numbers_page_endpoint,
    signout_endpoint,
    sources_page_endpoint,
)
from service.analytics.logs import calls_log_endpoint, conversions_log_endpoint
from service.analytics.reports import report_endpoint
from service.analytics.sheets import FORMATS
from service.collector import frozen_survivors
from service.config import Settings
from service.errors import HTTPError
from service.front.compressed import CompressedFiles
from service.front.decide import decide_endpoint
from service.front.events import convert, events_endpoint
from service.front.fastpath import DISCONNECTED, FastPath
from service.front.home import home_endpoint
from service.front.middleware import ClientIPMiddleware, TrustedProxies
from service.front.openapi import openapi_endpoint
from service.front.operators import Operators
from service.front.personal import forget_caller_endpoint, show_caller_endpoint, visitor_endpoint
from service.front.responses import JSON, error, refusal
from service.front.snippet import pinned_snippet_endpoint, snippet_endpoint
from service.integrations import telephony
from service.integrations.alerts import Alerts, StoreWatch
from service.integrations.calls import Call, calls_endpoint, credit, log_refused
from service.integrations.exports import Uploads, export_file_endpoint, exports_endpoint, targets
from service.integrations.holders import number_endpoint
from service.integrations.webhooks import Deliveries, webhooks_endpoint
from service.observability import (
    ACTIVITY,
    DECISIONS,
    EXPORTS,
    LEASES,
    RULES_CHANGES,
    SPOOLED,
    WEBHOOKS,
    RequestMiddleware,
    keep_flushing,
    metrics_endpoint,
)
from service.rules import rulefiles
from service.rules.engine import Site
from service.rules.geo import GeoDB
from service.rules.lastgood import LastGood
from service.rules.reload import SWITCH_INTERVAL, log_warnings, resplit, site_list, warm_places, watch_rules
from service.runtime import Refusal, Runtime
from service.tracking import sites
from service.tracking.clock import StoreClock
from service.tracking.journal import Journal
from service.tracking.ledger import Ledger
from service.tracking.pools import Pools, pools_endpoint
from service.tracking.retention import Retention
from service.tracking.spool import Spool, keep_replaying
from service.tracking.store import STORE_ERRORS, Store, connect, fingerprint, until_done, why
from service.tracking.tokens import TokenSigner
from service.tracking.upgrade import respan

log = logging.getLogger("swapline")
DEMO_PAGE = resources.files("service").joinpath("pages", "demo.html").read_text()
STORE_SECRET = ("SWAPLINE_SECRET is not set: the secret that keys the hashes of callers' numbers and visitors' "
                "addresses is kept in the store, so a copy of the store can undo them; set SWAPLINE_SECRET outside "
                "it in production (docs/DEPLOY.md)")
TELEPHONY = (  # what PBXs and telephony vendors post: a call refused leaves a line in the log (`_http_error`)
    Route("/v1/calls", calls_endpoint, methods=["POST"]),
    Route("/v1/calls/twilio", telephony.twilio_endpoint, methods=["POST"]),
    Route("/v1/calls/mango/{site}/events/{event}", telephony.mango_endpoint, methods=["POST"]),
    Route("/v1/calls/zadarma", telephony.zadarma_endpoint, methods=["GET", "POST"]),
    Route("/v1/calls/uis", telephony.uis_endpoint, methods=["GET", "POST"]),
    Route("/v1/calls/telphin", telephony.telphin_endpoint, methods=["GET", "POST"]),
)
_CALLS = frozenset(route.endpoint for route in TELEPHONY)


def create_app(settings: Settings | None = None, checked: rulefiles.RuleSet | None = None) -> FastPath:
    """The service. `checked`: the rules of `settings.rules_dir`, loaded already (`swapline
    serve` checks them before it starts one worker in its own process): it starts on them
    instead of loading them again."""
    settings = settings or Settings.from_env()
    trusted = TrustedProxies(settings.trusted_proxies)
    operators = Operators(settings.operator_networks, trusted)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not settings.redis_url:
            raise RuntimeError(
                "SWAPLINE_REDIS_URL is not set: start with `swapline serve`, "
                "which runs an embedded Valkey, or point it at Redis/Valkey"
            )
        nonlocal checked  # held here, the first rules would outlive every reload
        last_good = LastGood(settings.data_dir)
        rules, checked = checked if checked is not None else last_good.start(settings.rules_dir), None
        log_warnings(rules)
        store = Store(connect(settings.redis_url, settings.redis_cluster), settings.store_deadline_ms / 1000)
        secret = settings.secret.encode() if settings.secret else await store.secret()
        if not settings.secret:
            log.warning(STORE_SECRET)
        await store.batcher.prepare()  # a store that is away: the first batches try again
        pools = Pools(store, settings.lease_retention_days, settings.network_share)
        runtime = Runtime(settings, GeoDB(settings.geoip_db), store, TokenSigner(secret), rules, pools,
                          Ledger(store, settings.max_pages, settings.max_goals, settings.report_days,
                                 retry_days=settings.token_days),
                          Journal(store, settings.log_days, settings.report_days, settings.visit_days),
                          Spool(settings.data_dir / "spool"),
                          caller_key=hmac.new(secret, b"caller numbers", hashlib.sha256).digest(),
                          fingerprint=fingerprint(secret))
        # An attribute of its own: Starlette's `State` finds what it keeps only after a failed
        # lookup, which costs every request an exception.
        vars(app.state)["runtime"] = runtime
        if trouble := runtime.spool.trouble():
            log.warning("the spool cannot keep what a store outage brings (events and calls would be refused "
                        "then): %s", trouble)
        if isinstance(runtime.clock, StoreClock):  # before the first page view is stamped
            await runtime.clock.synchronise(store.time)
        sys.setswitchinterval(SWITCH_INTERVAL)  # before the first thread that runs Python beside the loop
        tasks = [
            asyncio.create_task(warm_places()),
            asyncio.create_task(keep_replaying(runtime.spool, lambda entry: _replay(runtime, entry))),
            asyncio.create_task(keep_flushing()),
            asyncio.create_task(runtime.keep_pools()),
        ]
        if isinstance(runtime.clock, StoreClock):
            tasks.append(asyncio.create_task(runtime.clock.keep_in_step(store.time)))
        tasks.append(asyncio.create_task(Retention.of(store, settings).keep_compacting(runtime.now_ms)))
        deliveries = Deliveries(store, lambda: list(runtime.rules.sites.values()), runtime.now_ms, runtime.geo,
                                settings.webhook_timeout, settings.webhook_retry_ms)
        tasks.append(asyncio.create_task(deliveries.keep_delivering()))
        uploads = Uploads(store, lambda: list(runtime.rules.sites.values()), runtime.now_ms,
                          {"metrica": settings.metrica_api, "google_ads": settings.google_ads_api,
                           "google_oauth": settings.google_oauth}, settings.export_every)
        tasks.append(asyncio.create_task(uploads.keep_uploading()))
        alerts = Alerts(store, runtime.journal, lambda: list(runtime.rules.sites.values()), runtime.now_ms,
                        settings.alert_every)
        tasks.append(asyncio.create_task(alerts.keep_checking()))
        watch = StoreWatch(store, runtime.journal, lambda: list(runtime.rules.sites.values()), runtime.now_ms,
                           settings.alert_every, timeout=settings.webhook_timeout)
        tasks.append(asyncio.create_task(watch.keep_watching()))
        # Normally the pools are in place before the first visitor, and what an older version
        # kept is where the reports read it; while the store is down: serve degraded, keep trying.
        jobs: list[tuple[Callable[[], Awaitable[None]], str]] = [
            (lambda: respan(store, settings.report_days), "upgrade"), (runtime.sync_pools, "pool sync"),
            (runtime.vouch, "secret check"), (lambda: sites.check_in(store, list(runtime.rules.sites)), "site check"),
            (lambda: _settings_check(store), "store settings check"),
        ]
        for job, what in jobs:
            try:
                await job()
            except STORE_ERRORS as exc:
                log.warning("%s waits for the store: %s", what, exc)
                tasks.append(asyncio.create_task(until_done(job, what)))

        def apply(new: rulefiles.RuleSet) -> bool:
            undone, runtime.rules_refused = runtime.rules_refused, None  # what was refused is gone
            if new.version == runtime.rules.version:  # the same files: memos and pools as they are
                if undone:  # the log's last word on the rules was a refusal
                    log.info("the refused rules change is undone: the directory holds the rules serving again")
                return False
            old, runtime.rules = runtime.rules, new
            _count_from_zero(new.sites.values())
            RULES_CHANGES.labels("applied").inc()
            if gone := sorted(old.sites.keys() - new.sites.keys()):  # its file deleted or renamed, perhaps by mistake
                log.warning("sites no longer in the rules: %s; their snippets, webhooks and dashboards now answer 404 "
                            "(their data stays in the store: `swapline sites erase SITE` erases it)", ", ".join(gone))
            if moved := resplit(old, new):
                log.warning("running experiments split anew: %s; their visitors move to other variants while the "
                            "reports count each where they were first exposed: to restart an experiment, give it a "
                            "new id (docs/RULES.md)", "; ".join(moved))
            added = [site for site in new.sites if site not in old.sites]
            for site in old.sites.values():  # a request under way may hold its site a while, not its memos
                site.forget()
            del old  # frozen or not, old rules go with their last reference: a site holds no cycle
            tasks.append(asyncio.create_task(until_done(runtime.sync_pools, "pool sync")))
            tasks.append(asyncio.create_task(until_done(lambda: sites.reloaded(store, added, gone), "site check")))
            return True

        def refuse(refused: rulefiles.RulesError) -> None:
            before = runtime.rules_refused  # since when, and whether the rules serving were kept ones
            runtime.rules_refused = _refusal(refused.problems, before.at if before else runtime.clock(),
                                             before.kept if before else None)
            RULES_CHANGES.labels("refused").inc()

        if rules.kept:  # the last good rules kept from before serve
            runtime.rules_refused = _refusal(rules.kept.refused, runtime.clock(), rules.kept.at)
        if settings.reload_rules:
            tasks.append(asyncio.create_task(watch_rules(settings.rules_dir, last_good.load, apply, refuse,
                                                         stale=rules.kept is not None)))
        log.info("rules version %s, sites %s", rules.version, site_list(rules))
        _count_from_zero(rules.sites.values())
        del rules  # the runtime's now, until a reload replaces them
        # What lives now (the rules, the dictionaries) and what the memos keep leave the
        # collector's view, so its pauses stay short under load.
        with frozen_survivors() as collector:
            app.state.collector = collector
            tasks.append(asyncio.create_task(collector.keep_checking(ACTIVITY)))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await store.close()
                runtime.geo.close()

    hot = [  # what every page view calls
        Route("/v1/decide", decide_endpoint, methods=["GET"]),
        Route("/v1/events", events_endpoint, methods=["POST"]),
    ]
    app = Starlette(
        routes=[
            *hot,
            *TELEPHONY,
            *(Route(f"/v1/calls/{{site}}.{form}", calls_log_endpoint, methods=["GET"]) for form in FORMATS),
            Route("/v1/calls/{site}", calls_log_endpoint, methods=["GET"]),
            *(Route(f"/v1/conversions/{{site}}.{form}", conversions_log_endpoint, methods=["GET"]) for form in FORMATS),
            Route("/v1/conversions/{site}", conversions_log_endpoint, methods=["GET"]),
            Route("/v1/webhooks/{site}", webhooks_endpoint, methods=["GET"]),
            Route("/v1/exports/{site}", exports_endpoint, methods=["GET"]),
            Route("/v1/exports/{site}/{target}.csv", export_file_endpoint, methods=["GET"]),
            Route("/v1/pools/{site}", pools_endpoint, methods=["GET"]),
            # A number as a PBX may write it: `495/120-00-01`, its slash sent as is or as %2F.
            Route("/v1/numbers/{site}/{number:path}", number_endpoint, methods=["GET"]),
            Route("/v1/visitors/{site}/{vid}", visitor_endpoint, methods=["GET", "DELETE"]),
            Route("/v1/callers/{site}", show_caller_endpoint, methods=["POST"]),
            Route("/v1/callers/{site}/forget", forget_caller_endpoint, methods=["POST"]),
            *(Route(f"/v1/reports/{{site}}.{form}", report_endpoint, methods=["GET"]) for form in FORMATS),
            Route("/v1/reports/{site}", report_endpoint, methods=["GET"]),
            Route("/dashboard/{site}", dashboard_endpoint, methods=["GET"]),
            Route("/dashboard/{site}/login", login_endpoint, methods=["POST"]),
            Route("/dashboard/{site}/signout", signout_endpoint, methods=["POST"]),
            Route("/dashboard/{site}/language", language_endpoint, methods=["POST"]),
            Route("/dashboard/{site}/calls", calls_page_endpoint, methods=["GET"]),
            Route("/dashboard/{site}/sources", sources_page_endpoint, methods=["GET"]),
            Route("/dashboard/{site}/numbers", numbers_page_endpoint, methods=["GET"]),
            *(Route(f"/dashboard/{{site}}/{table}.{form}", download_endpoint, methods=["GET"])
              for table in DOWNLOADS for form in FORMATS),
            Route("/", operators.only(home_endpoint), methods=["GET"]),
            Route("/s.js", snippet_endpoint, methods=["GET"]),
            Route("/s/{version}.js", pinned_snippet_endpoint, methods=["GET"]),
            Route("/demo/", demo_page, methods=["GET"]),
            Route("/robots.txt", robots, methods=["GET"]),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
            Route("/metrics", operators.only(metrics_endpoint), methods=["GET"]),
            Route("/healthz", operators.brief(healthz), methods=["GET"]),
            Route("/readyz", operators.brief(readyz), methods=["GET"]),
        ],
        middleware=[Middleware(RequestMiddleware), Middleware(ClientIPMiddleware, trusted=trusted),
                    Middleware(CompressedFiles)],
        exception_handlers={HTTPError: _http_error, HTTPException: _starlette_error, ClientDisconnect: _disconnected},
        lifespan=lifespan,
    )
    # Starlette's own redirect to an address's other form (`/demo` to `/demo/`, `/dashboard/demo/`
    # to `/dashboard/demo`) names the Host the request sent: behind a cache that does not key on
    # it, one request would send everyone after it elsewhere. Ours names the path alone.
    app.router.redirect_slashes = False
    app.router.default = functools.partial(_other_slash, app.router)
    return FastPath(app, hot, trusted)


async def _other_slash(router: Router, scope: Scope, receive: Receive, send: Send) -> None:
    """An address that is ours with one slash more or less at its end redirects there, as
    Starlette's `redirect_slashes` did, by a Location relative to this host (307: a POST stays a
    POST); any other gets the router's 404."""
    path = scope["path"]
    if scope["type"] == "http" and path != "/":
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        # "//host/…" would be an address on that host: none of ours starts so, but say it here too.
        if not other.startswith("//") and any(route.matches({**scope, "path": other})[0] is not Match.NONE
                                              for route in router.routes):
            # The path as the router read it, encoded again; the query as sent, but for bytes a
            # Location may not hold.
            query = quote(scope.get("query_string", b""), safe="/?:@!$&'()*+,;=%")
            location = quote(other) + (f"?{query}" if query else "")
            await RedirectResponse(location, status_code=307)(scope, receive, send)
            return
    await router.not_found(scope, receive, send)


def _refusal(problems: Iterable[rulefiles.Problem], since: float, kept: float | None) -> Refusal:
    """What a marketer without the log sees on the home page and /readyz: whose file, and why."""
    return Refusal(since, tuple(f"{Path(problem.file).name}:{problem.line}: {problem.message}"
                                for problem in problems), kept)


def _count_from_zero(serving: Iterable[Site]) -> None:
    """Expose each series an alert watches with `increase()` at 0 before its first count.
    Prometheus sees no rise in a series' first sample: without this, a pool's first overflows,
    a store outage's first spooled events, or a site's first failed deliveries or uploads would
    alert nobody (docs/prometheus-alerts.yml)."""
    for kind in ("call", "conversion"):
        SPOOLED.labels(kind)
    for site in serving:
        for outcome in ("answered", "rate_limited", "origin_not_allowed"):
            DECISIONS.labels(site.id, outcome)
        for pool in site.pools:
            if pool.numbers:
                LEASES.labels(site.id, pool.id, "overflow")
        if site.webhooks:
            WEBHOOKS.labels(site.id, "failed")
        for target in targets(site.exports):
            EXPORTS.labels(site.id, target, "failed")
            if target == "google-ads":  # the one platform that may answer an upload with none taken
                EXPORTS.labels(site.id, target, "refused")


async def _replay(runtime: Runtime, entry: dict[str, Any]) -> None:
    """Count a spooled conversion or credit a spooled call, exactly as if it had just come in."""
    site = runtime.rules.sites.get(entry["site"])
    if site is None:
        log.warning("spooled entry for a site no longer in the rules, dropped: %s", entry["site"])
    elif "call" in entry:
        await credit(runtime, site, Call(**entry["call"]))
    else:
        await convert(runtime, site, entry["conversion"])


async def demo_page(request: Request) -> Response:
    """The demo site's page, with the snippet embedded as any website would."""
    return HTMLResponse(DEMO_PAGE)


async def robots(request: Request) -> Response:
    """Crawlers may fetch the snippet, as rendering a site's page does; nothing else here is for
    a search index (the demo, dashboards' sign-in pages, the API)."""
    return PlainTextResponse("User-agent: *\nAllow: /s.js\nAllow: /s/\nDisallow: /\n")


async def healthz(request: Request) -> JSON:
    """The process is up, and so is its embedded store, if it has one: a store that died and
    cannot be started again fails the health check, so that something restarts the service."""
    runtime: Runtime = request.app.state.runtime
    if reason := await asyncio.to_thread(embedded.down, runtime.settings.data_dir):
        return error(503, "store_down", f"the embedded store is down and cannot be started again: {reason}")
    return JSON({"status": "ok"})


async def _settings_check(store: Store) -> None:
    if (policy := await store.setting("maxmemory-policy")) not in (None, "noeviction"):
        log.error("the store's maxmemory-policy is %s: once full, it evicts leases, visits and calls without a word, "
                  "and calls go to nobody or to the wrong visitor; set it to noeviction (docs/DEPLOY.md)", policy)


async def readyz(request: Request) -> JSON:
    """Ready while the store takes writes and has the number pools; says too whether the spool could
    keep what an outage brings (a full or read-only disk would refuse events and calls then)."""
    runtime: Runtime = request.app.state.runtime
    spool = await runtime.spool.check()
    try:
        await asyncio.wait_for(runtime.store.writes(), timeout=1.0)
        missing = await runtime.pools.missing(runtime.rules.sites.values()) if runtime.pools_synced else []
    except Exception as exc:
        also = f"; the spool cannot keep events either: {spool}" if spool else ""
        return error(503, "store_unavailable", f"{why(exc)}{also}")
    if not runtime.pools_synced:
        return error(503, "starting", "the number pools are not in the store yet")
    if missing:  # every visitor of theirs would get the overflow number
        runtime.lost_pools(", ".join(missing))
        return error(503, "pools_missing", f"the store has lost number pools, being put back: {', '.join(missing)}")
    refused = runtime.rules_refused
    problems: dict[str, Any] = {"rules_problems": refused.problems} if refused else {}
    if refused and refused.kept:  # started on the last good rules, kept then (unix ms)
        problems["rules_kept_at"] = round(refused.kept * 1000)
    return JSON({"status": "ready", "rules_version": runtime.rules.version, "spool": spool or "ok",
                 "rules_change_refused": refused is not None, **problems})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    if request.scope.get("endpoint") in _CALLS:
        log_refused(request, exc)
    return refusal(exc)


async def _disconnected(request: Request, exc: Exception) -> Response:
    log.debug("client disconnected from %s", request.url.path)
    return error(DISCONNECTED, "client_disconnected", "the client went away before its request was read")


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
