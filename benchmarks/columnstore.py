"""The visits of benchmarks/scale.py in a column store: what reports by two dimensions, with
their visitors, cost there, beside the service's own tables of visits in Valkey.

    pip install chdb                               # ClickHouse in process; not a dependency of the service
    python benchmarks/columnstore.py               # 1,000,000 visits; about a minute

The service counts visitors from a table of visits a day in Valkey, scanned with numpy
(service.analytics.distinct; docs/PERFORMANCE.md, "Reports at scale"). This loads the same
visits (`scale.visit_record`, the same seed) into a ClickHouse MergeTree table and times the
reports that need them: medians of five.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service, from a clean checkout

from scale import DAY_MS, FIRST, visit_record

TABLE = """CREATE TABLE sw.visits (started DateTime, visitor String, source LowCardinality(String),
    medium LowCardinality(String), campaign LowCardinality(String), phrase String, landing LowCardinality(String),
    region LowCardinality(String), city LowCardinality(String), device LowCardinality(String))
    ENGINE = MergeTree ORDER BY (toDate(started), source)"""
QUERIES = {
    "by source and phrase, exact visitors": "SELECT source, phrase, count() AS visits, uniqExact(visitor) "
                                            "FROM sw.visits GROUP BY source, phrase ORDER BY visits DESC LIMIT 50",
    "by source and phrase, uniq visitors": "SELECT source, phrase, count() AS visits, uniq(visitor) "
                                           "FROM sw.visits GROUP BY source, phrase ORDER BY visits DESC LIMIT 50",
    "by campaign, source = yandex": "SELECT campaign, count() AS visits, uniqExact(visitor) FROM sw.visits "
                                    "WHERE source = 'yandex' GROUP BY campaign ORDER BY visits DESC LIMIT 50",
    "by landing and device, every row": "SELECT landing, device, count(), uniqExact(visitor) FROM sw.visits "
                                        "GROUP BY landing, device",
    "by phrase and city, one week": "SELECT phrase, city, count() AS visits, uniqExact(visitor) FROM sw.visits "
                                    "WHERE started >= '2026-11-05' AND started < '2026-11-12' "
                                    "GROUP BY phrase, city ORDER BY visits DESC LIMIT 50",
}


def write_visits(path: Path, visits: int, seed: int = 11) -> None:
    rng, per_day = random.Random(seed), visits // 30
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        for n in range(visits):
            day = min(29, n // per_day)
            visit = visit_record(rng, n, day)
            when = FIRST + day * DAY_MS + rng.randrange(DAY_MS - 60_000)
            writer.writerow([when // 1000, f"visitor-{n:08d}", visit["source"] or "", visit["medium"],
                             visit["campaign"] or "", visit["phrase"] or "", visit["landing"], visit["geo"]["region"],
                             visit["geo"]["city"], visit["device"]])


def main() -> None:
    from chdb import session

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        visits = Path(tmp) / "visits.csv"
        write_visits(visits, args.visits)
        db = session.Session(str(Path(tmp) / "db"))
        db.query("CREATE DATABASE sw")
        db.query(TABLE)
        started = time.perf_counter()
        db.query(f"INSERT INTO sw.visits SELECT * FROM file('{visits}', CSV)")
        db.query("OPTIMIZE TABLE sw.visits FINAL")
        stored = int(db.query("SELECT sum(data_compressed_bytes) FROM system.parts "
                              "WHERE table = 'visits' AND active", "CSV").bytes())
        print(f"{args.visits:,} visits loaded in {time.perf_counter() - started:.1f} s: {stored / 2**20:.1f} MiB "
              f"compressed, {stored / args.visits:.1f} bytes a visit")
        for name, query in QUERIES.items():
            times, rows = [], 0
            for _ in range(5):
                started = time.perf_counter()
                rows = len(db.query(query, "CSV").bytes().splitlines())
                times.append(time.perf_counter() - started)
            print(f"{name:40s} {statistics.median(times) * 1000:6.0f} ms  {rows} rows")


if __name__ == "__main__":
    main()
