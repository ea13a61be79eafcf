"""Cost that must not grow with the wrong thing: decisions and calls as a pool, the URLs and
the histories of numbers and callers grow.

    python benchmarks/axes.py                       # about 5 minutes

Issue 20 asks that pool size, distinct URLs, lease history and caller history (and the
rules) change what a decision and a call webhook cost by at most 1.2×. Each axis is
measured at both ends, in this process as `benchmarks/in_process.py` measures (the
application `swapline serve` runs, on a private Valkey, driven by 16 concurrent tasks,
without HTTP parsing or sockets), the two ends taking turns over `--rounds` after a run that
warms the process up, the lowest CPU time per request of each counting:

- **pool size**: a pool of 1,000 numbers, then of 100,000. 1,000 new visitors land from a
  search ad (each leases a number) and see five more pages of their visit (the lease
  extended); then each number they hold is called three times (signed `POST /v1/calls`,
  each credited to its holder). Fewer numbers than visitors would measure the overflow.
- **distinct URLs**: the same page views on 10 URLs, then on 100,000 (each seen once).
- **lease history**: the pool of 1,000 numbers again, each number with no past lease, then
  with 1,000 (within the lease window, so none is trimmed): what a call is credited from.
- **caller history**: each caller with no past call, then with 300 within the window that
  makes a caller new (`unique_within`): what tells a target call.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis
import uvloop
from harness import asgi_scope, store, table

from service.app import create_app
from service.config import Settings
from service.front.fastpath import FastPath
from service.integrations.calls import kept_caller

TASKS = 16
SECRET = "axes-calls-secret-000001"
SIGNING = "benchmark-secret"  # SWAPLINE_SECRET, which keys the hashes kept of callers too
VISITORS = 1000


def rules(numbers: int) -> str:
    listed = ", ".join(f'"{e164(n)}"' for n in range(numbers))
    return f"""site: axes
origins: [https://axes.example]
calls: {{secret: {SECRET}}}
pools:
  - id: city
    hold: 1h
    overflow: "+7 800 555-00-00"
    numbers: [{listed}]
rules:
  - id: hero
    when: {{keywords: [купить кондиционер]}}
    swap: [{{selector: h1, text: "{{{{ keyword(default='Кондиционеры') }}}} {{{{ city.in }}}}"}}]
"""


def decision(url: str, vid: str, landing: bool) -> dict[str, Any]:
    """A landing from a search ad, or a page of the visit it started."""
    tagged = "?utm_term=купить+кондиционер" if landing else ""
    query = urlencode({"site": "axes", "url": f"https://axes.example{url}{tagged}", "vid": vid})
    return asgi_scope("GET", f"/v1/decide?{query}", [
        (b"x-forwarded-for", b"81.200.0.1"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0"),
        (b"origin", b"https://axes.example"), (b"sec-fetch-mode", b"cors")])


def call(number: str, n: int, start: float) -> tuple[dict[str, Any], bytes]:
    raw = orjson.dumps({"call_id": f"axes-call-{n:08d}", "called": number, "caller": caller(n),
                        "start": start, "talk_seconds": 45, "status": "completed"})
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return asgi_scope("POST", "/v1/calls?site=axes", [(b"content-type", b"application/json"),
                                                      (b"x-swapline-signature", signature.encode())]), raw


async def drive(app: FastPath, requests: list[tuple[dict[str, Any], bytes]]) -> tuple[float, list[dict[str, Any]]]:
    """CPU µs per request of `requests` sent by TASKS tasks, and the answers; fails on any but 2xx."""
    answers: list[dict[str, Any]] = [{} for _ in requests]

    async def one(index: int) -> None:
        scope, body = requests[index]
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 300:
                raise SystemExit(f"{scope['path']} answered {message['status']}")
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        answers[index] = orjson.loads(b"".join(chunks))

    async def worker(task: int) -> None:
        for index in range(task, len(requests), TASKS):
            await one(index)

    started = time.process_time()
    await asyncio.gather(*(worker(task) for task in range(TASKS)))
    return (time.process_time() - started) / len(requests) * 1e6, answers


def e164(n: int) -> str:
    return f"+7495{n // 10_000:03d}{n // 100 % 100:02d}{n % 100:02d}"  # `rules`' n-th number


def fill_history(redis_url: str, numbers: int, past: int, called: int) -> None:
    """`past` leases of each number and `called` calls of each caller, one a minute before now,
    as lease.lua and call.lua record them (a caller by the keyed hash calls.py keeps)."""
    client, now = redis.Redis.from_url(redis_url), int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n in range(numbers if past else 0):
        pipe.zadd(f"sw:{{axes:city}}:history:{e164(n)}", {f"past-{n}-{k}": now - (k + 1) * 60_000 for k in range(past)})
    caller_key = hmac.new(SIGNING.encode(), b"caller numbers", hashlib.sha256).digest()
    for n in range(3 * VISITORS if called else 0):
        hashed, _ = kept_caller(caller_key, caller(n))
        pipe.zadd(f"sw:{{axes:calls}}:caller:{hashed}",
                  {f"before-{n}-{k}": now - (k + 1) * 60_000 for k in range(called)})
    pipe.execute()


def caller(n: int) -> str:
    return f"+7916{n:07d}"


async def measure(redis_url: str, work: Path, numbers: int, urls: int, past: int, called: int, run: int,
                  checked: bool = True) -> tuple[float, float]:
    """CPU µs per decision and per call with a pool of `numbers`, page views on `urls` URLs,
    `past` leases of each number and `called` calls of each caller before; unless `checked`,
    whatever the answers (the warm-up's first decisions may miss the store's deadline while
    the process fills its memos)."""
    redis.Redis.from_url(redis_url).flushdb()  # no number held by the visitors of a run before
    fill_history(redis_url, numbers, past, called)
    rules_dir = work / f"rules-{numbers}-{urls}-{past}-{called}-{run}"
    rules_dir.mkdir()
    (rules_dir / "axes.yaml").write_text(rules(numbers))
    app = create_app(Settings.from_env({
        "SWAPLINE_REDIS_URL": redis_url, "SWAPLINE_RULES_DIR": str(rules_dir), "SWAPLINE_DATA_DIR": str(work / "data"),
        "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_DECISION_RATE": "1000000000",
        "SWAPLINE_NETWORK_SHARE": "100", "SWAPLINE_RELOAD_RULES": "0", "SWAPLINE_SECRET": SIGNING,
    }))
    page: Callable[[int], str] = (lambda n: f"/catalog/item-{n % urls}") if urls > 1 else (lambda n: "/")
    async with app.app.router.lifespan_context(app.app):
        vids = [f"axes-r{run}-n{numbers}-u{urls}-{n:08d}" for n in range(VISITORS)]
        views = [(decision(page(view * VISITORS + n), vid, landing=not view), b"")
                 for view in range(6) for n, vid in enumerate(vids)]
        per_decision, answers = await drive(app, views)
        held = {answer["phone"]["number"] for answer in answers if (answer["phone"] or {}).get("kind") == "lease"}
        if checked and len(held) != VISITORS:
            raise SystemExit(f"{len(held)} numbers leased to {VISITORS} visitors")
        now = time.time()
        calls = [call(number, n * 3 + k, now + k) for n, number in enumerate(sorted(held)) for k in range(3)]
        per_call, called = await drive(app, calls)
        if checked and not all(answer["credited"] for answer in called):
            raise SystemExit("a call was not credited")
    return per_decision, per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ends = {"pool": [(1_000, 1, 0, 0), (100_000, 1, 0, 0)], "urls": [(1_000, 10, 0, 0), (1_000, 100_000, 0, 0)],
            "history": [(1_000, 1, 0, 0), (1_000, 1, 1_000, 0)], "callers": [(1_000, 1, 0, 0), (1_000, 1, 0, 300)]}
    best: dict[tuple[int, int, int, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, store() as base:
        uvloop.run(measure(base, Path(tmp), 1_000, 1, 0, 0, run=-1, checked=False))  # fills the process's memos
        for run in range(args.rounds):
            for end in dict.fromkeys(end for pair in ends.values() for end in pair):
                figures = uvloop.run(measure(base, Path(tmp), *end, run=run))
                best[end] = [min(old, new) for old, new in zip(best.get(end, figures), figures, strict=True)]
    labels = {"pool": "pool 1,000 → 100,000 numbers", "urls": "10 → 100,000 distinct URLs",
              "history": "0 → 1,000 past leases a number", "callers": "0 → 300 past calls a caller"}
    rows = []
    for axis, (small, big) in ends.items():
        low, high = best[small], best[big]
        label = labels[axis]
        rows.append((label, f"{low[0]:.1f} → {high[0]:.1f}", f"{high[0] / low[0]:.2f}x",
                     f"{low[1]:.1f} → {high[1]:.1f}", f"{high[1] / low[1]:.2f}x"))
    print(table(("axis", "decision µs", "ratio", "call µs", "ratio"), rows))


if __name__ == "__main__":
    main()
