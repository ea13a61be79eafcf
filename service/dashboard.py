"""The analysts' dashboard: `/dashboard/{site}`, server-rendered, with no external asset.

The report token opens it once (`POST /dashboard/{site}/login`); the browser then keeps a
session cookie that the service signed (HttpOnly, SameSite=Strict, `Secure` over HTTPS,
limited to the site's dashboard path), never the token itself; a new report token ends the
sessions of the old one. `Authorization: Bearer <token>` works as well. The pages run no
script and may not be framed (`HEADERS`).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service import bodies
from service.auth import accepts, fingerprint, require_report_token
from service.engine import Site
from service.errors import TooManyRequests
from service.reports import Filters, build
from service.runtime import Runtime

SESSION = "swapline_session"
SESSION_SECONDS = 8 * 3600
DASHBOARD_PAGES = 20  # pages shown unless the address asks for more (`?limit=`)
HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
COLOURS = ("#4b5563", "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")  # control first, in grey
# The service's HTML pages (service/pages/), autoescaped; `service.home` renders from it too.
PAGES = jinja2.Environment(loader=jinja2.PackageLoader("service", "pages"), autoescape=True)


async def dashboard_endpoint(request: Request) -> Response:
    runtime, site = _site(request)
    if not await _signed_in(runtime, site, request):
        return _login_page(site)
    filters = Filters.parse(request.query_params, limit=DASHBOARD_PAGES)
    report = await build(runtime, site, filters)
    return HTMLResponse(await asyncio.to_thread(_render, site, report, filters), headers=HEADERS)


def _render(site: Site, report: dict[str, Any], filters: Filters) -> str:
    tables = [{**table, "chart": chart(table["daily"], [v["variant"] for v in table["variants"]])}
              for table in report["experiments"]]
    return PAGES.get_template("dashboard.html").render(site=site, report=report, tables=tables, filters=filters)


async def login_endpoint(request: Request) -> Response:
    runtime, site = _site(request)
    form = parse_qs((await bodies.read(request, 4096)).decode("utf-8", "replace"))
    try:
        accepted = await accepts(runtime, site, request, (form.get("token") or [""])[0])
    except TooManyRequests as exc:
        return _login_page(site, "Too many wrong tokens from your network: try again later.", 429, exc.headers)
    if not accepted:
        return _login_page(site, error="That is not this site's report token.", status=401)
    session = {"dashboard": site.id, "until": int(runtime.clock()) + SESSION_SECONDS, "k": fingerprint(runtime, site)}
    response = RedirectResponse(f"/dashboard/{site.id}", status_code=303)
    response.set_cookie(
        SESSION, runtime.signer.sign(session), max_age=SESSION_SECONDS,
        path=f"/dashboard/{site.id}", httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


def chart(daily: list[dict[str, Any]], variants: list[str], width: int = 640, height: int = 220) -> dict[str, Any]:
    """Polylines of the conversion rate per day per variant, in SVG user units."""
    days = sorted({point["day"] for point in daily})
    rates = [point["rate"] for point in daily if point["rate"] is not None]
    top = max(rates, default=0) or 0.01
    left, bottom, plot_w, plot_h = 48, height - 28, width - 64, height - 44

    def x(day: str) -> float:
        return left + (days.index(day) / (len(days) - 1) * plot_w if len(days) > 1 else plot_w / 2)

    def y(rate: float) -> float:
        return bottom - rate / top * plot_h

    lines = []
    for index, variant in enumerate(variants):
        points = [(x(p["day"]), y(p["rate"])) for p in daily if p["variant"] == variant and p["rate"] is not None]
        lines.append({"variant": variant, "colour": COLOURS[index % len(COLOURS)],
                      "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in points), "dots": points})
    ticks = [{"y": y(top * i / 4), "label": f"{top * i / 4 * 100:.1f}%"} for i in range(5)]
    labels = [{"x": x(day), "label": day[5:]} for day in days[:: max(1, len(days) // 8)]]
    return {"width": width, "height": height, "lines": lines, "ticks": ticks, "days": labels,
            "left": left, "right": left + plot_w, "bottom": bottom}


async def _signed_in(runtime: Runtime, site: Site, request: Request) -> bool:
    if request.headers.get("authorization"):
        await require_report_token(runtime, site, request)  # a wrong bearer token is a 401, not a login page
        return True
    session = runtime.signer.verify(request.cookies.get(SESSION, ""))
    return bool(session and session.get("dashboard") == site.id and session.get("until", 0) > runtime.clock()
                and session.get("k") == fingerprint(runtime, site))


def _login_page(site: Site, error: str | None = None, status: int = 200,
                headers: dict[str, str] | None = None) -> HTMLResponse:
    html = PAGES.get_template("login.html").render(site=site, error=error)
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})


def _site(request: Request) -> tuple[Runtime, Site]:
    runtime: Runtime = request.app.state.runtime
    return runtime, runtime.site(request.path_params["site"])
