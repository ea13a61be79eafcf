"""The decision endpoint: a page view in, what the visitor sees out.

`page_view` and `answer` are shared with `swapline rules preview`, so the preview prints
exactly what the endpoint would answer, without the store and its side effects.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, NamedTuple
from urllib.parse import unquote, unquote_plus, urljoin, urlsplit

import orjson
from starlette.requests import Request

from service.errors import BadRequest, HTTPError
from service.fragments import kept
from service.front.cors import cors_headers, refusal_headers
from service.front.middleware import client_host
from service.front.responses import JSON
from service.observability import DECISION_COUNTS, LEASE_COUNTS
from service.rules.engine import Outcome, Pool, Site, decide
from service.rules.geo import Geo, GeoDB
from service.rules.index import Slot
from service.rules.pageview import PageView, normalise_path
from service.rules.phones import formats, printed
from service.rules.phrase import (
    Landing,
    Referral,
    Traffic,
    landing,
    normalise,
    percent_decoded,
    referral,
    traffic,
    without_email,
)
from service.rules.words import Reading, read
from service.runtime import Runtime
from service.tracking import counters, visits
from service.tracking.clock import hour_and_day
from service.tracking.pools import Lease
from service.tracking.store import Command
from service.tracking.visitors import BrowserHeaders, device, is_bot, new_vid, valid_vid
from service.tracking.visits import NO_LANDING, Visit

MAX_URL = 4096
RAW_URL = 4 * MAX_URL  # of a page's address as sent, percent-encoded: the rest is cut before decoding
# The escapes of an address's last character in UTF-8 (a lead byte, then continuation bytes),
# and how many bytes a lead byte's first hex digit says the character has.
_LAST_CHARACTER = re.compile(r"(%[C-Fc-f][0-9A-Fa-f])(?:%[89ABab][0-9A-Fa-f]){0,3}$")
_UTF8_LENGTH = {12: 2, 13: 2, 14: 3, 15: 4}
MAX_VID = 128
MAX_VISIT = 4096  # the last decision token: its page's path, its visit's campaign texts and phrase twice, click ids
PREVIEW_CITY = "swapline_preview_city"  # in a page's address: the city a preview link puts the visitor in
PREVIEW = "swapline_preview"  # in a page's address: the variants a preview link shows
log = logging.getLogger("swapline")


class Arrival(NamedTuple):
    """What a page view's traffic parameters and referrer say: the same for every page of
    every visit that arrives with them."""

    traffic: Traffic
    reading: Reading  # of its phrase
    phrase: str  # normalised


def page_view(url: str, ref: str | None, vid: str, geo: Geo, user_agent: str) -> PageView:
    where = address(url)
    return _page_view(where.path, _arrival(where.landing, referral(ref)), vid, geo, user_agent)


class Address(NamedTuple):
    """What a page's URL says."""

    path: str  # as rules are written (as people read paths)
    landing: Landing  # its traffic parameters
    clicked: dict[str, str]  # its ad click ids with their values, which a visit that starts there records (shared)
    city: str | None  # the city a preview link fakes (`swapline_preview_city`)
    variants: str | None  # the variants a preview link pins (`swapline_preview`), as `_preview` reads them


def address(url: str) -> Address:
    """What `url` says; its parameters as sent (the page's own encoding), decoded where read."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BadRequest("invalid_url", "url is not a valid URL") from None
    landed, clicked = landing(parts.query)
    # A page's path goes to visits, logs and reports: an e-mail address in it is kept as (e-mail).
    return Address(without_email(normalise_path(unquote(parts.path) or "/")), landed, clicked,
                   _previewed(parts.query, PREVIEW_CITY, 100), _previewed(parts.query, PREVIEW, 512))


def _previewed(query: str, parameter: str, limit: int) -> str | None:
    """A preview link's `parameter` in a page's query."""
    if PREVIEW not in query:  # nearly every page (PREVIEW_CITY begins with PREVIEW too)
        return None
    raw = next((value for name, _, value in (pair.partition("=") for pair in query.split("&"))
                if name == parameter), None)
    return _checked(parameter, raw, limit)


def preview_geo(places: GeoDB, name: str) -> Geo:
    """Where a preview link's visitor is: the city it names."""
    geo = places.city(name)
    if geo is None:
        raise BadRequest("unknown_city", f"{PREVIEW_CITY}: no Russian city is called {name!r}")
    return geo


# Remembered by its parts, not the page's: every page of a visit is decided with the traffic
# the visit arrived with, so there are far fewer arrivals than pages of visits.
@functools.lru_cache(maxsize=4096)
def _arrival(landed: Landing, referred: Referral) -> Arrival:
    seen = traffic(landed, referred)
    phrase = seen.phrase or ""
    return Arrival(seen, read(phrase), normalise(phrase))


def _page_view(path: str, arrival: Arrival, vid: str, geo: Geo, user_agent: str, scripted: bool = False) -> PageView:
    seen, reading, phrase = arrival
    return PageView(vid, path, seen, reading, phrase, geo, device(user_agent), scripted or is_bot(user_agent))


def answer(site: Site, view: PageView, outcome: Outcome, token: str | None, version: str,
           lease: Lease | None = None, degraded: bool = False, preview: bool = False, page: str = "",
           shown: str | None = None) -> dict[str, Any]:
    """The decision as the snippet reads it; `page` is the page's URL as the query carried it,
    `shown` the number the visit's last page showed.
    The parts many page views share are made once, in JSON (`orjson.Fragment`), and sent as
    they are: serialising them again cost most of the answer's encoding."""
    traffic = view.traffic
    return {
        "site": site.id,
        "vid": view.vid,
        "token": token,
        "geo": view.geo.answered(site.language),
        "phrase": traffic.phrase,
        "source": _source(traffic),
        "swaps": [_swap(slot, value, page) for slot, value in outcome.swaps],
        "experiments": outcome.experiments,
        "phone": phone(site, outcome.pool, lease, preview, shown),
        "bot": view.bot,
        "degraded": degraded,
        "rules_version": version,
    }


@functools.lru_cache(maxsize=4096)  # the answer's parts that many page views share: made once (bounded)
def _source(traffic: Traffic) -> orjson.Fragment:
    return kept({"source": traffic.source, "medium": traffic.medium, "campaign": traffic.campaign,
                 "engine": traffic.engine, "click_id": traffic.click_id})


def _swap(slot: Slot, value: str, page: str) -> dict[str, Any] | orjson.Fragment:
    """A swap as the snippet applies it: the element's DOM `property` set to `value` where it
    differs. An address is made absolute against the `page` (its URL as the query carries
    it), as the browser reads `src` and `href` back."""
    selector, target = slot
    if target in ("text", "show"):
        return _set(slot, value)
    if target != "srcset":
        value = urljoin(_unquote(page), value)
    return {"selector": selector, "property": target, "value": value}


@functools.lru_cache(maxsize=4096)
def _set(slot: Slot, value: str) -> orjson.Fragment:
    """A text or whether an element shows, the same on every page."""
    selector, target = slot
    if target == "text":
        return kept({"selector": selector, "text": value, "property": "textContent", "value": value})
    return kept({"selector": selector, "property": "hidden", "value": value == "hide"})


def phone(site: Site, pool: Pool | None, lease: Lease | None, preview: bool = False,
          shown: str | None = None) -> orjson.Fragment | None:
    """The number to show instead of the page's own, in the formats the snippet looks for.

    `lease` is None where no lease was tried (a bot, a preview): a preview shows the pool's
    first number, which nobody holds for it; others keep the page's own. `shown` is the number
    the visit's last page showed: where it was another, the snippet finds that one too (a single
    page app's header, a page whose hold ended while it was hidden and that asks again).
    """
    if pool is None:
        return None
    if pool.static:
        return _shown(site.phone, pool.id, "static", pool.static)
    if preview:
        return _shown(site.phone, pool.id, "preview", pool.numbers[0])
    if lease is None:
        return _shown(site.phone, pool.id, "lease", None)
    if lease.number is None:
        return _shown(site.phone, pool.id, "overflow", pool.overflow or site.phone, was=shown)
    # Most pages show the number the last one did: one answer's part for all of them.
    return _shown(site.phone, pool.id, "lease", lease.number, pool.hold, None if shown == lease.number else shown)


# A pool's numbers are shown again and again, each the same way: the answer's part is made
# once (bounded, so a pool of 100,000 costs a miss, never memory).
@functools.lru_cache(maxsize=4096)
def _shown(replaces: str | None, pool: str, kind: str, number: str | None, hold: int | None = None,
           was: str | None = None) -> orjson.Fragment:
    shown: dict[str, Any] = {"pool": pool, "replaces": replaces,
                             "replaces_digits": formats(replaces)["digits"] if replaces else None, "kind": kind}
    if hold is not None:  # the snippet renews the hold while the page is visible: 3 times a hold, once a minute at most
        shown |= {"hold": hold, "heartbeat": min(60_000, hold * 1000 // 3)}
    if number is None:
        shown["number"] = None
        return kept(shown)
    shown |= formats(number)
    # What the snippet finds the page's number by: the site's own, and the one it showed before.
    replaced = [printed(other) for other in (replaces, was) if other and formats(other)["digits"] != shown["digits"]]
    if replaced:
        shown["replaces_pattern"] = "|".join(replaced)
    return kept(shown)


def token_payload(site: Site, view: PageView, outcome: Outcome, lease: Lease | None, now_ms: int) -> dict[str, Any]:
    payload = {"s": site.id, "v": view.vid, "p": view.path, "x": outcome.experiments, "t": now_ms // 1000}
    if outcome.pool is not None and lease is not None:
        payload["n"] = outcome.pool.id  # heartbeats extend this pool's lease
        payload["o"] = lease.number is None  # overflowed: nothing to credit a variant with
        if lease.number is not None:
            payload["l"] = lease.number  # the number the page shows: a heartbeat after its hold takes it back if free
    return payload


async def record(runtime: Runtime, site: Site, view: PageView, outcome: Outcome, now: int,
                 visit: Visit | None = None, network: str = "", shown: str = "") -> tuple[Lease | None, bool]:
    """Store the exposures and lease the number, in one shared round trip (an overflowed
    visitor's mark follows in the next). `shown`: the number the visitor's last page showed.

    Returns the lease (None when no pool leases) and whether the store failed.
    """
    _, day = hour_and_day(now, site.time_zone)
    pool = outcome.pool
    ledger, batcher = runtime.ledger, runtime.store.batcher
    try:
        if view.bot:  # counted apart, and nothing else
            await batcher.submit(ledger.bot(site.id, day))
            return None, False
        exposures, fresh = ledger.exposures(site.id, view.vid, view.path, day, outcome.experiments)
        if pool is None or not pool.numbers:
            if exposures:
                await batcher.submit(*exposures)
                ledger.recorded(fresh)
            return None, False
        leased = runtime.pools.lease(site.id, pool, view.vid, view.path, outcome.experiments, now,
                                     visit.id if visit else "", network, site.time_zone, shown)
        reply, *_ = await batcher.submit(leased, *exposures)
        ledger.recorded(fresh)
        lease = Lease.from_reply(reply)
        LEASE_COUNTS.count(site.id, pool.id, lease.status)
        if lease.status == "missing":
            runtime.lost_pools(f"{site.id}/{pool.id}")
        if lease.number is None:  # overflowed visitors leave the conversion rates: their mark rides
            batcher.defer(*ledger.overflows(site.id, view.vid, outcome.experiments))  # ahead of any beacon
        return lease, False
    except Exception as exc:  # the page must still get its answer
        log.debug("decision degraded: %s", exc)
        return None, True


def _query(request: Request) -> dict[str, str]:
    """The query parameters (the last of repeated ones), names decoded, values as sent: `_unquote`
    decodes them as Starlette would, where they are needed."""
    params = {}
    for pair in request.scope["query_string"].decode("latin-1").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[name if name.isalnum() else _unquote(name)] = value  # the snippet's are plain words
    return params


# Most page views are a visitor's second, third… page: a URL and a referrer many visitors
# sent before. Each is remembered by the string as sent, so it is neither decoded nor parsed
# again; 4 KB each at most, a small bound keeps a flood harmless. Refusals are not remembered.
@functools.lru_cache(maxsize=4096)
def _requested_address(raw_url: str | None) -> Address:
    url = _cut_address("url", raw_url, required=True)
    assert url is not None
    if not url.startswith(("http://", "https://", "/")):
        raise BadRequest("invalid_url", "url must be an http(s) URL or a path")
    return address(url)


@functools.lru_cache(maxsize=4096)
def _requested_referral(raw_ref: str | None) -> Referral:
    return referral(_cut_address("ref", raw_ref))


def _referring_landing(raw_ref: str | None) -> tuple[Landing, dict[str, str]]:
    """The ad tags of the site's own page that referred a page view which starts a visit. A
    visitor who says yes to tracking on the second page (consent managers ask on every page
    until answered) starts their visit there, referred by the landing page whose address
    carries the campaign; so does each page of a browser that keeps nothing."""
    _, landed, clicked, *_ = address(_cut_address("ref", raw_ref) or "/")
    return landed, clicked


def _unquote(value: str) -> str:
    """`urllib.parse.unquote_plus`, fast on the long percent-encoded page URLs and referrers
    decisions carry (decoding them was a tenth of a decision's CPU; see `percent_decoded`)."""
    if "%" not in value and "+" not in value:
        return value
    raw = percent_decoded(value)
    return unquote_plus(value) if raw is None else raw.decode("utf-8", "replace")


def _checked(name: str, raw: str | None, limit: int, required: bool = False) -> str | None:
    """A parameter's decoded value; None if absent or blank."""
    value = _unquote(raw) if raw else None
    if not value:
        if required:
            raise BadRequest("missing_parameter", f"the {name!r} parameter is required")
        return None
    if len(value) > limit:
        raise BadRequest("parameter_too_long", f"{name!r} is longer than {limit} characters")
    return value


def _cut_address(name: str, raw: str | None, required: bool = False) -> str | None:
    """A page's URL or referrer, decoded and cut to `MAX_URL` characters. Past them is the end of
    a long query (a phrase of 900 words), which no rule reads whole: the page view is not refused
    for it, as the snippet sends the address the page has. The cut leaves no character's
    escapes half there, which would make its query read as another encoding's."""
    value = _checked(name, raw and raw[:RAW_URL], RAW_URL, required)
    if value is None or len(value) <= MAX_URL:
        return value
    value = value[:MAX_URL]
    value = value[:value.rfind("%")] if "%" in value[-2:] else value  # an escape cut short
    tail = _LAST_CHARACTER.search(value)
    if tail and len(tail[0]) // 3 != _UTF8_LENGTH[int(tail[1][1], 16)]:  # a character's bytes cut short
        value = value[:tail.start()]
    return value


def _token(raw: str | None) -> str | None:
    """The visit's token as sent back; one too long to be ours (a page with an address of
    thousands of characters) is no token: the page still gets its answer, in a new visit."""
    return _unquote(raw) if raw and len(raw) <= MAX_VISIT else None


def _preview(site: Site, raw: str | None, path: str) -> dict[str, str] | None:
    """`experiment:variant[,experiment:variant]` pins variants for one page view at `path`. A
    name the site does not have, or an experiment not on that page, is refused, as an unknown
    city is: it shows in the network panel, not as the page the visitor would have seen anyway."""
    if raw is None:
        return None
    pairs = [item.partition(":") for item in raw.split(",")]
    if any(not experiment or not variant for experiment, _, variant in pairs):
        raise BadRequest("invalid_preview", "preview must be experiment:variant[,experiment:variant]")
    experiments = {experiment.id: experiment for experiment in site.experiments}
    for name, _, variant in pairs:
        tested = experiments.get(name)
        if tested is None:
            raise BadRequest("unknown_experiment", f"preview: site {site.id!r} has no experiment {name!r}; "
                                                   f"its experiments: {', '.join(experiments) or 'none'}")
        known = [choice.id for choice in tested.variants]
        if variant not in known:
            raise BadRequest("unknown_variant", f"preview: experiment {name!r} has no variant {variant!r}; "
                                                f"its variants: {', '.join(known)}")
        if not tested.pages.match(path):
            raise BadRequest("not_on_this_page", f"preview: experiment {name!r} runs on "
                                                 f"{', '.join(tested.pages.globs)}, not on {path}")
    return {experiment: variant for experiment, _, variant in pairs}


async def decide_endpoint(request: Request) -> JSON:
    try:  # no coroutine of its own around the decision: a try costs nothing until it catches
        runtime: Runtime = request.app.state.runtime
        rules = runtime.rules
        client = client_host(request.scope)
        now = runtime.now_ms()
        # Counted with this decision's own store commands, which leave in the same batch.
        runtime.decision_limit.admit(client, runtime.store.batcher, now / 1000)
        query = _query(request)
        site = runtime.site(_checked("site", query.get("site"), 64, required=True))
        headers = BrowserHeaders.of(request.scope)
        answer_headers = cors_headers(site, request, headers.origin)
        path, landed, clicked, city, variants = _requested_address(query.get("url"))
        referred = _requested_referral(query.get("ref"))
        vid = _checked("vid", query.get("vid"), MAX_VID)
        if not valid_vid(vid):
            vid = new_vid()  # a lost or mangled cookie must not cost the visitor their page
        assert vid is not None
        previous = visits.read(runtime.signer, _token(query.get("visit")), site.id, vid)
        if previous is None and landed == NO_LANDING and referred.host in site.hosts:
            landed, clicked = _referring_landing(query.get("ref"))
        visit, new = visits.follow(previous, landed, referred, site, now // 1000, clicked)
        arrival = _arrival(*visit.source(site))  # the visit's traffic, on every one of its pages
        place = runtime.geo.placed(visit.place) if visit.place else None
        geo = preview_geo(runtime.geo, city) if city else place or runtime.geo.lookup(client)
        if visit.place is None and geo.country and not city:  # its pages stay where it started, as its number
            visit = visit._replace(place=geo.where)
        seen = _page_view(path, arrival, vid, geo, headers.user_agent, not headers.from_browser)
        # Pinned by the page's address (a preview link), or by an API client's `preview`.
        forced = _preview(site, _checked("preview", query.get("preview"), 512) or variants, path)
        previewing = forced is not None or city is not None
        # Without the visitor's consent (the snippet's data-consent="required"), the id is a
        # throw-away one: the page gets its texts, every experiment's control and no number, and
        # nothing is kept.
        consented = query.get("consent") != "0"
        pinned = forced if forced or consented else site.controls
        outcome, visit = _visit_pool(site, decide(site, seen, pinned), visit)
        # The token carries the visit: the snippet sends it back with the next page view.
        carried = previous.carried if previous and visit is previous.visit else visit.carried()
        visit_answer = {"id": visit.id, "new": new}
        if previewing or not consented:  # a marketer's preview, or nobody we may know: nothing recorded
            if outcome.pool is not None and outcome.pool.numbers and not previewing:
                outcome = outcome._replace(pool=None)  # a number would be kept for them: the page keeps its own
            token = runtime.signer.sign({**token_payload(site, seen, outcome, None, now), "pv": 1}, carried)
            flag = {"preview": True} if previewing else {"consent": False}
            DECISION_COUNTS.count(site.id, "preview" if previewing else "bot" if seen.bot else "answered")
            return JSON({**answer(site, seen, outcome, token, rules.version, preview=previewing, page=query["url"]),
                         "visit": visit_answer, **flag},
                        headers=answer_headers)
        # Nobody waits for the journey: it rides with this decision's round trip, or the next one.
        runtime.store.batcher.defer(*_journey(runtime, site, seen, visit, new, previous, now))
        lease, degraded = await record(runtime, site, seen, outcome, now, visit, runtime.decision_limit.network(client),
                                       (previous.shown or "") if previous else "")
        if degraded and outcome.pool is not None and outcome.pool.numbers:
            outcome = outcome._replace(pool=None)  # the page keeps its own number
        token = runtime.signer.sign(token_payload(site, seen, outcome, lease, now), carried)
        body = answer(site, seen, outcome, token, rules.version, lease, degraded, page=query["url"],
                      shown=previous.shown if previous else None)
        body["visit"] = visit_answer
        DECISION_COUNTS.count(site.id, "bot" if seen.bot else "degraded" if degraded else "answered")
        return JSON(body, headers=answer_headers)
    except HTTPError as exc:  # the snippet and the network panel read why (a preview link's typo)
        _refused(request, exc)
        raise


def _refused(request: Request, exc: HTTPError) -> None:
    """A refused decision: counted for the site it names where that site's own pages asked, or
    where their address was what was refused (a script that names a site counts for none), said
    in the log now and then where it was the address, and answered so that the page can read why."""
    runtime: Runtime = request.app.state.runtime
    named = runtime.rules.sites.get(_unquote(_query(request).get("site", "")))
    origin = BrowserHeaders.of(request.scope).origin
    moved = exc.code == "origin_not_allowed"
    DECISION_COUNTS.count(named.id if named and (moved or origin in named.origins) else "", exc.code)
    if named and moved:
        runtime.now_and_then(f"{named.id}:origin", "decisions of site %r refused to pages of %r, an address not in "
                                                   "its origins: add it if the site is there now (docs/RULES.md)",
                             named.id, (origin or "")[:100])
    exc.headers.update(refusal_headers(named, request, origin))


def _visit_pool(site: Site, outcome: Outcome, visit: Visit) -> tuple[Outcome, Visit]:
    """A visit keeps the pool of its first page that has one: one number for all its pages."""
    if visit.pool is None:
        return outcome, (visit._replace(pool=outcome.pool.id) if outcome.pool else visit)
    if outcome.pool is not None and outcome.pool.id == visit.pool:  # most pages: the same pool again
        return outcome, visit
    kept = site.pool(visit.pool)
    return (outcome._replace(pool=kept), visit) if kept else (outcome, visit._replace(pool=None))


def _journey(runtime: Runtime, site: Site, view: PageView, visit: Visit, new: bool, previous: visits.Previous | None,
             now: int) -> tuple[Command, ...]:
    """What the store learns of the visit: the page on its journey; when the visit starts, its
    record (with the ad click ids of the arrival it is credited to) and, if its number comes
    from another pool, the end of the last visit's hold."""
    if view.bot:
        return ()
    ttl = runtime.settings.visit_days * 86400
    if not new:  # most page views
        return (visits.record(site.id, view.vid, visit, view.path, now, ttl),)
    geo, traffic = view.geo, view.traffic
    record = visits.started(visit, view.path, now, traffic, visit.clicked(site), view.device, geo)
    values = counters.joined(traffic.source, traffic.medium, traffic.campaign, view.phrase, view.path, geo.region,
                             geo.city, view.device, visit.pool)  # as `counters.values(record)`, the phrase read once
    commands = [visits.record(site.id, view.vid, visit, view.path, now, ttl, record),
                counters.visited(site.id, hour_and_day(now, site.time_zone)[1], values,
                                 runtime.settings.report_days * 86400, view.vid),
                *visits.city_names(runtime.geo, geo)]
    last = previous.visit if previous else None
    if last and last.pool and last.pool != visit.pool:
        old = site.pool(last.pool)
        if old and old.numbers:
            commands.append(runtime.pools.let_go(site.id, old, view.vid, now))
    return tuple(commands)
