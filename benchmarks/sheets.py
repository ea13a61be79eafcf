"""What writing a download costs: the biggest tables the service writes, as CSV and as a workbook.

    python benchmarks/sheets.py        # half a minute

The call log's biggest file (`logs.FILE_ENTRIES` calls, each with its visit: 20 columns) and a
report by two dimensions at its biggest (1,000 rows, 14 columns), written by `sheets.csv_text`
and `sheets.xlsx` (the median of five; the memory the writing takes at its peak, by
tracemalloc, once). Then each is downloaded as a request would download it (`sheets.download`,
which lays it out and writes it in a thread) while the event loop ticks every millisecond, with
the service's switch interval: the longest gap between ticks is what a request that came
meanwhile waited for the loop. Then one, and `AT_ONCE`, of the call log's workbook asked for
together, as analysts of a busy site might: the loop's waits meanwhile. Last, the part of a
download that stays in the loop: reading `logs.FILE_ENTRIES` calls from the log of a private
Valkey, a page at a time as a file without `limit` reads them, under the worker's collector
(`service.collector`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import harness
from harness import ROOT, revision, table

sys.path.insert(0, str(ROOT))  # the service package, when run from a clean checkout without `pip install -e`

from service.analytics import logs, sheets
from service.collector import frozen_survivors
from service.rules.reload import SWITCH_INTERVAL
from service.tracking import journal as journal_module
from service.tracking.journal import Journal, LogQuery
from service.tracking.store import Store, connect

AT_ONCE = 4  # analysts downloading together
CALLED = datetime.datetime(2026, 11, 18, 14, 6, 40, tzinfo=datetime.UTC)
SITE = "load"
LOGGED = {"kind": "call", "visitor": "visitor-0000000001", "experiments": {"cta-wording": "free-visit"},
          "call": {"call_id": "call-1", "number": "+78126451714", "pool": "saint-petersburg", "talk_seconds": 95,
                   "status": "completed", "qualified": True, "caller_last_digits": "4567", "credited": True},
          "visit": {"source": "yandex", "medium": "cpc", "campaign": "кондиционеры-лето-2026",
                    "phrase": "купить кондиционер недорого", "click_ids": {"yclid": "7919"},
                    "landing": "/catalog/split",
                    "pages": [{"path": "/catalog/split"}, {"path": "/price"}, {"path": "/contacts"}]}}


def call_log() -> sheets.Sheet:
    rows = [[CALLED, f"call-{n:06d}", "lease", "+78126451714", "saint-petersburg", 95, "completed", True, "4567", True,
             None, f"visitor-{n:016d}", "yandex", "cpc", "кондиционеры-лето-2026", "купить кондиционер недорого",
             f"yclid={n * 7919}", "/catalog/split", "/catalog/split > /price > /contacts", "cta-wording=free-visit"]
            for n in range(logs.FILE_ENTRIES)]
    return sheets.Sheet("calls", [f"column_{n}" for n in range(20)], rows)


def report() -> sheets.Sheet:
    rows = [[f"source-{n % 40}", f"кампания-{n}", 1200 - n, 900 - n // 2, 12, 8, 2, 30, 4, 1, 52, 0.0433, 0.0331,
             0.0565] for n in range(1000)]
    return sheets.Sheet("by-source-campaign", [f"column_{n}" for n in range(14)], rows)


async def loop_waits(job: Callable[[], Awaitable[Any]]) -> list[float]:
    """The gaps between the loop's millisecond ticks while `job` runs, ms, shortest first."""
    done, gaps = False, []

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last) * 1000)
            last = now

    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await job()
    done = True
    await ticking
    return sorted(gaps)


async def longest_wait(job: Callable[[], Awaitable[Any]]) -> float:
    """The longest gap between the loop's millisecond ticks while `job` runs, ms."""
    return (await loop_waits(job))[-1]


async def at_once(count: int) -> tuple[float, list[float]]:
    """`count` downloads of the call log's workbook asked for together: ms until the last is
    written, and the loop's waits meanwhile."""
    async def downloads() -> None:
        await asyncio.gather(*(sheets.download(call_log, "xlsx") for _ in range(count)))

    started = time.perf_counter()
    waits = await loop_waits(downloads)
    return (time.perf_counter() - started) * 1000, waits


def main() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)
    rows = []
    for make in (call_log, report):
        sheet = make()
        for form, write in (("csv", sheets.csv_text), ("xlsx", sheets.xlsx)):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                written = write(sheet)
                times.append((time.perf_counter() - started) * 1000)
            tracemalloc.start()
            write(sheet)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            # A download lays the table out in its thread too: `make` builds the rows again.
            waits = [asyncio.run(longest_wait(functools.partial(sheets.download, make, form))) for _ in range(5)]
            rows.append([f"{sheet.name}, {len(sheet.rows):,} × {len(sheet.columns)}", form, f"{len(written):,}",
                         f"{statistics.median(times):.1f}", f"{peak:.1f}", f"{statistics.median(waits):.1f}"])
    print(f"service at {revision()}")
    print(table(["table", "form", "size", "written, ms", "peak MiB", "the loop's longest wait, ms"], rows))
    for count in (1, AT_ONCE):
        runs = [asyncio.run(at_once(count)) for _ in range(3)]
        took = statistics.median(r[0] for r in runs)
        median, p99, longest = (statistics.median(waits[int(at * (len(waits) - 1))] for _, waits in runs)
                                for at in (0.5, 0.99, 1))
        print(f"{count} call-log workbook(s) asked for at once: the last in {took:,.0f} ms; the loop's waits: "
              f"median {median:.1f} ms, 99th percentile {p99:.1f} ms, longest {longest:.1f} ms (medians of three)")
    with harness.store() as url, frozen_survivors():
        asyncio.run(fill_log(url))
        reads = [asyncio.run(read_log(url)) for _ in range(5)]
    print(f"reading {logs.FILE_ENTRIES:,} calls of the log: {statistics.median(r[0] for r in reads):.0f} ms, "
          f"the loop's longest wait {statistics.median(r[1] for r in reads):.1f} ms (medians of five)")


async def fill_log(url: str) -> None:
    store = Store(connect(url))
    journal, now = Journal(store), int(time.time() * 1000)
    for first in range(0, logs.FILE_ENTRIES, 50):
        await asyncio.gather(*(journal.add(SITE, {**LOGGED, "id": f"call:{n}", "at": now - n, "start": now - n}, now)
                               for n in range(first, first + 50)))
    await store.close()


async def read_log(url: str) -> tuple[float, float]:
    """How long reading the whole log takes as a file reads it, ms, and the loop's longest wait."""
    store = Store(connect(url))
    journal = Journal(store)

    async def every_page() -> None:
        cursor: str | None = None
        for _ in range(logs.FILE_READS):
            page = await journal.page(SITE, LogQuery(None, None, journal_module.MOST, cursor), lambda _: True)
            cursor = page["next"]
            if cursor is None:
                return

    started = time.perf_counter()
    wait = await longest_wait(every_page)
    took = (time.perf_counter() - started) * 1000
    await store.close()
    return took, wait


if __name__ == "__main__":
    main()
