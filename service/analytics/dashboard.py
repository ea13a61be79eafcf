"""The analysts' dashboard: `/dashboard/{site}`, server-rendered, with no external asset, in the
reader's language, English or Russian (`language`).

The report token opens it once (`POST /dashboard/{site}/login`); the browser then keeps a
session cookie that the service signed (HttpOnly, SameSite=Strict, `Secure` over HTTPS,
limited to the site's dashboard path), never the token itself; a new report token ends the
sessions of the old one. `Authorization: Bearer <token>` works as well. The pages run no
script and may not be framed (`HEADERS`).
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

import jinja2
import markupsafe
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service.analytics import charts, dimensions, language, logs, one_thread, reports, sheets
from service.analytics.reports import Filters, build
from service.errors import BadRequest, TooManyRequests
from service.front import bodies
from service.front.auth import accepts, fingerprint, refuse_foreign_sign_in, require_report_token, tokens
from service.integrations import exports, holders
from service.rules import phones
from service.rules.engine import Site
from service.runtime import Runtime
from service.tracking.clock import DAY_MS
from service.tracking.counters import NONE, NOT_CREDITED, OTHER

SESSION = "swapline_session"
SESSION_SECONDS = 8 * 3600
DASHBOARD_PAGES = 20  # pages shown unless the address asks for more (`?limit=`)
CALLS_SHOWN = 50  # calls a page of the call log shows
TABS = ("", "/sources", "/calls", "/numbers")  # under /dashboard/{site}
LANGUAGE_SECONDS = 400 * 86_400  # a chosen language is kept as long as a browser keeps a cookie
DOWNLOADS = ("report", "sources", "calls")  # /dashboard/{site}/calls.xlsx: what a tab shows, to save
POOL_DAYS_SHOWN = 14  # the days the Numbers tab lists; its verdicts read the last week
SOURCE_CHOICES = ("source", "source,medium", "source,campaign", "campaign", "phrase", "source,phrase", "landing",
                  "region", "city", "device", "pool", "page", "variant")
# How the lift is judged (`?test=`): always-valid figures for an analyst who looks every day
# (the default), or the classic ones, valid for one look at a sample size fixed in advance.
TESTS = {"sequential": "sequential: look any day", "fixed": "fixed horizon: one look at the planned size"}
_FIGURE = re.compile(r"[+-]?\d+(\.\d+)?(%|e[+-]?\d+| pp)?")  # 0.012, +25.0%, 1.2e-05 in a sentence
HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "vary": "accept-language",
}


def _pages(reader: str) -> jinja2.Environment:
    """The service's HTML pages (service/pages/), autoescaped, with their words in `reader`'s
    language: `_("…")` and `{% trans %}` in the templates."""
    pages = jinja2.Environment(loader=jinja2.PackageLoader("service", "pages"), autoescape=True,
                               extensions=["jinja2.ext.i18n"])
    pages.policies["ext.i18n.trimmed"] = True
    words = language.Words(reader)
    pages.install_gettext_callables(words.gettext, words.ngettext, newstyle=True)  # type: ignore[attr-defined]
    pages.globals["language"] = reader
    pages.globals["paths"] = TABS  # the tabs' own (tabs.html)
    russian = reader == "ru"  # 12,5%, 20 000, 04.12 and 05.11.2026

    def decimal(figure: str) -> str:
        return figure.replace(".", ",") if russian else figure

    pages.filters["decimal"] = decimal
    pages.filters["whole"] = lambda count: f"{count:,}".replace(",", "\N{NO-BREAK SPACE}" if russian else ",")
    pages.filters["day"] = lambda day: ".".join(day.split("-")[::-1]) if russian and day else day  # ISO's 12-04 too
    pages.filters["value"] = functools.partial(_named, words)
    pages.filters["said"] = lambda said: words.gettext(said.template) % {  # a report's sentence, its figures too
        name: decimal(value) if _FIGURE.fullmatch(value) else value for name, value in said.values.items()}
    pages.filters["phone"] = _phone
    return pages


def _phone(number: str | None) -> markupsafe.Markup:
    """A number as people read it, kept on one line: +7 495 120-00-05."""
    if not number:
        return markupsafe.Markup()
    return markupsafe.Markup('<span class="phone">%s</span>') % phones.international(number)


def _named(words: language.Words, value: str, dimension: str = "") -> str:
    """A value of a report as the reader's dashboard names it: the rows that stand for no value
    or many, and devices, in the reader's words; anything else as it came."""
    return words.gettext(value) if value in (NONE, OTHER, NOT_CREDITED) or dimension == "device" else value


# By language; `service.front.home`, the operators' page, renders from the English ones.
PAGES = {reader: _pages(reader) for reader in language.LANGUAGES}


async def dashboard_endpoint(request: Request) -> Response:
    runtime, site = _site(request)
    if not await _signed_in(runtime, site, request):
        return _login_page(request, site)
    try:
        filters = Filters.parse(request.query_params, limit=DASHBOARD_PAGES)
        test = request.query_params.get("test") or "sequential"
        if test not in TESTS:
            raise BadRequest("invalid_filter", f"test must be one of {', '.join(TESTS)}")
        report = await build(runtime, site, filters)
    except BadRequest as error:
        return _refused(request, site, "", error)
    page = functools.partial(_render, _reader(request), site, report, filters, test, dict(request.query_params))
    return HTMLResponse(await one_thread.run(page), headers=HEADERS)


def _render(reader: str, site: Site, report: dict[str, Any], filters: Filters, test: str,
            params: dict[str, str]) -> str:
    tables = []
    for table in report["experiments"]:
        variants = [row["variant"] for row in table["variants"]]
        tables.append({**table, "conversion": charts.conversion(table["daily"], variants),
                       "lift": charts.lift(table["daily"], variants, table["expected_visitors"])})
    return PAGES[reader].get_template("dashboard.html").render(
        site=site, report=report, tables=tables, filters=filters, test=test, tests=TESTS, download=urlencode(params),
        query=lambda other: urlencode({**params, "test": other}))  # this page with the other test


async def calls_page_endpoint(request: Request) -> Response:
    """`/dashboard/{site}/calls`: the call log, each call with the visit that led to it."""
    runtime, site = _site(request)
    if not await _signed_in(runtime, site, request):
        return _login_page(request, site)
    params = _given(request)
    try:
        calls, cursor = await logs.read(runtime, site, {**params, "limit": str(CALLS_SHOWN)}, calls=True)
    except BadRequest as error:
        return _refused(request, site, "/calls", error)
    download = urlencode({name: value for name, value in params.items() if name not in ("cursor", "limit")})
    # One call asked for by its id: who held its number around it, for a client asking why.
    one = calls[0] if params.get("call_id") and len(calls) == 1 and calls[0]["kind"] == "lease" else None
    holds = (await holders.view(runtime, site, one["number"], one["start"], runtime.now_ms()))["holds"] if one \
        else None
    reader = _reader(request)
    shown = "%d.%m.%Y %H:%M:%S" if reader == "ru" else "%Y-%m-%d %H:%M:%S"
    # What the source field suggests: the sources of the last 30 days, and the calls of none.
    sources = dict.fromkeys([*await dimensions.seen(runtime.store, site, "source", runtime.today(site)), NOT_CREDITED])
    html = PAGES[reader].get_template("calls.html").render(
        site=site, calls=calls, holds=holds, sources=sources, params=params,
        next=logs.next_page(params, cursor) if cursor else None, download=download, most=logs.FILE_ENTRIES,
        uploads=await exports.latest(runtime.store, site.id, 10) if exports.targets(site.exports) else None,
        zone=site.time_zone, moment=lambda ms: datetime.datetime.fromtimestamp(ms / 1000, site.time_zone).strftime(
            shown))
    return HTMLResponse(html, headers=HEADERS)


async def sources_page_endpoint(request: Request) -> Response:
    """`/dashboard/{site}/sources`: visits and conversions by source, campaign, phrase … (`?by=`)."""
    runtime, site = _site(request)
    if not await _signed_in(runtime, site, request):
        return _login_page(request, site)
    params = {"by": "source", **_given(request)}
    try:
        report = await dimensions.report(runtime, site, dimensions.Query(params, runtime.today(site)))
    except BadRequest as error:
        return _refused(request, site, "/sources", error)
    reader = _reader(request)
    html = PAGES[reader].get_template("sources.html").render(
        site=site, report=report, choices=SOURCE_CHOICES, download=urlencode(params),
        chart=charts.bars(report["rows"], report["by"], functools.partial(_named, language.Words(reader))))
    return HTMLResponse(html, headers=HEADERS)


async def numbers_page_endpoint(request: Request) -> Response:
    """`/dashboard/{site}/numbers`: whether each pool has numbers enough, and the days it had not."""
    runtime, site = _site(request)
    if not await _signed_in(runtime, site, request):
        return _login_page(request, site)
    leased = [pool for pool in site.pools if pool.numbers]
    stats = await runtime.pools.of_site(site, runtime.now_ms())
    html = PAGES[_reader(request)].get_template("numbers.html").render(
        site=site, pools=list(zip(leased, stats, strict=True)), fixed=[pool for pool in site.pools if pool.static],
        kept=runtime.pools.retention_ms // DAY_MS, shown=POOL_DAYS_SHOWN)
    return HTMLResponse(html, headers=HEADERS)


async def download_endpoint(request: Request) -> Response:
    """`/dashboard/{site}/sources.xlsx?by=…`: what a tab shows, as a file (`DOWNLOADS`), in the
    analyst's session; the report token's API gives the same files."""
    runtime, site = _site(request)
    if not await _signed_in(runtime, site, request):  # 401: a script saves no sign-in page as its file
        return _login_page(request, site, status=401)
    table = request.url.path.rpartition("/")[2].partition(".")[0]
    form = sheets.requested(request.url.path)
    params = _given(request)
    if table == "calls":
        return await logs.answer(runtime, site, params, form, calls=True)
    return await reports.answer(runtime, site, {"by": "source", **params} if table == "sources" else params, form)


async def login_endpoint(request: Request) -> Response:
    runtime, site = _site(request)
    refuse_foreign_sign_in(request)
    form = parse_qs((await bodies.read(request, 4096)).decode("utf-8", "replace"))
    try:
        accepted = await accepts(runtime, site, request, (form.get("token") or [""])[0])
    except TooManyRequests as exc:
        return _login_page(request, site, "throttled", 429, exc.headers, _back(form.get("back", [""])[0]))
    if not accepted:
        return _login_page(request, site, "wrong", 401, back=_back(form.get("back", [""])[0]))
    session = {"dashboard": site.id, "until": int(runtime.clock()) + SESSION_SECONDS,
               "k": fingerprint(runtime, accepted)}
    response = RedirectResponse(f"/dashboard/{site.id}{_back(form.get('back', [''])[0])}", status_code=303)
    response.set_cookie(
        SESSION, runtime.signer.sign(session), max_age=SESSION_SECONDS,
        path=f"/dashboard/{site.id}", httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


async def signout_endpoint(request: Request) -> Response:
    """The analyst's session ends in this browser (a shared computer): the sign-in page again."""
    _, site = _site(request)
    response = RedirectResponse(f"/dashboard/{site.id}", status_code=303)
    response.delete_cookie(SESSION, path=f"/dashboard/{site.id}", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


async def language_endpoint(request: Request) -> Response:
    """`POST /dashboard/{site}/language`: the reader's choice of language (`language=ru`), kept
    in this browser over what it asks for, and back to the tab they chose it on, with its
    filters (`query`, read as a query string and written anew: the tab's address is ours)."""
    _, site = _site(request)
    form = parse_qs((await bodies.read(request, 4096)).decode("utf-8", "replace"))
    query = urlencode(parse_qsl(form.get("query", [""])[0]))
    response = RedirectResponse(f"/dashboard/{site.id}{_back(form.get('back', [''])[0])}{'?' + query if query else ''}",
                                status_code=303)
    reader = (form.get("language") or [""])[0]
    if reader in language.LANGUAGES:
        response.set_cookie(language.COOKIE, reader, max_age=LANGUAGE_SECONDS, path="/dashboard", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
    return response


async def _signed_in(runtime: Runtime, site: Site, request: Request) -> bool:
    if request.headers.get("authorization"):
        await require_report_token(runtime, site, request)  # a wrong bearer token is a 401, not a login page
        return True
    session = runtime.signer.verify(request.cookies.get(SESSION, ""))
    return bool(session and session.get("dashboard") == site.id and session.get("until", 0) > runtime.clock()
                and session.get("k") in {fingerprint(runtime, token) for token in tokens(site)})


def _refused(request: Request, site: Site, path: str, error: BadRequest) -> HTMLResponse:
    """A tab whose address asks what the service refuses (`?limit=0`): the tab says why (in the
    API's English words), where an API client gets the JSON error."""
    html = PAGES[_reader(request)].get_template("refused.html").render(site=site, path=path, message=error.message)
    return HTMLResponse(html, status_code=error.status, headers=HEADERS)


def _login_page(request: Request, site: Site, error: str | None = None, status: int = 200,
                headers: dict[str, str] | None = None, back: str | None = None) -> HTMLResponse:
    """`error`: "wrong" for a token that is not the site's, "throttled" past the attempts allowed;
    `back`: the tab to show once signed in, by default the one asked for."""
    if back is None:
        back = _back(request.url.path.removeprefix(f"/dashboard/{site.id}"))
    html = PAGES[_reader(request)].get_template("login.html").render(site=site, error=error, back=back)
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})


def _back(given: str) -> str:
    """The tab a form (or the address) names to go back to: one of `TABS`, nothing else."""
    return given if given in TABS else ""


def _reader(request: Request) -> str:
    return language.chosen(request.headers.get("accept-language", ""), request.cookies.get(language.COOKIE))


def _given(request: Request) -> dict[str, str]:
    """The filters the address gives: an empty field of a tab's form gives none."""
    return {name: value for name, value in request.query_params.items() if value}


def _site(request: Request) -> tuple[Runtime, Site]:
    runtime: Runtime = request.app.state.runtime
    return runtime, runtime.site(request.path_params["site"])
