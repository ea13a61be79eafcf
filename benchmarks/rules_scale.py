"""Decision cost with 10,000 rules against 10 rules, and one worker's memory with 10,000 rules.

    python benchmarks/rules_scale.py               # about 4 minutes; the HTTP part needs wrk
    python benchmarks/rules_scale.py --no-http     # in-process only, under a minute after loading
    python benchmarks/rules_scale.py --instructions  # the in-process part in instructions, under callgrind

1. **In process**: both rule sets (`benchmarks/scale_rules.py`; the big one is a superset of the
   small one) are loaded with `service.rules.rulefiles.load`, and the same prepared visits (built by
   `service.front.decide.page_view` from the traffic model: real GeoLite2 addresses, campaign and search
   phrases, a third of them naming one of the generated keyword rules' products, product and
   city pages) are decided by the pure function `service.rules.engine.decide`. The best of several
   interleaved passes counts. Target: 10,000 rules cost ≤ 1.2× 10 rules. With `--instructions`,
   one pass of each runs in a process under valgrind's callgrind (`benchmarks/callgrind.py`),
   and its instructions per decision are counted instead of its time; then the whole decision
   too, each rule set in a process of its own: the application `swapline serve` runs
   (`create_app()`), on a private Valkey, 8 tasks, page views it has not seen (another seed
   than its warm-up's), every one a new visitor.
2. **Over HTTP**: `swapline serve --workers 1` on each rule set in turn, pinned like
   `benchmarks/decide.py`, under the same wrk load of those page views: throughput, latency
   and the worker's CPU per decision; and how long each took from its start to its first
   "ready" (`/readyz`).
3. **Memory**: the RSS of that worker with GeoLite2 City and 10,000 rules after the load
   (target ≤ 200 MB), and, in a separate process, what the per-process caches add when full
   (the GeoIP cache holds up to 65,536 addresses; the caches of phrases and their words fill
   with words nobody searched before, as a worker's do over its life).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvloop
from callgrind import Counter, counted
from harness import (
    LOADGEN_CPUS,
    PINNED,
    ROOT,
    SERVER_CPUS,
    CPUTime,
    Series,
    asgi_scope,
    drive,
    in_process_app,
    revision,
    rss_mb,
    start_service,
    store,
    table,
    with_warmup,
    wrk,
)
from scale_rules import nouns, write_site
from traffic import ORIGIN, PageView, Traffic, decide_path

sys.path.insert(0, str(ROOT))  # the service package, when run from a clean checkout without `pip install -e`
SIZES = (10, 10_000)
TARGET = 1.2


def page_views(count: int, seed: int = 6) -> list[tuple[str, str | None, str, str]]:
    """(url, referrer, ip, user agent) of `count` page views, the same for every rule set."""
    traffic = Traffic(seed)
    words = nouns()
    products = words[: round((max(SIZES) - 10) * 0.6)]  # the nouns that have a keyword rule
    views = []
    for _ in range(count):
        client = traffic.client()
        while client.bot:
            client = traffic.client()
        view = traffic.landing()
        roll = traffic.rng.random()
        if roll < 0.35:  # a product search: «купить абажур» or «абажур цена недорого»
            noun = traffic.rng.choice(products)
            phrase = traffic.rng.choice((f"купить {noun}", f"{noun} цена недорого", f"{noun} купить в москве"))
            view = PageView(f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_term={phrase}", None)
        elif roll < 0.45:  # a phrase no rule names
            view = PageView(f"{ORIGIN}/catalog?utm_term={traffic.rng.choice(words[len(products):])}", None)
        elif roll < 0.65:  # a product page
            view = PageView(f"{ORIGIN}/catalog/item-{traffic.rng.randrange(2000)}", None)
        views.append((view.url, view.ref, client.ip, client.user_agent))
    return views


def in_process(directories: dict[int, Path], views: list[tuple[str, str | None, str, str]],
               passes: int, counter: Counter | None = None) -> dict[str, Any]:
    from service.front.decide import page_view
    from service.rules import rulefiles
    from service.rules.engine import decide
    from service.rules.geo import GeoDB

    geo = GeoDB()
    rng = random.Random(6)
    sites, load_seconds = {}, {}
    for size, directory in directories.items():
        started = time.perf_counter()
        sites[size] = rulefiles.load(directory).sites["scale"]
        load_seconds[size] = time.perf_counter() - started
    visits = [page_view(url, ref, f"bench-visitor-{rng.getrandbits(64):016x}", geo.lookup(ip), agent)
              for url, ref, ip, agent in views]
    for site in sites.values():  # warm every cache (lemmas, places, templates) before timing
        for seen in visits:
            decide(site, seen)
    small, big = min(sites), max(sites)
    # The visits to which no generated rule applies: both rule sets give them the same swaps,
    # so the difference is only what finding the rules costs.
    same = [seen for seen in visits if decide(sites[small], seen).swaps == decide(sites[big], seen).swaps]
    timings = time_decisions(decide, sites, visits, passes, counter)
    same_timings = time_decisions(decide, sites, same, passes, counter)
    candidates = {size: statistics.mean(len(site.rules.candidates(seen)) for seen in visits)
                  for size, site in sites.items()}
    swaps = {size: statistics.mean(len(decide(site, seen).swaps) for seen in visits) for size, site in sites.items()}
    best = {size: min(values) for size, values in timings.items()}
    same_best = {size: min(values) for size, values in same_timings.items()}
    return {
        "visits": len(visits), "passes": passes, "unit": "instructions" if counter else "us",
        "per_decision": {str(size): round(best[size], 2) for size in sites},
        "median_per_decision": {str(size): round(statistics.median(timings[size]), 2) for size in sites},
        "ratio": round(best[big] / best[small], 3), "target": TARGET, "met": best[big] / best[small] <= TARGET,
        "mean_candidates": {str(size): round(value, 2) for size, value in candidates.items()},
        "mean_swaps": {str(size): round(value, 2) for size, value in swaps.items()},
        "load_seconds": {str(size): round(value, 1) for size, value in load_seconds.items()},
        "same_outcome": {"visits": len(same),
                         "per_decision": {str(size): round(same_best[size], 2) for size in sites},
                         "ratio": round(same_best[big] / same_best[small], 3)},
    }


def time_decisions(decide: Any, sites: dict[int, Any], visits: list[Any], passes: int,
                   counter: Counter | None = None) -> dict[int, list[float]]:
    """Microseconds (or, with a `counter`, instructions) per decision of each pass over
    `visits`, the rule sets taking turns.

    Each pass starts without remembered renders or plans: the passes replay the same visits,
    and only repeats within a pass (a popular page and phrase, a big city) stand for real
    traffic's.
    """
    from service.rules.templates import RENDERED

    gc.collect()
    out: dict[int, list[float]] = {size: [] for size in sites}
    for _ in range(passes):
        for size, site in sites.items():
            RENDERED.clear()
            site.forget()
            if counter:
                counter.on()
            started = time.perf_counter()
            for seen in visits:
                decide(site, seen)
            spent = counter.off() if counter else (time.perf_counter() - started) * 1e6
            out[size].append(spent / len(visits))
    return out


def over_http(directories: dict[int, Path], views: list[tuple[str, str | None, str, str]], args: argparse.Namespace,
              work: Path) -> dict[str, Any]:
    rng = random.Random(7)
    crowd = [f"bench{rng.getrandbits(64):016x}xx" for _ in range(1200)]
    lines = [f"GET\t{decide_path(PageView(url, ref), rng.choice(crowd), 'scale')}\t{ip}\t{agent}\t"
             for url, ref, ip, agent in views]
    requests = work / "scale-decide.txt"
    requests.write_text("\n".join(lines) + "\n")
    out: dict[str, Any] = {}
    loadgen = LOADGEN_CPUS if PINNED else None
    with store() as redis_url:
        servers, ready = {}, {}
        try:
            for size, directory in directories.items():
                began = time.monotonic()  # to its first "ready": the rules checked and loaded, the store met
                servers[size] = start_service(redis_url, directory, work, cpus=SERVER_CPUS if PINNED else None,
                                              name=f"rules{size}")
                ready[size] = time.monotonic() - began
                with_warmup(servers[size], {"decide": requests}, args.connections, loadgen)
            series = {size: Series() for size in servers}
            for round_ in range(args.rounds):
                for size in (servers if round_ % 2 == 0 else reversed(list(servers))):
                    series[size].runs.append(wrk(servers[size].base, requests, args.seconds, args.connections,
                                                 f"s{size}{round_}", loadgen, servers[size].worker_pids()))
            for size, server in servers.items():
                median = series[size].median()
                out[str(size)] = {"rps": round(series[size].rps), "p50_ms": round(median.p50_ms, 2),
                                  "p99_ms": round(median.p99_ms, 2),
                                  "cpu_us_per_request": round(series[size].cpu_us, 1),
                                  "errors": series[size].errors, "runs_rps": [round(r.rps) for r in series[size].runs],
                                  "rss_mb": round(rss_mb(server.worker_pids()[0]), 1),
                                  "ready_s": round(ready[size], 1)}
                server.check()
        finally:
            for server in servers.values():
                server.stop()
    small, big = str(min(directories)), str(max(directories))
    out["rps_ratio"] = round(out[small]["rps"] / out[big]["rps"], 3)
    out["cpu_ratio"] = round(out[big]["cpu_us_per_request"] / out[small]["cpu_us_per_request"], 3)
    return out


CACHES = """
import json, random, sys, ipaddress
from pathlib import Path
from service.rules import rulefiles
from service.rules.geo import GeoDB

def rss():
    status = Path('/proc/self/status').read_text().splitlines()
    return int(next(line for line in status if line.startswith('VmRSS')).split()[1]) / 1024
geo = GeoDB()
before_rules = rss()
site = rulefiles.load(Path(sys.argv[1])).sites['scale']
loaded = rss()
rng = random.Random(6)
filled = 0
while geo.lookup.cache_info().currsize < 65536 and filled < 400000:
    filled += 1
    geo.lookup(str(ipaddress.IPv4Address(rng.getrandbits(32))))
geo_full = rss()
# Search phrases, each with a word nobody searched before, until the word caches are full.
from service.rules import words
syllables = ['ба', 'га', 'да', 'лу', 'ко', 'ри', 'ме', 'ну', 'зо', 'ти', 'ше', 'ро', 'ва', 'ля', 'ми', 'пе']
caches = (words.read, words.readings, words._terms)
phrases = 0
while any(cache.cache_info().currsize < cache.cache_info().maxsize for cache in caches) and phrases < 400000:
    phrases += 1
    words.read('купить кондиционер ' + ''.join(rng.choice(syllables) for _ in range(5)))
print(json.dumps({'geoip_and_imports_mb': round(before_rules, 1), 'with_rules_mb': round(loaded, 1),
                  'geo_cache_full_mb': round(geo_full, 1), 'geo_cache_entries': geo.lookup.cache_info().currsize,
                  'phrase_caches_full_mb': round(rss(), 1), 'phrases': phrases}))
"""


def caches(directory: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CACHES, str(directory)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=2000, help="prepared visits (default 2000)")
    parser.add_argument("--passes", type=int, default=7, help="in-process passes per rule set (default 7)")
    parser.add_argument("--seconds", type=float, default=8, help="length of one wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per rule set (default 3)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-http", action="store_true", help="in-process only")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--instructions", action="store_true",
                        help="count the in-process part's instructions under callgrind (one pass each)")
    parser.add_argument("--dumps", type=Path, help=argparse.SUPPRESS)  # set in a process under callgrind
    parser.add_argument("--whole", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dumps:
        return count_in_process(args)
    if PINNED:
        os.sched_setaffinity(0, LOADGEN_CPUS)  # the in-process part runs here too: one core, undisturbed by servers
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "revision": revision()}
    print(f"{report['date']}  service at {report['revision']}")
    views = page_views(args.visits)
    with tempfile.TemporaryDirectory(prefix="swapline-scale-") as tmp:
        work = Path(tmp)
        directories = {size: write_site(work / f"rules-{size}", size).parent for size in SIZES}
        if args.instructions:
            visits = ["--visits", str(args.visits)]
            report["in_process"] = counted(__file__, visits)
            with store() as redis_url:
                report["in_process"]["whole_decision"] = {
                    str(size): counted(__file__, [*visits, "--whole", str(size), "--store", redis_url])
                    for size in SIZES}
        else:
            report["in_process"] = in_process(directories, views, args.passes)
        print_in_process(report["in_process"])
        report["memory"] = caches(directories[max(SIZES)])
        if not args.no_http:
            report["http"] = over_http(directories, views, args, work)
    print_rest(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def count_in_process(args: argparse.Namespace) -> None:
    """Runs in a process under callgrind: the engine alone, one pass of each rule set; with
    `--whole SIZE`, the whole decision with that rule set only (a process of its own, so that
    neither set finds the other's phrases, places and pages already read)."""
    counter = Counter(args.dumps)
    with tempfile.TemporaryDirectory(prefix="swapline-scale-") as tmp:
        if args.whole:
            directory = write_site(Path(tmp) / "rules", args.whole).parent
            figures: Any = uvloop.run(whole_decisions(args.store, directory, Path(tmp), args.visits, counter))
        else:
            directories = {size: write_site(Path(tmp) / f"rules-{size}", size).parent for size in SIZES}
            figures = in_process(directories, page_views(args.visits), 1, counter)
        print(json.dumps(figures))


async def whole_decisions(redis_url: str, rules: Path, work: Path, count: int, counter: Counter) -> float:
    """Instructions per decision of the application with `rules`: `count` page views to warm
    it up, then `count` others (another seed) counted; fails on any answer but an undegraded 200."""
    def requests(seed: int) -> list[tuple[dict[str, Any], bytes]]:
        return [(asgi_scope("GET", "/v1/decide?" + urlencode(
            {"site": "scale", "url": url, "ref": ref or "", "vid": f"w{random.getrandbits(64):016x}"}), [
            (b"x-forwarded-for", ip.encode()), (b"user-agent", agent.encode()),
            (b"origin", ORIGIN.encode()), (b"sec-fetch-mode", b"cors")]), b"")
            for url, ref, ip, agent in page_views(count, seed)]

    app = in_process_app(redis_url, rules, work / "data", counted=True)
    async with app.app.router.lifespan_context(app.app):
        await drive(app, requests(16), 8, CPUTime())  # a first round trip may miss its deadline as it starts
        spent, answers = await drive(app, requests(26), 8, counter)
    if degraded := sum(answer["degraded"] for answer in answers):
        raise SystemExit(f"{degraded} decisions degraded: the store missed its deadline, other code ran")
    return spent


def print_in_process(data: dict[str, Any]) -> None:
    rows = [(f"{int(size):,} rules", data["per_decision"][size], data["median_per_decision"][size],
             data["mean_candidates"][size], data["mean_swaps"][size], data["load_seconds"][size])
            for size in data["per_decision"]]
    print(f"\nin process: service.rules.engine.decide over {data['visits']} prepared visits, "
          f"best of {data['passes']} passes")
    unit = {"us": "us/decision", "instructions": "instructions/decision"}[data.get("unit", "us")]
    print(table(("rules", unit, "median", "candidates", "swaps", "load s"), rows))
    print(f"10,000 / 10 rules: {data['ratio']:.2f}x (target <= {data['target']}x: "
          f"{'met' if data['met'] else 'NOT met'})")
    same = data["same_outcome"]
    print(f"the {same['visits']} visits no generated rule applies to (same swaps with both): "
          f"{same['per_decision']['10']} vs {same['per_decision']['10000']}, {same['ratio']:.2f}x")
    if whole := data.get("whole_decision"):
        print(f"the whole decision in the application, page views it had not seen: {whole['10']:,.0f} vs "
              f"{whole['10000']:,.0f} instructions, {whole['10000'] / whole['10']:.2f}x")


def print_rest(report: dict[str, Any]) -> None:
    memory = report["memory"]
    print(f"\nmemory of one process (no server): imports and GeoLite2 City {memory['geoip_and_imports_mb']} MiB, "
          f"with 10,000 rules {memory['with_rules_mb']} MiB, with the GeoIP cache full "
          f"({memory['geo_cache_entries']} addresses) {memory['geo_cache_full_mb']} MiB, and the phrase caches full "
          f"({memory['phrases']:,} phrases with a word never seen) {memory['phrase_caches_full_mb']} MiB")
    if "http" in report:
        http = report["http"]
        rows = [(f"{int(size):,} rules", http[size]["rps"], http[size]["p50_ms"], http[size]["p99_ms"],
                 http[size]["cpu_us_per_request"], http[size]["errors"], http[size]["rss_mb"], http[size]["ready_s"],
                 http[size]["runs_rps"])
                for size in (str(s) for s in SIZES)]
        print("\nover HTTP: swapline serve --workers 1, GET /v1/decide")
        print(table(("rules", "req/s", "p50 ms", "p99 ms", "CPU us/req", "errors", "RSS MiB", "ready s", "runs req/s"),
                    rows))
        print(f"10,000 / 10 rules: CPU per decision {http['cpu_ratio']:.2f}x, throughput 10 / 10,000 "
              f"{http['rps_ratio']:.2f}x; RSS of the worker with 10,000 rules {http['10000']['rss_mb']} MiB "
              f"(target <= 200 MB)")


if __name__ == "__main__":
    main()
