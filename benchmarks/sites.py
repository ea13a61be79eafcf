"""A worker's memory as the sites it serves grow.

    python benchmarks/sites.py                        # about a minute
    python benchmarks/sites.py --sites 8 --views 10000
    python benchmarks/sites.py --tree ../old          # another checkout's service

A worker remembers what its sites' rules make of page views (plans, matches, places), so that
the page views that repeat cost a lookup. This loads the load site's rules (`loadtest/rules`)
once per site, as a worker serving that many sites holds them, and decides for each site in
turn the same page views (`service.rules.engine.decide`, the pure function the decision
endpoint calls): landings from the Locust suite's traffic model, each search phrase ending in
a word nobody searched before, from GeoLite2 addresses of its cities. Printed: the process's
anonymous RSS (`RssAnon`, what its own heap holds) over what it held before the first site's
page views, after each site's. A memo bounded per site grows with every busy site; one
bounded per worker stops growing once it is full.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
from pathlib import Path

from harness import LOAD_RULES, ROOT, revision
from traffic import Traffic

SYLLABLES = ["ба", "га", "да", "лу", "ко", "ри", "ме", "ну", "зо", "ти", "ше", "ро", "ва", "ля", "ми", "пе"]


def anonymous_mib() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("RssAnon")).split()[1]) / 1024


def measure(sites: int, views: int) -> list[float]:
    """RssAnon growth, MiB, after each site's page views."""
    from service.front.decide import page_view
    from service.rules import rulefiles
    from service.rules.engine import decide
    from service.rules.geo import GeoDB

    loaded = [rulefiles.load(LOAD_RULES).sites["load"] for _ in range(sites)]
    geo, traffic, rng = GeoDB(), Traffic(seed=3), random.Random(3)
    seen = []
    for n in range(views):
        landed = traffic.landing(word="".join(rng.choice(SYLLABLES) for _ in range(4)))
        client = traffic.client()
        seen.append(page_view(landed.url, landed.ref, f"sites-visitor-{n:08d}", geo.lookup(client.ip),
                              client.user_agent))
    gc.collect()
    before, grown = anonymous_mib(), []
    for site in loaded:
        for view in seen:
            decide(site, view)
        gc.collect()
        grown.append(anonymous_mib() - before)
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=4, help="sites served (default 4)")
    parser.add_argument("--views", type=int, default=20_000, help="page views decided for each site (default 20,000)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose service/ runs (default: this)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # this is that process
    args = parser.parse_args()
    if args.measure:
        print(" ".join(f"{mib:.1f}" for mib in measure(args.sites, args.views)))
        return
    tree = args.tree.resolve()  # measured in a process of its own, which imports the tree's service
    ran = subprocess.run([sys.executable, __file__, "--measure", "--sites", str(args.sites), "--views",
                          str(args.views)], check=True, env={**os.environ, "PYTHONPATH": str(tree)},
                         stdout=subprocess.PIPE, text=True)
    grown = [float(mib) for mib in ran.stdout.split()]
    print(f"service at {revision(tree)} ({tree}): {args.views:,} page views for each site, "
          "the process's RssAnon over what it held before them")
    for n, mib in enumerate(grown, 1):
        print(f"  after {n} site{'s' if n > 1 else ''}: +{mib:.1f} MiB")


if __name__ == "__main__":
    main()
