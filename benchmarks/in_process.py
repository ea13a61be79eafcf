"""The service's own CPU per decision, without a server: the real application in this process.

    python benchmarks/in_process.py                 # about 40 s
    python benchmarks/in_process.py --passes 6      # more passes, a steadier median

`benchmarks/decide.py` measures the service as users meet it, uvicorn and the kernel's
sockets included, and on a shared machine those runs spread by 10% or more. This drives
the ASGI application that `swapline serve` runs (`create_app()`: the fast path, the
endpoint, the batcher) on a private Valkey with the same page views (the Locust suite's
traffic model, 20,000 lines), from 32 concurrent tasks as 32 connections would, and reads
this process's CPU time (the store is another process). No HTTP parsing and no sockets but
the store's, so what it prints is the service's own work and moves only when that does.
Compare two trees by running it in each, alternately, several times: the spread between
runs is still a few per cent, so trust the minimum and the median together.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from harness import LOAD_RULES, asgi_scope, store, visitors, write_decisions
from traffic import Traffic

from service.app import create_app
from service.config import Settings
from service.front.fastpath import FastPath

TASKS = 32


def scope(line: str) -> dict[str, Any]:
    """The ASGI scope uvicorn would make of one line of a request file, through a trusted proxy."""
    method, target, client, user_agent = line.split("\t")[:4]
    return asgi_scope(method, target, [(b"x-forwarded-for", client.encode()), (b"user-agent", user_agent.encode()),
                                       (b"origin", b"https://load.example"), (b"sec-fetch-mode", b"cors")])


async def replay(app: FastPath, lines: list[str], passes: int) -> list[float]:
    """CPU µs per request of each pass (after one to warm up); fails on any answer but 200."""
    statuses: dict[int, int] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    async def connection(start: int, count: int) -> None:
        for n in range(start, start + count):
            await app(scope(lines[n % len(lines)]), receive, send)

    each = len(lines) // TASKS
    figures = []
    for n in range(passes + 1):
        gc.collect()
        started = time.process_time()
        await asyncio.gather(*(connection((task * 1000 + n) * 7919, each) for task in range(TASKS)))
        if n:  # the first pass fills the memos
            figures.append((time.process_time() - started) / (each * TASKS) * 1e6)
    if set(statuses) != {200}:
        raise SystemExit(f"not every decision was answered: {statuses}")
    return figures


async def measure(redis_url: str, lines: list[str], passes: int, work: Path) -> list[float]:
    app = create_app(Settings.from_env({  # as benchmarks/harness.py starts `swapline serve`
        "SWAPLINE_REDIS_URL": redis_url, "SWAPLINE_RULES_DIR": str(LOAD_RULES), "SWAPLINE_DATA_DIR": str(work),
        "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_BEACON_RATE": "1000000000",
        "SWAPLINE_DECISION_RATE": "1000000000",  # counted as in production, never refused
        "SWAPLINE_RELOAD_RULES": "0", "SWAPLINE_SECRET": "benchmark-secret",
    }))
    async with app.app.router.lifespan_context(app.app):
        return await replay(app, lines, passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=4, help="measured passes over the request file (default 4)")
    args = parser.parse_args()
    traffic = Traffic(seed=6)
    with tempfile.TemporaryDirectory() as tmp, store() as redis_url:
        work = Path(tmp)
        lines = write_decisions(work / "decide.txt", traffic, visitors(traffic, 1200), 20_000).read_text().splitlines()
        figures = uvloop.run(measure(redis_url, lines, args.passes, work))
    print(f"CPU µs per decision, in process: min {min(figures):.1f}, median {statistics.median(figures):.1f}"
          f" (passes: {', '.join(f'{figure:.1f}' for figure in figures)})")


if __name__ == "__main__":
    main()
