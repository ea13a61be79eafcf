"""What keyword matching costs a decision with 10,000 rules: this tree against another.

    python benchmarks/scale_rules.py 10000 /tmp/rules-10k
    git worktree add /tmp/old <commit>           # the tree to compare with
    python benchmarks/keywords.py --rules /tmp/rules-10k --baseline /tmp/old    # about 4 minutes

Each tree runs in a process of its own (they share module names), several times, the trees
taking turns. A run loads the rules, prepares the page views of `rules_scale.page_views` (a
third of them search for a product a rule names, a tenth for one no rule names) and times
`decide(site, page_view(...))` over them: warm, with the phrases already read, and cold, with
every memo of the rules, the phrases and the pages emptied before the pass, as new phrases
arrive. The best pass of a run counts, and the best run of a tree: on a busy machine other work
only ever adds time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure(rules: Path, views: int, passes: int) -> dict[str, Any]:
    import importlib

    from rules_scale import page_views

    from service.front.decide import page_view
    from service.rules import rulefiles
    from service.rules.engine import decide
    from service.rules.geo import GeoDB

    started = time.perf_counter()
    site = rulefiles.load(rules).sites["scale"]
    loaded = time.perf_counter() - started
    geo = GeoDB()
    prepared = [(url, ref, geo.lookup(ip), agent) for url, ref, ip, agent in page_views(views)]
    memos = [value for name in ("service.rules.phrase", "service.rules.words", "service.rules.templates",
                                "service.front.decide")
             if importlib.util.find_spec(name)
             for value in vars(importlib.import_module(name)).values() if hasattr(value, "cache_clear")]

    def one_pass(cold: bool) -> float:
        if cold:
            for memo in memos:
                memo.cache_clear()
            site.forget()
        gc.collect()
        began = time.process_time()
        for n, (url, ref, place, agent) in enumerate(prepared):
            decide(site, page_view(url, ref, f"bench-{n:08d}", place, agent))
        return (time.process_time() - began) / len(prepared) * 1e6

    one_pass(cold=False)
    warm = [one_pass(cold=False) for _ in range(passes)]
    cold = [one_pass(cold=True) for _ in range(passes)]
    return {"load_s": loaded, "warm_us": min(warm), "cold_us": min(cold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, required=True, help="a rules folder (benchmarks/scale_rules.py)")
    parser.add_argument("--baseline", type=Path, help="another checkout of the service (required)")
    parser.add_argument("--views", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree, taking turns")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.rules.resolve(), args.views, args.passes)))
        return
    if args.baseline is None:
        parser.error("--baseline is required")
    trees = {"baseline": args.baseline.resolve(), "this tree": ROOT}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT / "benchmarks")])}
            command = [sys.executable, __file__, "--measure", "--rules", str(args.rules), "--views", str(args.views),
                       "--passes", str(args.passes)]
            output = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(output.splitlines()[-1]))
    print("| tree | load, s | warm µs/decision | cold µs/decision |\n|---|---|---|---|")
    best = {name: {key: min(run[key] for run in found) for key in ("load_s", "warm_us", "cold_us")}
            for name, found in runs.items()}
    for name, found in runs.items():
        cells = [f"{best[name][key]:.1f} (runs {', '.join(f'{run[key]:.1f}' for run in found)})"
                 for key in ("load_s", "warm_us", "cold_us")]
        print(f"| {name} | {' | '.join(cells)} |")
    for key in ("load_s", "warm_us", "cold_us"):
        print(f"{key}: this tree / baseline = {best['this tree'][key] / best['baseline'][key]:.3f} (best runs)")

if __name__ == "__main__":
    main()
