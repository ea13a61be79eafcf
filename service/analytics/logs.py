"""The call log and the conversion log: `GET /v1/calls/{site}` and `GET /v1/conversions/{site}`.

Newest first, a page at a time (`limit`, and `cursor` = the last page's `next`), behind the
site's report token, as JSON, CSV (`/v1/calls/{site}.csv`) or an Excel workbook (`.xlsx`); a
file without `limit` holds every entry of its filters, up to `FILE_ENTRIES`.
Filters: `from` and `to` (the site's days, of the call's start or the conversion's time),
`source`, `campaign`, `pool`, `qualified` (true / false), `variant` (`experiment:variant`),
for calls `call_id`, `caller` (its last digits) and `number` (the number called), and for
conversions `kind`.
Each entry says what the conversion was, and how the visitor came: source, campaign, phrase,
ad click ids, landing page and the pages seen before it (`service.tracking.journal`).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from service.analytics import sheets
from service.analytics.language import Said
from service.analytics.sheets import Sheet
from service.errors import BadRequest, MethodNotAllowed, only
from service.front.auth import require_report_token
from service.front.responses import JSON
from service.integrations.calls import home_region, kept_number, phone_number, site_number
from service.rules.engine import Site
from service.rules.rulefiles import RESERVED_IDS
from service.runtime import Runtime
from service.tracking import journal, visits
from service.tracking.counters import NONE, NOT_CREDITED
from service.tracking.journal import LogQuery

KINDS = ("call", "missed_call", "form", "tel_click", "goal", "alert")
# What the logs take in their query string: the filters and a page's bounds.
LOG_PARAMETERS = ("from", "to", "limit", "cursor", "kind", "qualified", "missed", "variant", "source", "campaign",
                  "pool")
# Its entries are calls: no kind, and a call's own id, its caller's last digits (what a PBX and a
# customer tell support), or the number called.
CALL_LOG_PARAMETERS = (*(name for name in LOG_PARAMETERS if name != "kind"), "call_id", "caller", "number")
CALL_COLUMNS = ("time", "call_id", "kind", "number", "pool", "talk_seconds", "status", "unique", "qualified",
                "not_target", "caller_last_digits", "credited", "reason", "earlier_call")
# A call's `credited` and `reason` too: the reports leave out its calls to none of the site's numbers.
CONVERSION_COLUMNS = ("time", "id", "kind", "goal", "page", "credited", "reason", "alert")  # alert: its message
# A file's entries when no `limit` asks for a page: a busy site's month of calls. Past it, and
# past the log's pages a file reads (each at most `journal.SCANNED` entries, whatever the
# filters keep), the file's `Link` header names the rest.
FILE_ENTRIES = 20_000
NO_CALLER = "caller must be a number or its last four digits (all that is kept)"  # as `Said`: the tab's field
NO_NUMBER = "number must be a phone number, as the telephony or a client writes it: %(given)s"  # as `Said`
FILE_READS = 40
VISIT_COLUMNS = ("visitor", "source", "medium", "campaign", "content", "phrase", "click_ids", "landing", "pages",
                 "device", "region", "city", "variants")


async def calls_log_endpoint(request: Request) -> Response:
    return await _log(request, calls=True)


async def conversions_log_endpoint(request: Request) -> Response:
    return await _log(request, calls=False)


async def _log(request: Request, calls: bool) -> Response:
    runtime: Runtime = request.app.state.runtime
    if calls and request.path_params["site"] in RESERVED_IDS:  # a GET of a vendor's webhook
        raise MethodNotAllowed("method_not_allowed", "this address takes a telephony vendor's POST", allow="POST")
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    return await answer(runtime, site, request.query_params, sheets.requested(request.url.path), calls)


async def answer(runtime: Runtime, site: Site, params: Mapping[str, str], form: str | None, calls: bool
                 ) -> Response:
    """A page of the call log (`calls`) or the conversion log as JSON, or a file in `form` (all
    of the log the filters keep, unless a `limit` asks for a page) with the address of what is
    left in a `Link` header."""
    whole = form is not None and not params.get("limit")
    entries, cursor = await (read_all(runtime, site, params, calls) if whole else read(runtime, site, params, calls))
    if form is None:
        # Times are unix milliseconds; the zone is the one the files and the dashboard write them in.
        return JSON({"site": site.id, "time_zone": str(site.time_zone), "entries": entries, "next": cursor})
    headers = {"link": f'<?{next_page(params, cursor)}>; rel="next"'} if cursor else {}
    # Named by the days its filters ask for, else by those its entries span, and, where the rest is
    # left to the `Link`, by how many it holds: an analyst who never sees the header sees that the
    # file is not all.
    days = sorted(datetime.datetime.fromtimestamp((entry["start"] if calls else entry["at"]) // 1000,
                                                  site.time_zone).date().isoformat() for entry in entries)
    today = runtime.today(site)
    since, until = (datetime.date.fromisoformat(params[name]).isoformat() if params.get(name) else None
                    for name in ("from", "to"))  # as the query read them: days
    first = since or (days[0] if days else until or today)
    last = until or (today if since or not days else days[-1])
    name = f"{site.id}-{'calls' if calls else 'conversions'}-{sheets.period(first, last)}"
    if cursor:
        name += f"-first-{len(entries)}"
    return await sheets.download(functools.partial(sheet, entries, calls, name, site.time_zone), form, headers)


async def read(runtime: Runtime, site: Site, params: Mapping[str, str], calls: bool) -> tuple[list[dict[str, Any]],
                                                                                                str | None]:
    """One page of the call log (`calls`) or of the conversion log, as `params` ask, and the
    cursor of the next."""
    entries, cursor = await _page(runtime, site, params, calls)
    return await _named(runtime, site, entries), cursor


async def _page(runtime: Runtime, site: Site, params: Mapping[str, str], calls: bool) -> tuple[list[dict[str, Any]],
                                                                                                 str | None]:
    query = LogQuery.parse(params, site.time_zone)
    page = await runtime.journal.page(site.id, query, _filter(params, query, calls, site))
    return [_call(entry) if calls else entry for entry in page["entries"]], page["next"]


async def _named(runtime: Runtime, site: Site, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries with their visits' cities named as the site's decisions name them."""
    await visits.learn_city_names(runtime.store, runtime.geo)
    return [visits.city_named(entry, runtime.geo, site.language) for entry in entries]


async def read_all(runtime: Runtime, site: Site, params: Mapping[str, str], calls: bool
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """Every entry of the log that `params` keep, from their `cursor` on, up to `FILE_ENTRIES`,
    and the cursor of the rest."""
    entries: list[dict[str, Any]] = []
    cursor = params.get("cursor") or None
    for _ in range(FILE_READS):
        page = {**params, "limit": str(min(journal.MOST, FILE_ENTRIES - len(entries)))}
        if cursor:
            page["cursor"] = cursor
        more, cursor = await _page(runtime, site, page, calls)
        entries += more
        if cursor is None or len(entries) == FILE_ENTRIES:
            break
    return await _named(runtime, site, entries), cursor  # the names learnt once a file, not once a page


def next_page(params: Mapping[str, str], cursor: str) -> str:
    """The query string of the page after this one."""
    return urlencode({**params, "cursor": cursor})


def _filter(params: Mapping[str, str], query: LogQuery, calls: bool, site: Site) -> Callable[[dict[str, Any]], bool]:
    """What an entry must be to be listed; every filter given must hold."""
    if calls and "kind" in params:
        raise BadRequest("invalid_filter", "the call log has no kind filter: see /v1/conversions")
    only(params, CALL_LOG_PARAMETERS if calls else LOG_PARAMETERS)
    kind = params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise BadRequest("invalid_filter", f"kind must be one of {', '.join(KINDS)}")
    qualified, missed = params.get("qualified") or None, params.get("missed") or None
    for name, given in (("qualified", qualified), ("missed", missed)):
        if given not in (None, "true", "false"):
            raise BadRequest("invalid_filter", f"{name} must be true or false")
    experiment, _, variant = (params.get("variant") or "").partition(":")
    if params.get("variant") and not (experiment and variant):
        raise BadRequest("invalid_filter", "variant must be experiment:variant")
    source, campaign, pool = params.get("source") or None, params.get("campaign") or None, params.get("pool") or None
    call_id, given = params.get("call_id") or None, params.get("caller") or ""
    digits = "".join(char for char in given[:64] if char in "0123456789")  # a number as a customer writes it
    if given and len(digits) < 4:
        raise BadRequest("invalid_filter", Said(NO_CALLER))
    caller = digits[-4:] or None
    numbers = _called(site, params.get("number") or "")

    def keeps(entry: dict[str, Any]) -> bool:
        call = entry.get("call")
        visit = entry.get("visit") or ({} if entry.get("visitor") else None)  # None: credited to nobody
        return bool(
            query.keeps_time(entry["at"])
            and (call is not None or not calls)
            and (entry["kind"] == kind if kind else entry["kind"] != "alert")  # alerts only when asked
            and (source is None or _same(visit, "source", source))
            and (campaign is None or _same(visit, "campaign", campaign))
            and (pool is None or (call or {}).get("pool") == pool)
            and (call_id is None or entry["id"] == f"call:{call_id}")
            and (caller is None or (call or {}).get("caller_last_digits") == caller)
            and (numbers is None or (call or {}).get("number") in numbers)
            and (qualified is None or bool((call or {}).get("qualified")) == (qualified == "true"))
            and (missed is None or (entry["kind"] == "missed_call") == (missed == "true"))
            and (not experiment or entry.get("experiments", {}).get(experiment) == variant)
        )
    return keeps


def _called(site: Site, given: str) -> tuple[str, ...] | None:
    """What a call record keeps of the number `given` (as a PBX or a client writes it): one of
    the site's, or the last digits of another (`kept_number`); None when not given."""
    if not given:
        return None
    number = site_number(site, given) or phone_number(given, home_region(site))
    if number is None:
        raise BadRequest("invalid_filter", Said(NO_NUMBER, given=repr(given[:40])))
    return number, kept_number(number)


def _same(visit: dict[str, Any] | None, name: str, wanted: str) -> bool:
    """A visit's source or campaign as a filter names it, as the Sources tab does: in any letter
    case; "(none)" for a visit without one, "(not credited)" for a call that has no visit."""
    if visit is None:
        return wanted.casefold() == NOT_CREDITED
    value = visit.get(name)
    return value.casefold() == wanted.casefold() if value else wanted.casefold() == NONE


def _call(entry: dict[str, Any]) -> dict[str, Any]:
    """A call's entry as the webhook answered it (docs/CALLS.md, "The answer")."""
    return {**entry["call"], "call_id": entry["id"].removeprefix("call:"), "start": entry["at"],
            "visitor": entry.get("visitor"), "page": entry.get("page"), "experiments": entry.get("experiments", {}),
            "visit": entry.get("visit")}


def sheet(entries: list[dict[str, Any]], calls: bool, name: str, zone: datetime.tzinfo) -> Sheet:
    """The entries as a table: one row each, the visit flattened, its time on the clocks of `zone`, to the second."""
    rows = []
    for entry in entries:
        time = datetime.datetime.fromtimestamp((entry["start"] if calls else entry["at"]) // 1000, zone)
        own = ([time, *(entry.get(name) for name in CALL_COLUMNS[1:])] if calls else
               [time, entry["id"], entry["kind"], entry.get("goal"), entry.get("page"),
                *((entry.get("call") or {}).get(name) for name in ("credited", "reason")),
                (entry.get("alert") or {}).get("message")])
        visit = entry.get("visit") or {}
        rows.append([
            *own, entry.get("visitor"), *(visit.get(name) for name in VISIT_COLUMNS[1:6]),  # source … phrase
            ";".join(f"{name}={value}" for name, value in (visit.get("click_ids") or {}).items()),
            visit.get("landing"), " > ".join(page["path"] for page in visit.get("pages", [])), visit.get("device"),
            *((visit.get("geo") or {}).get(name) for name in ("region", "city")),
            ";".join(f"{name}={value}" for name, value in entry.get("experiments", {}).items()),
        ])
    return Sheet(name, [*(CALL_COLUMNS if calls else CONVERSION_COLUMNS), *VISIT_COLUMNS], rows)
