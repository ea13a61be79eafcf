"""The service's own cost per decision, without a server: the real application in this process.

    python benchmarks/in_process.py                          # CPU time; about 40 s
    python benchmarks/in_process.py --passes 6               # more passes, a steadier median
    python benchmarks/in_process.py --instructions           # instructions, under callgrind; about 1 minute
    python benchmarks/in_process.py --instructions --seen    # the same 2,000, each sent once before
    python benchmarks/in_process.py --tree ../old            # another checkout's service, same page views

`benchmarks/decide.py` measures the service as users meet it, uvicorn and the kernel's
sockets included, and on a shared machine those runs spread by 10% or more. This drives
the ASGI application that `swapline serve` runs (`create_app()`: the fast path, the
endpoint, the batcher) on a private Valkey with the decision benchmark's page views (the
Locust suite's traffic model, 20,000 lines: half of them landings that start a visit, half
internal pages that carry their visit's token, collected first as the snippet would), from
32 concurrent tasks as 32 connections would. No HTTP parsing and no sockets but the store's,
so what it prints is the service's own work and moves only when that does.

- **CPU time** of this process (the store is another one): one pass over the file fills the
  memos, then each pass counts. Compare two trees by running each, alternately, several
  times: the spread between runs is still a few per cent, so trust the minimum and the median
  together.
- **Instructions** (`--instructions`, needs valgrind): the process runs under callgrind with
  counting off, the page views fill the memos but for 2,000 of them, never seen, which are
  then counted (4 tasks, so that no round trip outlasts its deadline on valgrind's slow CPU).
  The same count whatever else the machine does, and on page views as cold as a site's.
  With `--seen`, the whole file fills the memos first, so the 2,000 are each the second
  of their kind, as in the CPU passes. Instructions do not weigh what a decision's memory
  costs (its cache misses): two trees that count alike may still differ in CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from callgrind import Counter, counted
from harness import (
    LOAD_RULES,
    ROOT,
    CPUTime,
    Meter,
    asgi_scope,
    decide_path,
    drive,
    in_process_app,
    revision,
    settle,
    store,
    visitors,
    write_decisions,
)
from traffic import Traffic

TASKS = 32
COUNTED = 2000  # page views counted under callgrind
Request = tuple[dict[str, Any], bytes]


def request(line: str) -> Request:
    """What uvicorn would hand the application for one line of a request file, through a trusted proxy."""
    method, target, client, user_agent = line.split("\t")[:4]
    return asgi_scope(method, target, [(b"x-forwarded-for", client.encode()), (b"user-agent", user_agent.encode()),
                                       (b"origin", b"https://load.example"), (b"sec-fetch-mode", b"cors")]), b""


async def page_views(app: Any, work: Path) -> list[Request]:
    """The decision benchmark's page views, each internal one with its visitor's visit token,
    which the crowd's first landings (sent here) give them."""
    traffic = Traffic(seed=6)
    crowd = visitors(traffic, 1200)
    people = [(vid, client) for vid, client in crowd if not client.bot]
    first = [request(f"GET\t{decide_path(traffic.landing(), vid, 'load')}\t{client.ip}\t{client.user_agent}\t")
             for vid, client in people]
    _, answers = await drive(app, first, TASKS, CPUTime())
    tokens = {vid: answer["token"] for (vid, _), answer in zip(people, answers, strict=True)}
    lines = write_decisions(work / "decide.txt", traffic, crowd, 20_000, visits=tokens).read_text().splitlines()
    return [request(line) for line in lines]


async def measure(redis_url: str, work: Path, passes: int, counter: Counter | None, seen: bool = False
                  ) -> list[float]:
    """CPU µs per decision of each pass after the first; or, with `counter`, the instructions
    per decision of the `COUNTED` page views the process had not seen (`seen`: had seen once)."""
    app = in_process_app(redis_url, LOAD_RULES, work / "data", counted=counter is not None)
    async with app.app.router.lifespan_context(app.app):
        views = await page_views(app, work)
        if counter is not None:
            await drive(app, views if seen else views[COUNTED:], TASKS if seen else 4, CPUTime())
            settle(app)
            return [await decided(app, views[:COUNTED], 4, counter)]
        figures = []
        for n in range(passes + 1):
            settle(app)
            spent = await decided(app, views, TASKS, CPUTime())
            if n:  # the first pass fills the memos
                figures.append(spent)
        return figures


async def decided(app: Any, views: list[Request], tasks: int, meter: Meter) -> float:
    """What `meter` measured per page view; fails if any decision degraded (a round trip past its deadline)."""
    spent, answers = await drive(app, views, tasks, meter)
    if degraded := sum(answer["degraded"] for answer in answers):
        raise SystemExit(f"{degraded} decisions degraded: the store missed its deadline, other code ran")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=4, help="measured passes over the request file (default 4)")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    parser.add_argument("--seen", action="store_true", help="with --instructions: count page views sent once before")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose service/ runs (default: this)")
    parser.add_argument("--dumps", type=Path, help=argparse.SUPPRESS)  # set by callgrind.counted
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # this is that process
    args = parser.parse_args()
    if args.measure or args.dumps:
        counter = Counter(args.dumps) if args.dumps else None
        with tempfile.TemporaryDirectory() as tmp, store() as redis_url:
            print(json.dumps(uvloop.run(measure(redis_url, Path(tmp), args.passes, counter, args.seen))))
        return
    # Measured in a process of its own, which imports the tree's service.
    tree = args.tree.resolve()
    where = f"service at {revision(tree)} ({tree})"
    if args.instructions:
        (count,) = counted(__file__, ["--seen"] if args.seen else [], tree)
        print(f"{where}: instructions per decision, in process, over {COUNTED:,} page views"
              f" {'seen once' if args.seen else 'not seen'} before: {count:,.0f}")
        return
    ran = subprocess.run([sys.executable, __file__, "--measure", "--passes", str(args.passes)], check=True,
                         env={**os.environ, "PYTHONPATH": str(tree)}, stdout=subprocess.PIPE, text=True)
    figures = json.loads(ran.stdout.splitlines()[-1])
    print(f"{where}: CPU µs per decision, in process: min {min(figures):.1f}, median {statistics.median(figures):.1f}"
          f" (passes: {', '.join(f'{figure:.1f}' for figure in figures)})")


if __name__ == "__main__":
    main()
