"""The conversion log: every call and conversion, with the visit it came from, in arrival order.

One Redis stream per site (`sw:{SITE:log}:entries`, docs/STORAGE.md). Each entry is one
conversion, logged once by its id (a retry, or a conversion replayed from the spool, adds
nothing): a call (answered or missed, credited to a visitor or not), a form, a tel: click or a
goal, with the visitor's variants and visit (source, campaign, phrase, ad click ids, landing
page, the pages seen before it); it is counted by its visit's dimensions as it is logged
(service.tracking.counters). The stream's ids order the log by arrival and are its cursor;
entries older than `SWAPLINE_LOG_DAYS` are trimmed as new ones come. The call and conversion
logs (`GET /v1/calls/{site}`, `GET /v1/conversions/{site}`) read it a bounded slice at a time.

The stream's entries name their conversions only; what each says is kept beside them, in a
hash by conversion id (`sw:{SITE:log}:bodies`), so that an erasure rewrites or deletes it
whole: a stream keeps a deleted entry's bytes while its node holds others. Entries logged
before the bodies were kept apart carry theirs inline (`c`), until the retention drops them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from service.analytics.language import Said
from service.errors import BadRequest
from service.tracking import counters
from service.tracking.clock import DAY_MS, day_start_ms
from service.tracking.store import Script, Store

MOST = 1000  # entries one page may list
SCANNED = 5000  # entries one request reads at most, whatever its filters keep
SCAN_SLICE = 500  # entries read at a time
LOG = Script.named("log", "dims")
CALL_KINDS = frozenset({"call", "missed_call"})


def key(site: str) -> str:
    return f"sw:{{{site}:log}}:entries"


def bodies_key(site: str) -> str:
    return f"sw:{{{site}:log}}:bodies"


Fields = dict[bytes, bytes] | None  # a stream entry's, None for one deleted while a consumer group held it


async def bodies(store: Store, site: str, batch: Sequence[tuple[bytes, Fields]]) -> list[dict[str, Any] | None]:
    """What each entry of a slice of the log's stream says; None for one erased, or past the
    retention."""
    names = [fields[b"i"] for _, fields in batch if fields and b"i" in fields]
    found = dict(zip(names, await store.client.hmget(bodies_key(site), names), strict=True)) if names else {}
    said = [(fields.get(b"c") or found.get(fields.get(b"i", b""))) if fields else None for _, fields in batch]
    return [orjson.loads(body) if body else None for body in said]


def last_call_key(site: str) -> str:
    """When the site's latest call started (ms): a quiet telephony webhook shows there."""
    return f"sw:{{{site}:log}}:last_call"


class Journal:
    def __init__(self, store: Store, retention_days: int = 90, report_days: int = 400, visit_days: int = 7) -> None:
        self.store = store
        self.retention_ms = retention_days * DAY_MS
        # log.lua's first arguments, the same in every call (`ScriptCall.shared`): the counters
        # by dimension live `report_days`; which visits of a day converted is kept while they may,
        # as long as their records (`visit_days`), and a day, as a visit may start before midnight.
        self._logging = (self.retention_ms, counters.MOST_VALUES, report_days * 86_400, counters.NAMES,
                         (visit_days + 1) * 86_400)

    async def add(self, site: str, entry: Mapping[str, Any], now_ms: int, zone: datetime.tzinfo = datetime.UTC
                  ) -> bool:
        """Log one conversion (`entry["id"]`) unless it is already, counted by the days of `zone`
        (the site's); entries past the retention go as new ones come. Whether it was logged now."""
        logged, = await self.store.batcher.submit(LOG(
            (key(site), f"sw:{{{site}:log}}:logged", last_call_key(site), bodies_key(site)),
            (entry["id"], now_ms, orjson.dumps(entry), entry["at"] if entry["kind"] in CALL_KINDS else "",
             *counters.logged(site, entry, zone)), self._logging))
        return bool(logged)

    async def page(self, site: str, query: LogQuery, keeps: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The newest entries `keeps` keeps, from `query.cursor` on, and the cursor of the next page
        (None when the log ends). Reads at most SCANNED entries, so a selective filter may return
        fewer than `limit` with a cursor to go on from."""
        entries: list[dict[str, Any]] = []
        upper, scanned = f"({query.cursor}" if query.cursor else "+", 0
        lower = query.first_id
        while len(entries) < query.limit and scanned < SCANNED:
            batch = await self.store.client.xrevrange(key(site), upper, lower, count=min(SCAN_SLICE, SCANNED - scanned))
            if not batch:
                return {"entries": entries, "next": None}
            read = cast(list[tuple[bytes, Fields]], batch)
            for (stream_id, _), entry in zip(read, await bodies(self.store, site, read), strict=True):
                scanned += 1
                upper = f"({stream_id.decode()}"
                if entry is not None and keeps(entry):
                    entries.append(entry)
                    if len(entries) == query.limit:
                        break
        return {"entries": entries, "next": upper[1:]}


    async def naming(self, site: str, names: Callable[[dict[str, Any]], bool]) -> dict[bytes, dict[str, Any]]:
        """The entries that `names` a person in, by stream id, oldest first. Reads the whole log a
        slice at a time: a person's requests are rare, and may take a while on a long log."""
        return {stream_id: entry for stream_id, entry, _ in await self._found(site, names)}

    async def erase(self, site: str, names: Callable[[dict[str, Any]], bool],
                    kept: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda entry: None) -> int:
        """Erase the entries that `names` a person in: each one `kept` makes anew (a call, counted
        still, without what named them) is rewritten in place, the others are deleted; how many
        were. An entry logged with its body inline is deleted whatever `kept` says."""
        found, client = await self._found(site, names), self.store.client
        for stream_id, entry, inline in found:
            if not inline and (anew := kept(entry)) is not None:
                await client.hset(bodies_key(site), entry["id"], orjson.dumps(anew))
            else:
                await client.xdel(key(site), stream_id)
                await client.hdel(bodies_key(site), entry["id"])
        return len(found)

    async def _found(self, site: str, names: Callable[[dict[str, Any]], bool]
                     ) -> list[tuple[bytes, dict[str, Any], bool]]:
        """`naming`'s entries, each with whether its body is inline."""
        found, lower = [], "-"
        while batch := cast(list[tuple[bytes, Fields]],
                            await self.store.client.xrange(key(site), lower, "+", count=SCAN_SLICE)):
            lower = f"({batch[-1][0].decode()}"
            for (stream_id, fields), entry in zip(batch, await bodies(self.store, site, batch), strict=True):
                if entry is not None and names(entry):
                    found.append((stream_id, entry, bool(fields and b"c" in fields)))
        return found


def _stream_id(text: str) -> bool:
    """Whether `text` is an id the log's stream can page from: two 64-bit numbers, not 0-0."""
    parts = text.split("-")
    numbers = [int(part) for part in parts if part.isascii() and part.isdigit() and len(part) <= 20]
    return len(parts) == len(numbers) == 2 and all(n < 2**64 for n in numbers) and any(numbers)


BACKWARDS = "from must come before to"  # what a reader may pick in a tab's date fields, as `Said`


@dataclass(frozen=True, slots=True)
class LogQuery:
    since_ms: int | None
    until_ms: int | None
    limit: int
    cursor: str | None

    @classmethod
    def parse(cls, params: Mapping[str, str], zone: datetime.tzinfo = datetime.UTC) -> LogQuery:
        """`from` and `to` are days in `zone`, the site's."""
        since, until = _day(params, "from", zone), _day(params, "to", zone, after=True)
        if since is not None and until is not None and since >= until:  # not an empty page, as if there were none
            raise BadRequest("invalid_filter", Said(BACKWARDS))
        limit = params.get("limit") or "100"
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MOST):
            raise BadRequest("invalid_filter", f"limit must be a whole number from 1 to {MOST}")
        cursor = params.get("cursor") or None
        if cursor is not None and not _stream_id(cursor):
            raise BadRequest("invalid_filter", "cursor must be a page's `next`, as it was given")
        return cls(since, until - 1 if until is not None else None, int(limit), cursor)

    @property
    def first_id(self) -> str:
        """The log's oldest stream id an entry of these days may have: one arrives no sooner than
        it happened, and a stream's ids start in 1970."""
        return str(self.since_ms) if self.since_ms is not None and self.since_ms > 0 else "-"

    def keeps_time(self, at_ms: int) -> bool:
        return (self.since_ms is None or at_ms >= self.since_ms) and (self.until_ms is None or at_ms <= self.until_ms)


def _day(params: Mapping[str, str], name: str, zone: datetime.tzinfo, after: bool = False) -> int | None:
    """The first millisecond of a `YYYY-MM-DD` day in `zone`, as reports count days (`after`:
    of the day after it)."""
    given = params.get(name)
    if not given:
        return None
    try:
        day = datetime.date.fromisoformat(given)
    except ValueError:
        raise BadRequest("invalid_filter", f"{name!r} must be a date: YYYY-MM-DD") from None
    start = day_start_ms(day, zone)
    if not after:
        return start
    return day_start_ms(day + datetime.timedelta(days=1), zone) if day < datetime.date.max else start + DAY_MS
