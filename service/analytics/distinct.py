"""Visitors by dimension, each counted once however many visits and days they came on.

Every visit is a record of its day's table of visits (service/lua/dims.lua): the number each of
its values goes by that day, then 8 bytes of a hash of its visitor. A report reads the tables of
its days and the numbers of the dimensions it names, and counts the distinct visitors of each
row: exactly (up to a clash of two 64-bit hashes), by one or two dimensions, with filters, in a
thread (service.analytics.tally, with numpy). Its cost grows with the visits of its days, as a
column store's scan does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from service.tracking.counters import DIMENSIONS, RECORD_BYTES, ids_key, prefix, table_key
from service.tracking.store import Store

if TYPE_CHECKING:
    from service.analytics.tally import Visitors

MOST_VISITS = 5_000_000  # a report's days: more is a column store's work (docs/REPORTS.md)


async def visitors(store: Store, site: str, days: Sequence[str], by: Sequence[str],
                   filters: Mapping[str, str]) -> Visitors | None:
    """Who visited on `days` by the values of `by` (one or two dimensions), with `filters`;
    None when some of the days were counted before there were tables of visits, or when the
    days hold more than `MOST_VISITS`."""
    named = [*by, *(name for name in filters if name not in by)]
    pipe = store.client.pipeline(transaction=False)
    for day in days:
        pipe.exists(prefix(site, day) + "values:" + DIMENSIONS[0])  # such a day kept its values in sets
        pipe.strlen(table_key(site, day))
    found = await pipe.execute()
    if any(found[::2]) or sum(found[1::2]) > MOST_VISITS * RECORD_BYTES:
        return None
    for day in days:
        pipe.get(table_key(site, day))  # first: the numbers read after it name all its records
        for dimension in named:
            pipe.hgetall(ids_key(site, day, dimension))
    answers = await pipe.execute()
    step = 1 + len(named)
    days_read = [(cast(bytes | None, answers[at]) or b"", answers[at + 1:at + step])
                 for at in range(0, len(answers), step)]
    from service.analytics import tally  # numpy, only in a worker that counts: see tally's docstring

    return await asyncio.to_thread(tally.count, days_read, named, by, filters)  # numpy lets go of the GIL


