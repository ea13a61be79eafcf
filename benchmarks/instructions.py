"""Instructions the service's process executes per decision and per beacon, under callgrind.

    python benchmarks/instructions.py                      # this tree; about 2 minutes
    python benchmarks/instructions.py --tree ../other      # another checkout of the service, same requests

Wall-clock benchmarks on a shared machine spread by 10% and more between runs; an instruction
count does not: the same requests through the same code give the same count to within half a
per cent, however busy the machine is. This starts `swapline serve` (one worker, uvloop and
httptools, the `load` site on a private Valkey) under valgrind's callgrind with its counting
off, sends the crowd's first page views and the request files once (the memos fill as in a
running service), then counts the process's instructions over the decision file and over
the beacon file, sent one request at a time on one connection. It compares code, not
machines: run it for two trees, one after the other. Needs `valgrind` (Debian's package).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import (
    LOAD_RULES,
    ROOT,
    Server,
    collect_tokens,
    free_port,
    revision,
    store,
    visitors,
    wait_ready,
    write_decisions,
    write_events,
)
from traffic import Traffic

BROWSER = {"Origin": "https://load.example", "Sec-Fetch-Mode": "cors"}  # as requests.lua sends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose service/ runs (default: this)")
    parser.add_argument("--requests", type=int, default=500, help="requests counted of each kind (default 500)")
    parser.add_argument("--keep", type=Path, help="a folder to keep the callgrind dumps in, for callgrind_annotate")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    tree = args.tree.resolve()
    traffic = Traffic(seed=7)
    crowd = visitors(traffic, 300)
    with tempfile.TemporaryDirectory(prefix="swapline-instructions-") as tmp, store() as redis_url:
        work = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")}, "PYTHONPATH": str(tree),
               "SWAPLINE_REDIS_URL": redis_url, "SWAPLINE_RULES_DIR": str(LOAD_RULES), "SWAPLINE_PORT": str(port),
               "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_BEACON_RATE": "1000000000",
               "SWAPLINE_DECISION_RATE": "1000000000", "SWAPLINE_RELOAD_RULES": "0", "SWAPLINE_LOG_LEVEL": "warning",
               "SWAPLINE_CONVERSIONS_PER_VIEW": "1000000000",  # replayed tokens: every conversion counts
               "SWAPLINE_SECRET": "benchmark-secret", "SWAPLINE_DATA_DIR": str(work / "data")}
        log = work / "service.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={work}/callgrind.out",
                 sys.executable, "-m", "service.cli", "serve"], cwd=tree, env=env, stdout=output,
                stderr=subprocess.STDOUT)
        server = Server("service", process, base, log)
        try:
            wait_ready(server, timeout=600)  # slow: the interpreter runs on valgrind's CPU
            visits: dict[str, str] = {}
            tokens = collect_tokens(base, traffic, crowd, visits=visits)
            files = {"decide": write_decisions(work / "decide.txt", traffic, crowd, args.requests, visits=visits),
                     "events": write_events(work / "events.txt", traffic, crowd, tokens, args.requests)}
            for path in files.values():
                send(base, path, "warm")
            warm = len(server.problems())  # starting on valgrind's CPU may time a first round trip out
            counts = {kind: count(process.pid, work, kind, functools.partial(send, base, path, kind), args.keep)
                      for kind, path in files.items()}
            problems = server.problems()[warm:]
        finally:
            server.stop()
    if problems:  # a store round trip past its deadline degrades decisions: other code ran, other counts
        print(f"not comparable: the service logged {len(problems)} problem(s) while counting, e.g. {problems[0]}")
    print(f"service at {revision(tree)} ({tree}): instructions per request, over {args.requests} of each")
    for kind, total in counts.items():
        print(f"{kind:8} {total // args.requests:>10,}")


def count(pid: int, work: Path, kind: str, run: Callable[[], None], keep: Path | None) -> int:
    """The process's instructions while `run` sends its requests; the dump copied into `keep`."""
    control = ["callgrind_control"]
    subprocess.run([*control, "-z", str(pid)], check=True, capture_output=True)
    subprocess.run([*control, "-i", "on", str(pid)], check=True, capture_output=True)
    run()
    subprocess.run([*control, "-i", "off", str(pid)], check=True, capture_output=True)
    before = set(work.glob("callgrind.out.*"))
    subprocess.run([*control, "-d", kind, str(pid)], check=True, capture_output=True)
    (dump,) = set(work.glob("callgrind.out.*")) - before
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(dump, keep / f"callgrind.{kind}")
    totals = next(line for line in dump.read_text(errors="replace").splitlines() if line.startswith("totals:"))
    return int(totals.split()[1])


def send(base: str, path: Path, run: str) -> None:
    """A request file's lines, one at a time on one connection (see requests.lua for the format)."""
    with httpx.Client(base_url=base, timeout=300) as http:
        for n, line in enumerate(path.read_text().splitlines()):
            method, target, client, agent, *body = line.split("\t")
            headers = {"X-Forwarded-For": client, "User-Agent": agent, **BROWSER}
            if method == "GET":
                response = http.get(target, headers=headers)
            else:
                response = http.post(target, content=body[0].replace("{ID}", f"{run}-{n}").encode(),
                                     headers={**headers, "Content-Type": "text/plain;charset=UTF-8"})
            if response.status_code not in (200, 202):
                raise SystemExit(f"{method} {target} answered {response.status_code}: {response.text}")


if __name__ == "__main__":
    main()
