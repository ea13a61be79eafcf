"""Visits: the pages of one arrival, the unit call trackers and analytics tools credit.

A visit starts when the visitor arrives with a new traffic source (an external referrer, UTM
parameters or an ad click id) or after the site's `visits.timeout` without a page view; pages
reached from the site's own origins, and direct loads, continue it. Every page of a visit is
decided with the traffic the visit arrived with (its source, campaign and search phrase) and
where its first page was (GeoIP's place), keeps the visit's number pool, and joins its journey.
A direct visit keeps the visitor's last non-direct source within `visits.lookback` (last
non-direct click), and that arrival's ad click ids with their values for its record (offline
conversions are uploaded by them), unless the site says `attribution: last_click`.

The visit travels with the visitor: the decision token carries it, attached to its payload and
signed with it, and the snippet sends the last token back with the next page view. So a
decision knows its visit without reading the store, and one signature. The attachment is the
same on every page of a visit (from its first page with a number), so a worker parses and
encodes it once a visit, not once a page. The store keeps what call records and logs need
(`record`): the visit as it started, and the pages seen, written in a deferred command that
rides with the next batch to the store (`Batcher.defer`).
"""

from __future__ import annotations

import functools
import hashlib
import random
from typing import Any, NamedTuple, cast

import orjson

from service.rules.engine import Site
from service.rules.geo import Geo, GeoDB, Where
from service.rules.phrase import NO_REFERRAL, Landing, Referral, Traffic, valid_click_id
from service.tracking.store import STORE_ERRORS, Command, Script, Store
from service.tracking.tokens import TokenSigner, attachment, decode, encode

MAX_PAGES = 50  # pages of a visit's journey the store keeps, the latest
NO_LANDING = Landing(None, None, None, None, None, None)
RECORD = Script.named("visit")
ADMIT = Script.named("admit", "capped")


class Credit(NamedTuple):
    """The visitor's last non-direct arrival (a visit's own, or an earlier visit's): what a
    visit is credited to. Times are seconds since the epoch."""

    landing: Landing
    referral: Referral
    at: int
    clicked: dict[str, str]  # its ad click ids with their values (shared: read, never change)


class Visit(NamedTuple):
    """A visit as a decision token carries it. Times are seconds since the epoch."""

    id: str
    started: int
    landing: Landing  # the parameters and referrer it arrived with
    referral: Referral
    pool: str | None = None  # the pool of its number, chosen on its first page with one
    credited: Credit | None = None
    place: Where | None = None  # where GeoIP placed its first page: its pages' rules see it, as they see its pool

    @property
    def direct(self) -> bool:
        return _direct(self.landing, self.referral)

    def source(self, site: Site) -> tuple[Landing, Referral]:
        """The arrival rules and reports see: the visit's own, or for a direct visit under last
        non-direct attribution, the visitor's last non-direct one."""
        if self.direct and self.credited and site.visits.last_non_direct:
            return self.credited.landing, self.credited.referral
        return self.landing, self.referral

    def clicked(self, site: Site) -> dict[str, str]:
        """The ad click ids, with their values, of the arrival `source` gives: its record keeps them."""
        if self.credited and (site.visits.last_non_direct or not self.direct):
            return self.credited.clicked
        return {}

    def carried(self) -> str:
        """The visit as a decision token carries it, attached (`TokenSigner.sign`): the arrival
        it is credited to when that is an earlier visit's (0 for its own), then that arrival's
        click ids when it has any. So a visit from no ad carries what it did before click ids."""
        credit: Any = 0
        clicked: dict[str, str] = {}
        if self.credited:
            landing, referral, when, clicked = self.credited
            if (landing, referral, when) != (self.landing, self.referral, self.started):
                credit = [_listed(landing), _listed(referral), when]
        optional = [credit, clicked, self.place or 0]
        while optional and not optional[-1]:  # what a visit does not have, at the end, is left out
            optional.pop()
        return encode(orjson.dumps([self.id, self.started, _listed(self.landing), _listed(self.referral), self.pool,
                                    *optional]))


class Previous(NamedTuple):
    """The visit the visitor's last decision token brought back."""

    visit: Visit
    seen: int  # its latest page view: when that token was signed
    carried: str  # as the token carries it: the same on every page of the visit, until its pool is chosen
    shown: str | None = None  # the tracking number that page showed, if any


def read(signer: TokenSigner, token: str | None, site: str, vid: str) -> Previous | None:
    """The visit the visitor's last decision token carries, if the token is ours, for this site
    and visitor; anything else (forged, foreign, malformed, older) is no visit, never an error:
    the page view starts one."""
    # Not through the signer's memo: every page view brings a token of its own.
    opened = signer.open(token) if token else None
    if opened is None:
        return None
    payload, carried = opened
    if payload.get("s") != site or payload.get("v") != vid:
        return None
    try:
        shown = payload.get("l")
        return Previous(_visit(carried), _int(payload.get("t")), carried, shown if isinstance(shown, str) else None)
    except (TypeError, ValueError, IndexError):  # signed by us, so only an older format
        return None


def visit_id(verified: str) -> str | None:
    """The id of the visit a token carries that `TokenSigner.verify` has passed; None if none."""
    try:
        return _visit(attachment(verified)).id
    except (TypeError, ValueError, IndexError):
        return None


# A visit's pages bring back the same attachment (signed, so checked before it is read here).
@functools.lru_cache(maxsize=4096)
def _visit(carried: str) -> Visit:
    # What `Visit.carried` leaves out (as tokens signed before click ids did): its own credit, no click ids, no place.
    id_, started, landing, referral, pool, credit, clicked, place = [*orjson.loads(decode(carried)), 0, {}, 0][:8]
    landing, referral = _arrival(_tupled(landing), _tupled(referral))
    credited = None
    if credit:
        credited = Credit(*_arrival(_tupled(credit[0]), _tupled(credit[1])), _int(credit[2]), _clicked(clicked or {}))
    elif landing != NO_LANDING or referral.host is not None:  # a visit from somewhere: credited to itself
        credited = Credit(landing, referral, _int(started), _clicked(clicked or {}))
    return Visit(_text(id_), _int(started), landing, referral, _optional(pool), credited,
                 _where(place) if place else None)


def follow(previous: Previous | None, landed: Landing, referred: Referral, site: Site, now: int,
           clicked: dict[str, str]) -> tuple[Visit, bool]:
    """The visit a page view belongs to, and whether it starts there; `clicked`: the ad click ids
    of the page's address, with their values. A visit that goes on is the previous one itself:
    the token signed for this page view says when it was last seen."""
    internal = referred.host is not None and referred.host in site.hosts
    last = previous.visit if previous else None
    # Traffic the visit did not come with: back on the landing page, its campaign is no news.
    arrived = (landed != NO_LANDING and (last is None or landed != last.landing or clicked != last.clicked(site))) or (
        referred.host is not None and not internal and (last is None or referred != last.referral))
    if previous and not arrived and now - previous.seen <= site.visits.timeout:
        return previous.visit, False
    if internal:  # back after a time-out from one of the site's own pages: a direct visit
        referred = NO_REFERRAL
    credited: Credit | None = Credit(landed, referred, now, clicked)
    if _direct(landed, referred):  # the visitor's last non-direct arrival, if recent
        credited = last.credited if last else None
        if credited and now - credited.at > site.visits.lookback:
            credited = None
    return Visit(_new_id(), now, landed, referred, None, credited), True


def _direct(landed: Landing, referred: Referral) -> bool:
    return landed == NO_LANDING and referred.host is None


def _new_id() -> str:
    """12 hex digits. A visit id need only differ from the visitor's other visits' (tokens are
    signed, keys name the visitor), so it comes from a PRNG, not the kernel, and 48 bits are
    plenty."""
    return random.randbytes(6).hex()


def record(site: str, vid: str, visit: Visit, path: str, now_ms: int, ttl: int,
           started: dict[str, Any] | None = None) -> Command:
    """The command that adds the page to the visit's journey, and keeps the visit's record
    (`started`) when it starts there."""
    prefix = visitor_prefix(site, vid)
    page = orjson.dumps((f"{now_ms} {path}", MAX_PAGES, ttl))  # one argument, not three, as `Pools.lease`'s
    if started:  # the keys are the visitor's own: nothing to pack once (`ScriptCall.shared`)
        return RECORD((f"{prefix}pages:{visit.id}", f"{prefix}visit:{visit.id}"), (page, orjson.dumps(started)), None)
    return RECORD((f"{prefix}pages:{visit.id}",), (page,), None)


def started(visit: Visit, path: str, now_ms: int, shown: Traffic, click_ids: dict[str, str], device: str,
            geo: Geo) -> dict[str, Any]:
    """A visit's record as it starts: `shown` is the traffic it is credited to, `click_ids` that
    arrival's ad click ids, with their values (`Visit.clicked`)."""
    return {
        "id": visit.id, "started": now_ms, "landing": path, "source": shown.source, "medium": shown.medium,
        "campaign": shown.campaign, "content": shown.content, "phrase": shown.phrase, "engine": shown.engine,
        "pool": visit.pool, "click_ids": click_ids, "device": device,
        "geo": {"country": geo.country, "region": geo.region, "city": geo.city},
    }


async def journey(store: Store, site: str, vid: str, visit: str, until_ms: int) -> dict[str, Any] | None:
    """The visit as it started, with the pages seen up to `until_ms`, for a call record; None
    when the store has no such visit (gone past its retention, or leased before visits)."""
    return journey_of(await store.batcher.submit(*reads(site, vid, visit)), until_ms)


def reads(site: str, vid: str, visit: str) -> tuple[Command, Command]:
    """The commands that read a visit's record and pages (`journey_of`)."""
    prefix = visitor_prefix(site, vid)
    return ("GET", f"{prefix}visit:{visit}"), ("LRANGE", f"{prefix}pages:{visit}", 0, -1)


def page_view_conversions(site: str, vid: str, view: str, kind: str) -> str:
    """The set of a page view's conversions of `kind` (`admits`); `view` is its token's MAC."""
    return f"{visitor_prefix(site, vid)}converted:{view}:{kind}"


def admits(key: str, event_id: str, most: int, ttl: int) -> Command:
    """The command that admits a conversion under its page view's cap (admit.lua): its reply is
    1 for one of the first `most` event ids in `key` (`page_view_conversions`), else 0. The set
    lives `ttl` seconds, as the page view's token."""
    return ADMIT((key,), (event_id, most, ttl), None)


def journey_of(replies: list[Any], until_ms: int) -> dict[str, Any] | None:
    """`journey` from the replies to `reads`."""
    started, pages = replies
    if not started:
        return None
    seen = []
    for entry in pages:  # up to 50 a visit, read for every conversion: bytes split, one path decoded
        moment, _, path = bytes(entry).partition(b" ")
        at = int(moment)
        if at <= until_ms:
            seen.append({"at": at, "path": path.decode()})
    record: dict[str, Any] = orjson.loads(started)
    return {**record, "pages": seen}


CITY_NAMES = "sw:city_names"  # English -> Russian, of the cities `GeoDB.learned` found


def city_names(geo: GeoDB, place: Geo) -> tuple[Command, ...]:
    """What the store learns of the names of a visit's city: its Russian name where the
    database and the table reports name cities by differ (`GeoDB.learned`), for every process."""
    learned = geo.learned(place)
    return (("HSET", CITY_NAMES, *learned),) if learned else ()


async def learn_city_names(store: Store, geo: GeoDB) -> None:
    """Learn what the service's visits learnt of cities' names (`city_names`): before naming
    cities in a report, a log or a call. A store that does not answer leaves the names this
    process knows: a call credited a moment before is answered all the same."""
    try:
        known = cast(dict[bytes, bytes], await store.client.hgetall(CITY_NAMES))
    except STORE_ERRORS:
        return
    geo.learn({english.decode(): russian.decode() for english, russian in known.items()})


def city_named(entry: dict[str, Any], geo: GeoDB, language: str) -> dict[str, Any]:
    """A call or conversion with its visit's city named in the site's `language`, as its decisions
    and reports name it (visits keep GeoIP's English name: what the reports' filters match)."""
    visit: dict[str, Any] = entry.get("visit") or {}
    place: dict[str, Any] = visit.get("geo") or {}
    if not place.get("city"):
        return entry
    return {**entry, "visit": {**visit, "geo": {**place, "city": geo.city_in(place["city"], language)}}}


def visitor_prefix(site: str, vid: str) -> str:
    """Of every key kept for one visitor: their hash tag puts them in one slot."""
    return f"sw:{{{site}|{vid}}}:"


def erased(site: str, vid: str) -> str:
    """The mark an erased visitor leaves while their page views' tokens live: a beacon that
    comes with one afterwards is logged nowhere (`service.front.personal`). It names a digest of
    the id, which only someone who has the id can find."""
    return f"sw:{{{site}:erased}}:{hashlib.sha256(vid.encode()).hexdigest()[:32]}"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(value)
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _where(value: Any) -> Where:
    country, region, city = map(_optional, value)
    return country, region, city


def _clicked(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(value)
    # A token signed before click ids were checked may still carry one that is not: not kept.
    return {name: click for name, click in value.items() if valid_click_id(name, _text(click))}


def _listed(fields: tuple[str | None, ...]) -> list[str | None] | int:
    """An arrival's fields in a token; 0 when none is set, as for every direct visit: shorter."""
    return list(fields) if any(fields) else 0


def _tupled(carried: Any) -> tuple[Any, ...]:
    return () if carried == 0 else tuple(carried)


# The same campaigns and referrers come back page after page: each is checked and built once.
@functools.lru_cache(maxsize=4096)
def _arrival(landing: tuple[Any, ...], referral: tuple[Any, ...]) -> tuple[Landing, Referral]:
    landing, referral = landing or (None,) * len(Landing._fields), referral or (None,) * len(Referral._fields)
    if len(landing) != len(Landing._fields) or len(referral) != len(Referral._fields):
        raise ValueError(landing, referral)
    return Landing(*map(_optional, landing)), Referral(*map(_optional, referral))
