"""Latency at half a worker's capacity, on the reference traffic (issue 20: p99 ≤ 10 ms).

    python benchmarks/latency.py                # about 3 minutes; needs wrk (apt-get install wrk)
    python benchmarks/latency.py --rounds 7     # more paced rounds

One `swapline serve --workers 1` on a private Valkey, and the mix of `benchmarks/decide.py`
(`harness.write_mix`: page views and beacons, new visitors, 3,000 pages, search phrases with
words nobody searched before, crawlers). First its capacity: as many requests a second as
32 connections get answered as fast as they can send them. Then `--rounds` runs at half that
rate: the same 32 connections each wait a random time (exponential, as a crowd's arrivals
are) before each request, with the mean that gives half the capacity, corrected once by a
first paced run. wrk times each request from its sending to its answer; printed are each
round's rate and percentiles, and the median round's p99.

The worker runs on the first core, wrk and the store on the last, as in decide.py.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness import (
    LOAD_RULES,
    LOADGEN_CPUS,
    PINNED,
    SERVER_CPUS,
    Result,
    collect_tokens,
    require_wrk,
    revision,
    start_service,
    store,
    table,
    visitors,
    write_mix,
    wrk,
)
from traffic import Traffic

CONNECTIONS = 32
TARGET_P99_MS = 10.0
WRK_CPUS = LOADGEN_CPUS if PINNED else None  # wrk off the worker's core


def paced(base: str, mix: Path, rate: float, seconds: float, run: str) -> tuple[Result, float]:
    """A run at about `rate` requests a second: each connection waits a mean time that makes
    its requests come at `rate / CONNECTIONS`, that time corrected once by a short first run
    (a connection's cycle is its wait and its answer). The run, and the wait it took."""
    wait = CONNECTIONS / rate * 1000  # ms: as if answers took no time
    first = wrk(base, mix, seconds / 2, CONNECTIONS, f"{run}c", WRK_CPUS, pace_ms=wait)
    wait = max(0.01, wait - (CONNECTIONS / first.rps - CONNECTIONS / rate) * 1000)
    return wrk(base, mix, seconds, CONNECTIONS, run, WRK_CPUS, pace_ms=wait), wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="paced rounds at half the capacity (default 5)")
    parser.add_argument("--seconds", type=float, default=10, help="each round's length (default 10)")
    args = parser.parse_args()
    require_wrk()
    traffic = Traffic(seed=6)
    crowd = visitors(traffic, 1200)
    with tempfile.TemporaryDirectory(prefix="swapline-latency-") as tmp, store() as redis_url:
        work = Path(tmp)
        service = start_service(redis_url, LOAD_RULES, work, cpus=SERVER_CPUS if PINNED else None)
        try:
            visits: dict[str, str] = {}
            tokens = collect_tokens(service.base, traffic, crowd, visits=visits)
            mix = write_mix(work / "mix.txt", traffic, crowd, tokens, visits, 50_000)
            wrk(service.base, mix, 3, CONNECTIONS, "warm", WRK_CPUS)  # memos fill, connections open
            capacity = wrk(service.base, mix, args.seconds, CONNECTIONS, "capacity", WRK_CPUS)
            rounds = [paced(service.base, mix, capacity.rps / 2, args.seconds, f"half{n}") for n in range(args.rounds)]
            service.check()
        finally:
            service.stop()
    print(f"service at {revision()}, one worker, the reference mix, {CONNECTIONS} connections")
    print(f"capacity: {capacity.rps:,.0f} requests/s (p50 {capacity.p50_ms:.2f} ms, p99 {capacity.p99_ms:.2f} ms)")
    rows = [(n + 1, f"{result.rps:,.0f}", f"{result.rps / capacity.rps:.0%}", f"{wait:.2f}", f"{result.p50_ms:.2f}",
             f"{result.p90_ms:.2f}", f"{result.p99_ms:.2f}", result.errors)
            for n, (result, wait) in enumerate(rounds)]
    print(table(("round", "requests/s", "of capacity", "mean wait ms", "p50 ms", "p90 ms", "p99 ms", "errors"), rows))
    p99 = statistics.median(result.p99_ms for result, _ in rounds)
    verdict = "met" if p99 <= TARGET_P99_MS else "NOT met"
    print(f"p99 at half the capacity, median of {args.rounds} rounds: {p99:.2f} ms (target ≤ {TARGET_P99_MS:g} ms:"
          f" {verdict})")


if __name__ == "__main__":
    main()
