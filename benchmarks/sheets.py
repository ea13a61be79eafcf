"""What writing a download costs: the biggest tables the service writes, as CSV and as a workbook.

    python benchmarks/sheets.py        # a few seconds

The call log's biggest file (`logs.FILE_ENTRIES` calls, each with its visit: 20 columns) and
a report by two dimensions at its biggest (1,000 rows, 14 columns), written by
`sheets.csv_text` and `sheets.xlsx` (the median of five; the memory the writing takes at its
peak, by tracemalloc, once). Then each is downloaded as a request would download it
(`sheets.download`, which writes in a thread) while the event loop ticks every millisecond,
with the service's switch interval: the longest gap between ticks is what a request that came
meanwhile waited for the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import sys
import time
import tracemalloc

from harness import ROOT, revision, table

sys.path.insert(0, str(ROOT))  # the service package, when run from a clean checkout without `pip install -e`

from service.analytics import logs, sheets
from service.rules.reload import SWITCH_INTERVAL

CALLED = datetime.datetime(2026, 11, 18, 14, 6, 40, tzinfo=datetime.UTC)


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


async def longest_wait(sheet: sheets.Sheet, form: str) -> float:
    """The longest gap between the loop's millisecond ticks while `sheet` is downloaded, ms."""
    done, gaps = False, []

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await sheets.download(sheet, form)
    done = True
    await ticking
    return max(gaps) * 1000


def main() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)
    rows = []
    for sheet in (call_log(), report()):
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
            waits = [asyncio.run(longest_wait(sheet, form)) for _ in range(5)]
            rows.append([f"{sheet.name}, {len(sheet.rows):,} × {len(sheet.columns)}", form, f"{len(written):,}",
                         f"{statistics.median(times):.1f}", f"{peak:.1f}", f"{statistics.median(waits):.1f}"])
    print(f"service at {revision()}")
    print(table(["table", "form", "size", "written, ms", "peak MiB", "the loop's longest wait, ms"], rows))


if __name__ == "__main__":
    main()
