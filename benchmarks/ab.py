"""A/B: the worker's CPU per request of two copies of the service under the same load.

    python benchmarks/ab.py BASE_DIR CANDIDATE_DIR [--rounds 3]

Each directory is a checkout (or a scratch copy) with its own `service/`; both serve
`loadtest/rules` of this checkout on one store (each its own database, and its own visitors'
tokens: `harness.request_files`), pinned to the same core, and take turns under the same wrk
load (decisions, then beacons), so a proposed change to the hot path is measured against the
code it changes, in one run, with the machine's noise shared. Printed: the median CPU per
request and throughput of each, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from harness import (
    LOAD_RULES,
    LOADGEN_CPUS,
    PINNED,
    SERVER_CPUS,
    Result,
    request_files,
    start_service,
    store,
    with_warmup,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if PINNED:
        os.sched_setaffinity(0, LOADGEN_CPUS)
    loadgen = LOADGEN_CPUS if PINNED else None
    with tempfile.TemporaryDirectory(prefix="swapline-ab-") as tmp, store() as redis_url:
        work = Path(tmp)
        servers = []
        try:
            # Each on its own database: one's leases and counts are not the other's.
            for n, (name, root) in enumerate((("base", args.base), ("candidate", args.candidate))):
                servers.append(start_service(f"{redis_url}/{n}", LOAD_RULES, work, name=name, tree=root.resolve(),
                                             cpus=SERVER_CPUS if PINNED else None))
            files = {server.name: request_files(server, work / server.name, mix=False) for server in servers}
            for server in servers:
                with_warmup(server, files[server.name], args.connections, loadgen)
            kinds = files["base"]
            runs: dict[tuple[str, str], list[Result]] = {(s.name, kind): [] for s in servers for kind in kinds}
            for round_ in range(args.rounds):
                for server in servers if round_ % 2 == 0 else servers[::-1]:
                    for kind, file in files[server.name].items():
                        runs[server.name, kind].append(wrk(server.base, file, args.seconds, args.connections,
                                                           f"ab{server.name}{round_}", loadgen, server.worker_pids()))
            for server in servers:
                server.check()
        finally:
            for server in servers:
                server.stop()
    for kind in kinds:
        base, candidate = runs["base", kind], runs["candidate", kind]
        cpu = [statistics.median(run.cpu_us for run in side) for side in (base, candidate)]
        rps = [statistics.median(run.rps for run in side) for side in (base, candidate)]
        errors = [sum(run.errors for run in side) for side in (base, candidate)]
        print(f"{kind}: base {cpu[0]:.0f} us/request, {rps[0]:.0f} req/s; candidate {cpu[1]:.0f} us/request, "
              f"{rps[1]:.0f} req/s; CPU {cpu[1] / cpu[0]:.2f}x, throughput {rps[1] / rps[0]:.2f}x, "
              f"errors {errors[0]} and {errors[1]}")


if __name__ == "__main__":
    main()
