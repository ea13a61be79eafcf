"""Who held a tracking number around a moment, and whom a call then goes to:
`GET /v1/numbers/{site}/{number}?at=`.

What support reads when a client asks about a call: the holds of the number before and after
the moment (the visitor, from when to when, how they came), whether it changed hands near it,
and the attribution `service.integrations.calls` would make of a call then, from the code that
credits calls. Behind any of the site's tokens, as the logs are; it changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request

from service.errors import BadRequest, HTTPError, only
from service.front.auth import require_report_token
from service.front.responses import JSON
from service.integrations.calls import Call, attribution, home_region, moment, phone_number, site_number
from service.rules.engine import Site
from service.runtime import Runtime
from service.tracking import visits

HOLDS = 5  # on each side of the moment: enough to see a number change hands around a call
ATTRIBUTED = ("kind", "pool", "visitor", "page", "visit", "reason", "holds_near")


async def number_endpoint(request: Request) -> JSON:
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    only(request.query_params, ("at",))
    given = request.path_params["number"]
    number = site_number(site, given) or phone_number(given, home_region(site))
    if number is None:
        raise BadRequest("invalid_number", f"not a phone number: {given[:40]!r}")
    now = runtime.now_ms()
    try:
        at = moment(request.query_params["at"], "at", site) if request.query_params.get("at") else now
    except HTTPError as exc:  # as a call's start is read, and said as a filter's mistake
        raise BadRequest("invalid_filter", exc.message) from None
    return JSON(await view(runtime, site, number, at, now))


async def view(runtime: Runtime, site: Site, number: str, at: int, now: int) -> dict[str, Any]:
    """The holds of `number` around `at` and what a call then would be credited to."""
    # A caller new to the number: one who called it before goes to whom they called then (`called_back`).
    found = await attribution(runtime, site, Call("", number, "", None, at, 0, "completed"))
    leases = await runtime.pools.holds_around(site, number, at, HOLDS)
    journeys = await asyncio.gather(*(visits.journey(runtime.store, site.id, lease["v"], lease["w"], lease["u"])
                                      for lease in leases if lease.get("w")))  # an erased visitor's lease names none
    found_visits = iter(journeys)
    holds = [{"pool": lease["pool"], "visitor": lease["v"] or None, "began": lease["f"], "until": lease["u"],
              "over": lease["u"] < now, "page": lease.get("p"), "variants": lease.get("x") or {},
              "visit": next(found_visits) if lease.get("w") else None} for lease in leases]
    await visits.learn_city_names(runtime.store, runtime.geo)
    named = [visits.city_named(hold, runtime.geo, site.language) for hold in holds]
    then = visits.city_named({name: found[name] for name in ATTRIBUTED}, runtime.geo, site.language)
    span = [hold["began"] for hold in holds] + [min(hold["until"], now) for hold in holds] + [at]
    return {
        "site": site.id,
        "number": found["number"],
        "time_zone": str(site.time_zone),
        "at": at,
        "a_call_then": {"credited": found["visitor"] is not None, **then},
        "holds": named,
        "calls": f"/v1/calls/{quote(site.id)}?" + urlencode({
            "number": number, "from": _day(min(span), site), "to": _day(max(span), site)}),
    }


def _day(ms: int, site: Site) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, site.time_zone).date().isoformat()
