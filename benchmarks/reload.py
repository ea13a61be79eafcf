"""What a reload of 10,000 rules costs the requests a worker serves meanwhile.

    python benchmarks/reload.py                 # about a minute
    python benchmarks/reload.py --rounds 4

A reload loads the new rules in a thread (`service.rules.reload.watch_rules`), which runs
Python beside the event loop. Whenever the loop lets go of the GIL (to wait on its sockets,
or in an RE2 search of a phrase pattern), that thread takes it, and keeps it up to Python's
switch interval. Here the loop ticks every millisecond while a load of 10,000 generated rules
(`benchmarks/scale_rules.py`), kept as the last good ones as the service keeps them
(`service.rules.lastgood`), runs in a thread, and searches the load site's
phrase patterns at every tick, as a request's decision may. As in a worker, what survives a
garbage collection is frozen (`collector.frozen_survivors`), so a collection walks what came
since the last one, not the whole heap. Each round runs twice, in a process of its own: with
Python's switch interval (5 ms) and with the service's (`reload.SWITCH_INTERVAL`). Printed:
the gaps between ticks (what a request waited for the loop), the RE2 searches' times, and how
long the load took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import LOAD_RULES, ROOT, revision, table
from scale_rules import write_site

sys.path.insert(0, str(ROOT))  # the service package, when run from a clean checkout without `pip install -e`

PYTHONS = 0.005  # Python's default switch interval


async def measure(rules: Path) -> dict[str, float]:
    from service.collector import frozen_survivors
    from service.rules import rulefiles
    from service.rules.lastgood import LastGood

    patterns = rulefiles.load(LOAD_RULES).sites["load"].conditions.patterns
    assert patterns is not None
    gaps, searches = [], []
    with frozen_survivors():
        started = time.perf_counter()
        loading = asyncio.create_task(asyncio.to_thread(LastGood(rules.parent / "data").load, rules))
        last = time.perf_counter()
        while not loading.done():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            patterns.search(f"купить кондиционер {len(gaps)}")
            last = time.perf_counter()
            searches.append(last - now)
        loaded = time.perf_counter() - started
    gaps.sort()
    searches.sort()

    def ms(values: list[float], share: float) -> float:
        return values[min(len(values) - 1, int(len(values) * share))] * 1000

    return {"gap_p50": ms(gaps, 0.5), "gap_p99": ms(gaps, 0.99), "gap_max": gaps[-1] * 1000,
            "search_p50": ms(searches, 0.5), "search_p99": ms(searches, 0.99), "load_s": loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each switch interval, taking turns (default 2)")
    parser.add_argument("--rules", type=Path, help=argparse.SUPPRESS)  # this is a measuring process
    parser.add_argument("--interval", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rules:
        sys.setswitchinterval(args.interval)
        print(json.dumps(asyncio.run(measure(args.rules))))
        return
    from service.rules.reload import SWITCH_INTERVAL

    rows = []
    with tempfile.TemporaryDirectory(prefix="swapline-reload-") as tmp:
        rules = write_site(Path(tmp) / "rules", 10_000).parent
        for _ in range(args.rounds):
            for interval in (PYTHONS, SWITCH_INTERVAL):
                ran = subprocess.run([sys.executable, __file__, "--rules", str(rules), "--interval", str(interval)],
                                     check=True, stdout=subprocess.PIPE, text=True)
                got = json.loads(ran.stdout.splitlines()[-1])
                rows.append([f"{interval * 1000:g} ms", *(f"{got[key]:.2f}" for key in (
                    "gap_p50", "gap_p99", "gap_max", "search_p50", "search_p99")), f"{got['load_s']:.1f}"])
    print(f"service at {revision()}: the loop ticking every ms while 10,000 rules load in a thread")
    print(table(("switch interval", "gap p50 ms", "gap p99 ms", "gap max ms", "RE2 p50 ms", "RE2 p99 ms", "load s"),
                rows))


if __name__ == "__main__":
    main()
