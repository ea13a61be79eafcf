"""Reports by dimension: visits and conversions by source, campaign, search phrase, landing page,
place, device or number pool, or by any two of them (`GET /v1/reports/{site}?by=source,campaign`).

Counted as they happen, by day (service.tracking.counters): a visit as it starts (by the
dimensions of its record), a conversion as it is logged (by its visit's), and each visit's
first conversion of each kind, so a rate is converted visits over visits. Each dimension alone
and each pair has its own hash a day, so a report reads one hash per day of its range, and the
day's numbers of its values, whatever the traffic: its cost grows with the days and the distinct
values, not the visits.
Visitors, each counted once however many visits and days they came on, come from the days'
tables of visits (service.analytics.distinct): their count grows with the visits of the days.

By `page` and by experiment `variant` the rows come from the ledger (service.tracking.ledger),
which counts visitors, not visits: each in the cohort of the page where it first saw the site,
or of the variant it got, by that first day, with the conversions credited to it on any page
since; a rate is converted visitors over visitors, as in the experiment report.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, cast
from urllib.parse import unquote

from service.analytics import distinct, stats
from service.analytics.language import Said
from service.analytics.sheets import Sheet, period
from service.errors import BadRequest, only
from service.rules.engine import Site
from service.rules.phrase import normalise
from service.rules.regions import region_code, region_name
from service.runtime import Runtime
from service.tracking import visits
from service.tracking.counters import DIMENSIONS, NOT_CREDITED, OTHER, counts_key, finds, ids_key, texts_key, unescape
from service.tracking.ledger import SITE, cohorts
from service.tracking.store import Store

KINDS = ("call", "qualified_call", "missed_call", "form", "tel_click", "goal")
DEFAULT_DAYS = 30  # a report without `from` covers the last 30 days
MOST_DAYS = 400
BACKWARDS_OR_FAR = "from must come before to, at most %(days)s days apart"  # as `Said`: the tab's date fields
SORTS = ("visits", "visitors", "converted", "rate", *KINDS)
COHORTS = ("page", "variant")  # from the ledger, each a report of its own
OTHER_BYTES = OTHER.encode()  # number 0, and a number the day's values do not name (they expired first)


class Query:
    """What a report by dimension asks: `by` one or two dimensions, filters on one or two (their
    values), the days, the order and how many rows before "(other)"."""

    def __init__(self, params: Mapping[str, str], today: str) -> None:
        only(params, ("by", *DIMENSIONS, "from", "to", "sort", "limit"))
        self.by = [name.strip() for name in params.get("by", "").split(",") if name.strip()]
        self.filters = {name: params[name] for name in DIMENSIONS if params.get(name)}
        if set(self.by) & set(COHORTS):
            if len(self.by) > 1 or self.filters:
                raise BadRequest("invalid_filter", "by=page and by=variant are reports of their own: no second "
                                                   "dimension, no filter")
        elif not 1 <= len(self.by) <= 2 or len(set(self.by)) != len(self.by) or set(self.by) - set(DIMENSIONS):
            raise BadRequest("invalid_filter", f"by must be one or two of {', '.join(DIMENSIONS)}, or one of "
                                               f"{', '.join(COHORTS)}")
        self.read = sorted({*self.by, *self.filters}, key=[*DIMENSIONS, *COHORTS].index)
        if len(self.read) > 2:
            raise BadRequest("invalid_filter", "by and the filters name at most two dimensions together")
        until = _day(params.get("to")) or datetime.date.fromisoformat(today)
        since = _day(params.get("from")) or datetime.date.fromordinal(max(1, until.toordinal() - DEFAULT_DAYS + 1))
        if not 0 <= (until - since).days < MOST_DAYS:
            raise BadRequest("invalid_filter", Said(BACKWARDS_OR_FAR, days=str(MOST_DAYS)))
        self.days = [(since + datetime.timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]
        self.sort = params.get("sort") or ("visitors" if self.by[0] in COHORTS else "visits")
        if self.sort not in SORTS:
            raise BadRequest("invalid_filter", f"sort must be one of {', '.join(SORTS)}")
        limit = params.get("limit") or "50"
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 1000):
            raise BadRequest("invalid_filter", "limit must be a whole number from 1 to 1000")
        self.limit = int(limit)


Counts = defaultdict[tuple[str, ...], defaultdict[str, int]]  # row → measure → number


async def report(runtime: Runtime, site: Site, query: Query) -> dict[str, Any]:
    """Rows of the dimensions' values, the most (by `query.sort`) first, then one "(other)"."""
    cohort = query.by[0] in COHORTS
    if "city" in (*query.by, *query.filters):
        await visits.learn_city_names(runtime.store, runtime.geo)
    if "city" in query.filters:  # as the site's decisions name it (Москва), or as visits keep it (Moscow)
        query.filters["city"] = runtime.geo.city_kept(query.filters["city"])
    if "region" in query.filters:  # by its name, in Russian or English, or by its code, as visits keep it
        query.filters["region"] = region_code(query.filters["region"]) or query.filters["region"]
    if "phrase" in query.filters:  # as searched or as a row shows it: counted normalised («ё» as «е»)
        query.filters["phrase"] = normalise(query.filters["phrase"])
    counts = await (_cohorts(runtime, site, query) if cohort else _counted(runtime.store, site.id, query))
    rows = [_row(query.by, key, measures) for key, measures in counts.items()]
    visitors = None if cohort else await distinct.visitors(runtime.store, site.id, query.days, query.by,
                                                            query.filters)
    if visitors is not None:
        for row in rows:
            row["visitors"] = visitors.of(row["values"])
    ranked = sorted(zip(rows, counts.values(), strict=True),
                    key=lambda pair: (-_rank(pair[0], query.sort), pair[0]["values"]))
    # The top `limit` values, and calls credited to nobody wherever they rank: no value of the
    # dimension, they are never added up into "(other)".
    listed, folded, shown = [], [], 0
    for row, measures in ranked:
        if NOT_CREDITED in row["values"]:
            listed.append(row)
        elif shown < query.limit:
            listed.append(row)
            shown += 1
        else:
            folded.append(measures)
    if folded:  # the rest, added up
        rest: defaultdict[str, int] = defaultdict(int)
        for measures in folded:
            for measure, number in measures.items():
                rest[measure] += number
        other = _row(query.by, (OTHER,) * len(query.by), rest)
        if visitors is not None:
            other["visitors"] = visitors.besides(row["values"] for row in listed)
        listed.append(other)
    # Places named as the site's decisions name them: a city, a Russian region (RU-TA by its name).
    namers = {"city": runtime.geo.city_in, "region": region_name}
    for at, dimension in enumerate(query.by):
        if named := namers.get(dimension):
            for row in listed:
                row[dimension] = row["values"][at] = named(row[dimension], site.language)
    return {"site": site.id, "by": query.by, "filters": query.filters, "from": query.days[0],
            "to": query.days[-1], "rows": listed}


def _counts() -> Counts:
    return defaultdict(lambda: defaultdict(int))


async def seen(store: Store, site: Site, dimension: str, today: str) -> list[str]:
    """The values of `dimension` in the last 30 days' visits, the most visits first: what a
    filter of it may name."""
    counts = await _counted(store, site.id, Query({"by": dimension}, today))
    return [values[0] for values, _ in sorted(counts.items(), key=lambda row: (-row[1]["v"], row[0]))]  # v: visits


async def _counted(store: Store, site: str, query: Query) -> Counts:
    """Visits and conversions by the dimensions, from the counters of each day."""
    pipe = store.client.pipeline(transaction=False)
    for day in query.days:
        pipe.hgetall(counts_key(site, day, query.read))  # first: the numbers read after it name all its values
        for name in query.read:
            pipe.hgetall(ids_key(site, day, name))
        pipe.hgetall(texts_key(site, day, query.read))
    # A counter's values are in the order of `read`; a row's in the order `by` names them (by
    # phrase,campaign where counters keep campaign,phrase), and a filter's dimension is no row's.
    order = [query.read.index(name) for name in query.by]
    wanted = [(query.read.index(name), finds(name, value)) for name, value in query.filters.items()]
    counted: defaultdict[tuple[bytes, ...], defaultdict[bytes, int]] = defaultdict(lambda: defaultdict(int))
    answers = cast(list[dict[bytes, bytes]], await pipe.execute())
    step = len(query.read) + 2
    for at in range(0, len(answers), step):
        numbered, *numbers, texts = answers[at:at + step]
        named = [{number: value for value, number in day.items()} for day in numbers]
        fields = chain((([names.get(number, OTHER_BYTES) for names, number in zip(named, found, strict=True)],
                         measure, count) for found, measure, count in _fields(numbered)), _fields(texts))
        for found, measure, count in fields:  # bytes until the rows are known: most fields are of a few rows
            if wanted and not all(found_it(found[i]) for i, found_it in wanted):
                continue
            counted[tuple(found[i] for i in order)][measure] += count
    counts = _counts()
    for key, measures in counted.items():
        row = counts[tuple(unescape(value.decode()) for value in key)]
        for measure, number in measures.items():
            row[measure.decode()] = number
    return counts


def _fields(counters: Mapping[bytes, bytes]) -> Iterator[tuple[list[bytes], bytes, int]]:
    """A day's counters as their values, measure and count: "v|…" is visits, "c|KIND|…"
    conversions, "u|KIND|…" converted visits."""
    for field, count in counters.items():
        measure, *found = field.split(b"|")
        if measure != b"v":
            measure, found = measure + b"|" + found[0], found[1:]
        yield found, measure, int(count)


async def _cohorts(runtime: Runtime, site: Site, query: Query) -> Counts:
    """Visitors and conversions by first page, or by experiment variant, from the ledger."""
    by_page = query.by == ["page"]
    counts = _counts()
    ledger = runtime.ledger
    first, last = ledger.window(query.days[0], query.days[-1], runtime.today(site))
    for experiment in [SITE] if by_page else [experiment.id for experiment in site.experiments]:
        for measure, page, variant, kind, number in cohorts(await ledger.counts(site.id, experiment, first, last)):
            if kind is None and measure in ("e", "o"):  # exposed, and overflowed: they could not be credited a call
                named, value = "visitors", number if measure == "e" else -number
            elif measure in ("u", "c") and (kind in KINDS or kind == "any"):
                named, value = f"{measure}|{kind}", number
            else:
                continue
            counts[(unquote(page),) if by_page else (f"{experiment}:{variant}",)][named] += value
    return counts


def _rank(row: Mapping[str, Any], sort: str) -> float:
    return float((row[sort] if sort in row else row["conversions"][sort]) or 0)


def _row(by: Sequence[str], key: tuple[str, ...], measures: Mapping[str, int]) -> dict[str, Any]:
    cohort = "visitors" in measures  # by page or variant: visitors, not visits
    base = measures.get("visitors" if cohort else "v", 0)
    # Days counted before 2026-12-04 counted a converted visit on the day it converted, maybe not its first.
    converted = min(measures.get("u|any", 0), base)
    interval = stats.wilson(converted, base)
    return {**dict(zip(by, key, strict=True)), "values": list(key), "visits": None if cohort else base,
            "visitors": base if cohort else None, "converted": converted,
            "rate": converted / base if base else None,
            "interval": [interval.low, interval.high] if interval else None,
            "conversions": {kind: measures.get(f"c|{kind}", 0) for kind in KINDS},
            "converted_by_kind": {kind: measures.get(f"u|{kind}", 0) for kind in KINDS}}


def sheet(answer: dict[str, Any], site: str) -> Sheet:
    """The report's rows as a table to download (`sheets.download`)."""
    rows = [[*row["values"], row["visits"], row["visitors"], *(row["conversions"][kind] for kind in KINDS),
             row["converted"], row["rate"], *(row["interval"] or (None, None))] for row in answer["rows"]]
    return Sheet(f"{site}-by-{'-'.join(answer['by'])}-{period(answer['from'], answer['to'])}",
                 [*answer["by"], "visits", "visitors", *KINDS, "converted", "rate", "rate_low", "rate_high"], rows)


def _day(given: str | None) -> datetime.date | None:
    if not given:
        return None
    try:
        return datetime.date.fromisoformat(given)
    except ValueError:
        raise BadRequest("invalid_filter", "from and to must be dates: YYYY-MM-DD") from None
