"""Cost that must not grow with the wrong thing: decisions and calls as a pool, the URLs, the
histories of numbers and callers, and the rules grow.

    python benchmarks/axes.py                       # about 6 minutes
    python benchmarks/axes.py --instructions        # instructions, under callgrind; about 13 minutes
    python benchmarks/axes.py --axis rules          # one axis (or several: --axis pool --axis urls)

Issue 20 asks that pool size, distinct URLs, lease history, caller history and the rules
change what a decision and a call webhook cost by at most 1.2×. Each axis is
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
- **rules**: the site's one rule and the ten base rules of `benchmarks/scale_rules.py`, then
  its 10,000 (the ten and its generated keyword, geo and page rules); every other end has the
  eleven.

With `--instructions` each end runs once, in a process of its own under valgrind's callgrind
(`benchmarks/callgrind.py`), with 300 visitors and 4 tasks (so that no store round trip
outlasts its deadline on valgrind's slow CPU), and the instructions of that process per
request are counted instead: the same whatever else the machine does.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis
import uvloop
from callgrind import Counter, counted
from harness import (
    SECRET,
    CPUTime,
    Meter,
    asgi_scope,
    drive,
    in_process_app,
    store,
    table,
)
from scale_rules import generate

from service.integrations.calls import kept_caller

CALLS_SECRET = "axes-calls-secret-000001"
AXES = {"pool": [(1_000, 1, 0, 0, 10), (100_000, 1, 0, 0, 10)],
        "urls": [(1_000, 10, 0, 0, 10), (1_000, 100_000, 0, 0, 10)],
        "history": [(1_000, 1, 0, 0, 10), (1_000, 1, 1_000, 0, 10)],
        "callers": [(1_000, 1, 0, 0, 10), (1_000, 1, 0, 300, 10)],
        "rules": [(1_000, 1, 0, 0, 10), (1_000, 1, 0, 0, 10_000)]}
LABELS = {"pool": "pool 1,000 → 100,000 numbers", "urls": "10 → 100,000 distinct URLs",
          "history": "0 → 1,000 past leases a number", "callers": "0 → 300 past calls a caller",
          "rules": "11 → 10,001 rules"}
# Numbers in the pool, distinct URLs, past leases a number, past calls a caller, scale_rules' rules
End = tuple[int, int, int, int, int]


class Load:
    """How a run drives the application: its visitors, its concurrent tasks, what it measures with."""

    def __init__(self, visitors: int, tasks: int, meter: Meter) -> None:
        self.visitors, self.tasks, self.meter = visitors, tasks, meter


def rules(numbers: int, more: int) -> str:
    listed = ", ".join(f'"{e164(n)}"' for n in range(numbers))
    generated = generate(more).split("\nrules:\n", 1)[1]  # scale_rules' rules, for any site
    return f"""site: axes
origins: [https://axes.example]
calls: {{secret: {CALLS_SECRET}}}
pools:
  - id: city
    hold: 1h
    overflow: "+7 800 555-00-00"
    numbers: [{listed}]
rules:
  - id: hero
    when: {{keywords: [купить кондиционер]}}
    swap: [{{selector: h1, text: "{{{{ keyword(default='Кондиционеры') }}}} {{{{ city.in }}}}"}}]
{generated}"""


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
    signature = "sha256=" + hmac.new(CALLS_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return asgi_scope("POST", "/v1/calls?site=axes", [(b"content-type", b"application/json"),
                                                      (b"x-swapline-signature", signature.encode())]), raw


def e164(n: int) -> str:
    return f"+7495{n // 10_000:03d}{n // 100 % 100:02d}{n % 100:02d}"  # `rules`' n-th number


def fill_history(redis_url: str, numbers: int, past: int, called: int, visitors: int) -> None:
    """`past` leases of each number and `called` calls of each caller, one a minute before now,
    as lease.lua and call.lua record them (a caller by the keyed hash calls.py keeps)."""
    client, now = redis.Redis.from_url(redis_url), int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n in range(numbers if past else 0):
        pipe.zadd(f"sw:{{axes:city}}:history:{e164(n)}", {f"past-{n}-{k}": now - (k + 1) * 60_000 for k in range(past)})
    caller_key = hmac.new(SECRET.encode(), b"caller numbers", hashlib.sha256).digest()  # as the service keys it
    for n in range(3 * visitors if called else 0):
        hashed, _ = kept_caller(caller_key, caller(n))
        pipe.zadd(f"sw:{{axes:calls}}:caller:{hashed}",
                  {f"before-{n}-{k}": now - (k + 1) * 60_000 for k in range(called)})
    pipe.execute()


def caller(n: int) -> str:
    return f"+7916{n:07d}"


async def measure(redis_url: str, work: Path, end: End, run: int, load: Load, checked: bool = True
                  ) -> tuple[float, float]:
    """The cost per decision and per call with a pool of `numbers`, page views on `urls` URLs,
    `past` leases of each number and `called` calls of each caller before; unless `checked`,
    whatever the answers (the warm-up's first decisions may miss the store's deadline while
    the process fills its memos)."""
    numbers, urls, past, called, more = end
    redis.Redis.from_url(redis_url).flushdb()  # no number held by the visitors of a run before
    fill_history(redis_url, numbers, past, called, load.visitors)
    rules_dir = work / f"rules-{numbers}-{urls}-{past}-{called}-{more}-{run}"
    rules_dir.mkdir()
    (rules_dir / "axes.yaml").write_text(rules(numbers, more))
    app = in_process_app(redis_url, rules_dir, work / "data", counted=isinstance(load.meter, Counter))
    page: Callable[[int], str] = (lambda n: f"/catalog/item-{n % urls}") if urls > 1 else (lambda n: "/")
    async with app.app.router.lifespan_context(app.app):
        vids = [f"axes-r{run}-n{numbers}-u{urls}-{n:08d}" for n in range(load.visitors)]
        views = [(decision(page(view * load.visitors + n), vid, landing=not view), b"")
                 for view in range(6) for n, vid in enumerate(vids)]
        per_decision, answers = await drive(app, views, load.tasks, load.meter)
        held = {answer["phone"]["number"] for answer in answers if (answer["phone"] or {}).get("kind") == "lease"}
        if checked and len(held) != load.visitors:
            raise SystemExit(f"{len(held)} numbers leased to {load.visitors} visitors")
        now = time.time()
        calls = [call(number, n * 3 + k, now + k) for n, number in enumerate(sorted(held)) for k in range(3)]
        per_call, called = await drive(app, calls, load.tasks, load.meter)
        if checked and not all(answer["credited"] for answer in called):
            raise SystemExit("a call was not credited")
    return per_decision, per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    parser.add_argument("--axis", action="append", choices=list(AXES), help="only this axis (default: all)")
    parser.add_argument("--end", help=argparse.SUPPRESS)  # one end counted, in a process under callgrind
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--dumps", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.end:
        return count_end(tuple(map(int, args.end.split(","))), args.store, args.dumps)  # type: ignore[arg-type]
    axes = {axis: AXES[axis] for axis in args.axis or AXES}
    ends = list(dict.fromkeys(end for pair in axes.values() for end in pair))
    with tempfile.TemporaryDirectory() as tmp, store() as base:
        if args.instructions:
            figures = {end: instructions(end, base) for end in ends}
            unit = "instructions"
        else:
            figures = timed(ends, base, Path(tmp), args.rounds)
            unit = "CPU µs"
    rows = []
    for axis, (small, big) in axes.items():
        low, high = figures[small], figures[big]
        rows.append((LABELS[axis], f"{low[0]:,.1f} → {high[0]:,.1f}", f"{high[0] / low[0]:.2f}x",
                     f"{low[1]:,.1f} → {high[1]:,.1f}", f"{high[1] / low[1]:.2f}x"))
    print(table(("axis", f"decision, {unit}", "ratio", f"call, {unit}", "ratio"), rows))


def timed(ends: list[End], base: str, work: Path, rounds: int) -> dict[End, list[float]]:
    """The lowest CPU µs per decision and per call of each end, the ends taking turns."""
    load = Load(visitors=1000, tasks=16, meter=CPUTime())
    best: dict[End, list[float]] = {}
    uvloop.run(measure(base, work, AXES["pool"][0], -1, load, checked=False))  # fills the process's memos
    for run in range(rounds):
        for end in ends:
            figures = uvloop.run(measure(base, work, end, run, load))
            best[end] = [min(old, new) for old, new in zip(best.get(end, figures), figures, strict=True)]
    return best


def instructions(end: End, base: str) -> list[float]:
    """Instructions per decision and per call at `end`, in a process of its own under callgrind."""
    return list(counted(__file__, ["--end", ",".join(map(str, end)), "--store", base]))


def count_end(end: End, base: str, dumps: Path) -> None:
    """Runs in the process under callgrind: a warm-up, then one counted run of `end`."""
    with tempfile.TemporaryDirectory() as tmp:
        uvloop.run(measure(base, Path(tmp), end, -1, Load(300, 4, CPUTime()), checked=False))
        print(json.dumps(uvloop.run(measure(base, Path(tmp), end, 0, Load(300, 4, Counter(dumps))))))


if __name__ == "__main__":
    main()
