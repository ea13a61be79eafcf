"""The analysts' dashboard: `/dashboard/{site}`, server-rendered, with no external asset.

The report token opens it once (`POST /dashboard/{site}/login`); the browser then keeps a
session cookie that the service signed (HttpOnly, SameSite=Strict, limited to the site's
dashboard path), never the token itself. `Authorization: Bearer <token>` works as well.
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service import bodies
from service.auth import require_report_token
from service.engine import Site
from service.reports import Filters, build
from service.runtime import Runtime

SESSION = "swapline_session"
SESSION_SECONDS = 8 * 3600
COLOURS = ("#4b5563", "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")  # control first, in grey
_pages = jinja2.Environment(loader=jinja2.PackageLoader("service", "pages"), autoescape=True)


async def dashboard_endpoint(request: Request) -> Response:
    runtime, site = _site(request)
    if not _signed_in(runtime, site, request):
        return _login_page(site)
    report = await build(runtime, site, Filters.parse(request.query_params))
    tables = [{**table, "chart": chart(table["daily"], [v["variant"] for v in table["variants"]])}
              for table in report["experiments"]]
    html = _pages.get_template("dashboard.html").render(site=site, report=report, tables=tables)
    return HTMLResponse(html, headers={"cache-control": "no-store"})


async def login_endpoint(request: Request) -> Response:
    runtime, site = _site(request)
    form = parse_qs((await bodies.read(request, 4096)).decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0]
    if site.report_token is None or not hmac.compare_digest(given.encode(), site.report_token.encode()):
        return _login_page(site, error="That is not this site's report token.", status=401)
    expires = int(time.time()) + SESSION_SECONDS
    response = RedirectResponse(f"/dashboard/{site.id}", status_code=303)
    response.set_cookie(
        SESSION, runtime.signer.sign({"dashboard": site.id, "until": expires}), max_age=SESSION_SECONDS,
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


def _signed_in(runtime: Runtime, site: Site, request: Request) -> bool:
    if request.headers.get("authorization"):
        require_report_token(site, request)  # a wrong bearer token is a 401, not a login page
        return True
    session = runtime.signer.verify(request.cookies.get(SESSION, ""))
    return bool(session and session.get("dashboard") == site.id and session.get("until", 0) > time.time())


def _login_page(site: Site, error: str | None = None, status: int = 200) -> HTMLResponse:
    html = _pages.get_template("login.html").render(site=site, error=error)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def _site(request: Request) -> tuple[Runtime, Site]:
    runtime: Runtime = request.app.state.runtime
    return runtime, runtime.site(request.path_params["site"])
