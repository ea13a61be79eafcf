"""The analysts' dashboard: `/dashboard/{site}`, server-rendered, with no external asset.

The report token opens it once (`POST /dashboard/{site}/login`); the browser then keeps a
session cookie that the service signed (HttpOnly, SameSite=Strict, `Secure` over HTTPS,
limited to the site's dashboard path), never the token itself; a new report token ends the
sessions of the old one. `Authorization: Bearer <token>` works as well. The pages run no
script and may not be framed (`HEADERS`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service import bodies, stats
from service.auth import accepts, fingerprint, require_report_token
from service.engine import Site
from service.errors import TooManyRequests
from service.reports import Filters, build
from service.runtime import Runtime

SESSION = "swapline_session"
SESSION_SECONDS = 8 * 3600
PADDING = 20  # chart: user units between the axis and the first day
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
    """The conversion rate per day per variant in SVG user units: a line through each day's dot,
    and the dot's 95% interval as a whisker, so that a day of few visitors looks as uncertain
    as it is. The variants of a day stand side by side, the axis reaches the highest interval
    in round steps."""
    days = sorted({point["day"] for point in daily})
    measured = [(point, stats.wilson(point["converted"], point["visitors"]))
                for point in daily if point["rate"] is not None]
    step, steps = _scale(max((interval.high for _, interval in measured if interval), default=0))
    top = step * steps
    left, bottom, plot_w, plot_h = 48, height - 28, width - 64, height - 44
    apart = min(12.0, plot_w / max(1, len(days)) / (len(variants) + 1))  # a day's variants, side by side

    def x(day: str, variant: float) -> float:  # variant: its index, or between them for the day's label
        inner = plot_w - 2 * PADDING  # the first and the last day's dots clear the axis labels
        middle = left + PADDING + (days.index(day) / (len(days) - 1) * inner if len(days) > 1 else inner / 2)
        return middle + (variant - (len(variants) - 1) / 2) * apart

    def y(rate: float) -> float:
        return bottom - rate / top * plot_h

    lines = []
    for index, variant in enumerate(variants):
        dots = [{"x": x(point["day"], index), "y": y(point["rate"]), "low": y(interval.low), "high": y(interval.high)}
                for point, interval in measured if point["variant"] == variant and interval]
        lines.append({"variant": variant, "colour": COLOURS[index % len(COLOURS)], "dots": dots,
                      "points": " ".join(f"{dot['x']:.1f},{dot['y']:.1f}" for dot in dots)})
    ticks = [{"y": y(step * i), "label": f"{round(step * i * 100, 6):g}%"} for i in range(steps + 1)]
    labels = [{"x": x(day, (len(variants) - 1) / 2), "label": day[5:]} for day in days[:: max(1, len(days) // 8)]]
    return {"width": width, "height": height, "lines": lines, "ticks": ticks, "days": labels,
            "left": left, "right": left + plot_w, "bottom": bottom}


def _scale(highest: float) -> tuple[float, int]:
    """A round step (1, 2, 2.5 or 5 times a power of ten) and how many of them (three to five)
    reach `highest`; up to 1% when there is nothing to show."""
    highest = highest or 0.01
    wanted = highest / 4
    power = 10 ** math.floor(math.log10(wanted))
    step = next(power * mantissa for mantissa in (1, 2, 2.5, 5, 10) if power * mantissa >= wanted * (1 - 1e-9))
    return step, max(1, math.ceil(highest / step - 1e-9))


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
