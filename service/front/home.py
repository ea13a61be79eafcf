"""`GET /`: what is running, and the way to everything a newcomer looks for first."""

from __future__ import annotations

import datetime

from starlette.requests import Request
from starlette.responses import HTMLResponse

from service import __version__
from service.analytics.dashboard import PAGES
from service.config import SENTINEL, Settings
from service.runtime import Runtime

PROBLEMS_SHOWN = 10  # of a refused change to the rules, or of the rules' warnings: `swapline rules check` lists all


def store_mode(settings: Settings) -> str:
    """How the store is run, never where: the page is public, a URL may hold a password."""
    if settings.redis_cluster:
        return "Redis/Valkey cluster"
    url = settings.redis_url or ""
    if not url or (url.startswith("unix://") and str(settings.data_dir.resolve()) in url):
        return "embedded Valkey (in the data directory)"
    if url.startswith(f"{SENTINEL}:"):
        return "Redis/Valkey primary found through Sentinel"
    return "Redis/Valkey server"


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")


async def home_endpoint(request: Request) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    sites = sorted(runtime.rules.sites.values(), key=lambda site: site.id)
    refused = runtime.rules_refused
    kept = refused.kept if refused else None  # the service started on the last good rules, kept then
    html = PAGES["en"].get_template("home.html").render(
        version=__version__, rules_version=runtime.rules.version, store=store_mode(runtime.settings), sites=sites,
        rules_refused=_utc(refused.at) if refused else None, kept=_utc(kept) if kept else None,
        problems=refused.problems[:PROBLEMS_SHOWN] if refused else (),
        more=max(0, len(refused.problems) - PROBLEMS_SHOWN) if refused else 0,
        warnings=runtime.rules.warnings[:PROBLEMS_SHOWN],
        more_warnings=max(0, len(runtime.rules.warnings) - PROBLEMS_SHOWN))
    return HTMLResponse(html, headers={"cache-control": "no-store"})
