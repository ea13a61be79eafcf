"""A cold visitor's wait: from a decision request's start to its answer, as the snippet sees it.

    python benchmarks/cold.py                   # about 30 s
    python benchmarks/cold.py --requests 500
    python benchmarks/cold.py --instructions    # in process, under callgrind; about a minute
    python benchmarks/cold.py --instructions --tree ../old    # another checkout's service
    python benchmarks/cold.py --instructions --inside service.rules.words:read    # only within a function
    python benchmarks/cold.py --profile         # in process, under cProfile: where the difference goes

The service runs `swapline serve` (one worker) on the `load` site and a private Valkey, the
bare Starlette endpoint (`benchmarks/bare.py`) beside it under the same uvicorn settings.
Each gets the same number of requests one after the other (a quiet service, no queueing),
each on a connection of its own, as a first page view's fetch opens one. Every request of
the service is a visitor it has never seen, landing from a Yandex ad, from a Moscow address
through a trusted proxy. Its search phrase is one nobody has searched before, of four kinds
(so no memo answers: the phrase is normalised and lemmatised, its texts rendered, a number
leased): with a word no dictionary has («бебабаба»), the headline; with a word of the site's
keywords mistyped («кандиционеры», which the typo index corrects); with another word mistyped;
and of dictionary words only, in a phrase of their own. Then as many new visitors with a
phrase searched before. It prints the percentiles of each and their ratios, wall-clock time on
the client, and each server's CPU per request.

With `--profile`, the same decisions in process under cProfile: where a never-seen phrase's
decision spends what a known one does not, function by function (inclusive time per decision,
the profiler's own cost in it: read the shares, not the microseconds).

With `--instructions`, the same decisions go to the application in this process (as
`benchmarks/in_process.py` drives it, no HTTP), under valgrind's callgrind: the instructions
per decision of each kind and with a known phrase, which do not move with the
machine as CPU time does (on a 2-core machine shared with other work, the CPU figures above
are ticks of 10 ms over the requests, and spread by a third between runs). With `--inside`,
only the instructions within the calls of those functions, one count each: where the
difference goes.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import itertools
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import orjson
import uvloop
from callgrind import Counter, counted
from harness import (
    LOAD_RULES,
    ROOT,
    CPUTime,
    Meter,
    Server,
    asgi_scope,
    cpu_seconds,
    drive,
    in_process_app,
    revision,
    settle,
    start_bare,
    start_service,
    store,
    table,
)

MOSCOW = "46.242.0.1"  # GeoLite2: Moscow
HEADERS = {"X-Forwarded-For": MOSCOW, "Origin": "https://load.example", "Sec-Fetch-Mode": "cors",
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"}


SYLLABLES = [consonant + vowel for consonant in "бвгдзклмнпрст" for vowel in "аеиоу"]  # as requests.lua's
NOUNS = (Path(__file__).with_name("data") / "nouns.txt").read_text(encoding="utf-8").split()
# Words of the load site's keywords, as visitors type them: each is mistyped in its own ways.
KEYWORD_FORMS = ("кондиционер", "кондиционеры", "кондиционера", "кондиционеров", "кондиционерами", "установка",
                 "установку", "обслуживание", "обслуживания", "заправка", "заправку", "мобильный", "мобильные",
                 "система", "системы")
KNOWN_PHRASE = "купить кондиционер недорого"


def made_up_word(n: int) -> str:
    """The `n`th Russian-looking word of four syllables: one no dictionary and nobody has seen."""
    return "".join(SYLLABLES[n // len(SYLLABLES) ** place % len(SYLLABLES)] for place in range(4))


def typos(word: str) -> list[str]:
    """A word with two neighbouring letters swapped, with one left out, and with one doubled,
    at each place."""
    return [*(word[:at] + word[at + 1] + word[at] + word[at + 2:] for at in range(len(word) - 1)),
            *(word[:at] + word[at + 1:] for at in range(len(word))),
            *(word[:at] + word[at] + word[at:] for at in range(len(word)))]


def noun(n: int) -> str:
    return NOUNS[n * 37 % len(NOUNS)]  # spread over the alphabet


KEYWORD_TYPOS = [typo for typo in dict.fromkeys(itertools.chain(*itertools.zip_longest(*map(typos, KEYWORD_FORMS))))
                 if typo and typo not in KEYWORD_FORMS]
# Phrases nobody has searched before, the nth of each kind: a word no dictionary has, a
# keyword's word mistyped (the site's typo index corrects it), another word mistyped, and
# dictionary words in a phrase of their own.
NEVER_SEEN: dict[str, Callable[[int], str]] = {
    "a new word": lambda n: f"купить кондиционер {made_up_word(n % len(SYLLABLES) ** 4)}",
    "a keyword mistyped": lambda n: f"купить {KEYWORD_TYPOS[n % len(KEYWORD_TYPOS)]}",
    "another word mistyped": lambda n: f"купить кондиционер {typos(noun(n))[len(noun(n)) // 2]}",  # swapped mid-word
    "words it knows": lambda n: f"купить кондиционер {noun(n)}",
}


def cold_path(n: int, phrase: str) -> str:
    """A new visitor from an ad, searching `phrase`. Each ad click carries its own click id, as
    Yandex Direct's do, so the page's address is new either way: only the phrase is known or not."""
    url = "https://load.example/?" + urlencode({"utm_source": "yandex", "utm_medium": "cpc", "utm_term": phrase,
                                                "yclid": f"{7_000_000_000_000 + n}"})
    return "/v1/decide?" + urlencode({"site": "load", "url": url, "vid": f"cold-visitor-{n:012d}"})


def paths(requests: int) -> dict[str, list[str]]:
    """Each kind's requests, and as many with the known phrase (second, as it always came: the
    memos and the store as 200 new visitors leave them); each request a new visitor."""
    if requests > len(KEYWORD_TYPOS):  # a typo searched again would be one the memos know
        raise SystemExit(f"--requests: at most {len(KEYWORD_TYPOS)}, the typos of the keywords' words made here")
    made = {kind: [cold_path(number * requests + n, phrase(n)) for n in range(requests)]
            for number, (kind, phrase) in enumerate(NEVER_SEEN.items())}
    known = [cold_path(len(made) * requests + n, KNOWN_PHRASE) for n in range(requests)]
    first, *others = made.items()
    return dict([first, ("known", known), *others])


def waits(base: str, paths: list[str]) -> list[float]:
    """Milliseconds from each request's start (its connection's too) to its whole answer, one
    after the other. The standard library's client: it costs the measure almost nothing."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    figures = []
    for path in paths:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(host or "", port, timeout=30)  # a connection of its own
        connection.request("GET", path, headers=HEADERS)
        response = connection.getresponse()
        body = response.read()
        figures.append((time.perf_counter() - started) * 1000)
        connection.close()
        if response.status != 200 or orjson.loads(body).get("degraded"):
            raise SystemExit(f"{base}{path} answered {response.status}: {body[:300]!r}")
    return figures


def series(server: Server, paths: list[str]) -> dict[str, float]:
    """The waits' percentiles, and the server's own CPU µs per request (from /proc: steady
    where the machine's other work moves the waits)."""
    pids = server.worker_pids()
    before = sum(map(cpu_seconds, pids))
    cuts = statistics.quantiles(waits(server.base, paths), n=100, method="inclusive")
    cpu = (sum(map(cpu_seconds, pids)) - before) / len(paths) * 1e6
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "cpu": cpu}


class Profiled:
    """A meter that profiles each run it measures: the inclusive seconds of every function."""

    def __init__(self) -> None:
        self.runs: list[dict[str, float]] = []

    def on(self) -> None:
        self._profile = cProfile.Profile()
        self._profile.enable()

    def off(self) -> float:
        self._profile.disable()
        stats = pstats.Stats(self._profile).stats  # type: ignore[attr-defined]
        self.runs.append({f"{Path(file).name}:{line}({name})": inclusive
                          for (file, line, name), (_, _, _, inclusive, _) in stats.items()})
        return 0.0  # what it measured is in `runs`


def profiled(requests: int, top: int) -> list[list[str]]:
    """The functions a never-seen phrase's decision (a new word) spends most more time in than a known one's."""
    meter = Profiled()
    made = paths(requests)
    with tempfile.TemporaryDirectory() as tmp, store() as redis_url:
        uvloop.run(count(redis_url, Path(tmp), {"a new word": made["a new word"], "known": made["known"]}, meter))
    never, known = meter.runs
    more = sorted(((never.get(name, 0.0) - known.get(name, 0.0), name) for name in never.keys() | known.keys()),
                  reverse=True)
    return [[name, f"{never.get(name, 0.0) / requests * 1e6:.1f}", f"{known.get(name, 0.0) / requests * 1e6:.1f}",
             f"{spent / requests * 1e6:.1f}"] for spent, name in more[:top]]


async def count(redis_url: str, work: Path, kinds: dict[str, list[str]], counter: Meter) -> dict[str, float]:
    """Instructions per decision of each kind's requests in turn, in process."""
    headers = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]
    app = in_process_app(redis_url, LOAD_RULES, work / "data", counted=True)
    async with app.app.router.lifespan_context(app.app):
        warming = [cold_path(-n, NEVER_SEEN["a new word"](-n)) for n in range(1, 21)]
        await drive(app, [(asgi_scope("GET", path, headers), b"") for path in warming], 1, CPUTime())
        figures = {}
        for kind, requested in kinds.items():
            settle(app)
            figures[kind], answers = await drive(app, [(asgi_scope("GET", path, headers), b"") for path in requested],
                                                 1, counter)
            if any(answer["degraded"] for answer in answers):
                raise SystemExit("a decision degraded: the store missed its deadline, other code ran")
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind (default 200)")
    parser.add_argument("--instructions", action="store_true", help="count instructions in process instead")
    parser.add_argument("--tree", type=Path, default=ROOT, help="with --instructions: the checkout whose service/ runs")
    parser.add_argument("--inside", nargs="+", default=[], metavar="MODULE:FUNCTION",
                        help="with --instructions: count only within these functions' calls, each on its own")
    parser.add_argument("--profile", type=int, nargs="?", const=40, metavar="TOP",
                        help="profile in process instead: the TOP functions (default 40) a new phrase costs more in")
    parser.add_argument("--dumps", type=Path, help=argparse.SUPPRESS)  # set in the process under callgrind
    args = parser.parse_args()
    if args.dumps:
        with tempfile.TemporaryDirectory() as tmp, store() as redis_url:
            counter = Counter(args.dumps)
            for function in args.inside:
                counter.only_inside(function)
            print(orjson.dumps(uvloop.run(count(redis_url, Path(tmp), paths(args.requests), counter))).decode())
        return
    if args.profile:
        print(f"service at {revision()}: inclusive µs per cold visitor's decision under cProfile, in process,"
              f" {args.requests} each; never seen: a new word")
        print(table(["function", "never seen", "known", "more"], profiled(args.requests, args.profile)))
        return
    if args.instructions:
        tree = args.tree.resolve()
        arguments = ["--requests", str(args.requests)]
        figures = counted(__file__, arguments, tree)
        print(f"service at {revision(tree)}: instructions per cold visitor's decision, in process,"
              f" {args.requests} each")
        print(table(["a phrase", "instructions", "/ known"], [
            [f"never seen: {kind}" if kind in NEVER_SEEN else kind, f"{value:,.0f}",
             f"{value / figures['known']:.2f}×"] for kind, value in figures.items()]))
        if args.inside:
            rows = []
            for function in args.inside:
                within = counted(__file__, [*arguments, "--inside", function], tree, inside=True)
                more = {kind: (within[kind] - within["known"], figures[kind] - figures["known"]) for kind in NEVER_SEEN}
                rows.append([function, f"{within['known']:,.0f}",
                             *(f"{spent:,.0f} ({spent / difference:.0%})" for spent, difference in more.values())])
            print(table(["within", "known", *(f"more: {kind} (of its difference)" for kind in NEVER_SEEN)], rows))
        return
    made = paths(args.requests)
    with tempfile.TemporaryDirectory() as tmp, store() as redis_url:
        work = Path(tmp)
        service = start_service(redis_url, LOAD_RULES, work)
        bare = start_bare(work)
        try:
            waits(service.base, [cold_path(-n, NEVER_SEEN["a new word"](-n)) for n in range(1, 21)])  # its first ones
            waits(bare.base, made["known"][:20])
            figures = {kind: series(service, requested) for kind, requested in made.items()}
            theirs = series(bare, made["a new word"])
        finally:
            service.stop()
            bare.stop()
    print(f"service at {revision()}: a cold visitor's decision, {args.requests} requests of each kind one after the"
          " other, a new connection each: client wall-clock ms, and the server's CPU µs per request")
    rows = [[f"service, never seen: {kind}" if kind in NEVER_SEEN else "service, a known phrase",
             *(f"{ours[k]:.2f}" for k in ours)] for kind, ours in figures.items()]
    print(table(["", "p50", "p90", "p99", "CPU µs"], [
        *rows,
        ["bare Starlette", *(f"{theirs[k]:.2f}" for k in theirs)],
        ["service (never seen: a new word) / bare", *(f"{figures['a new word'][k] / theirs[k]:.2f}×" for k in theirs)],
        *[[f"never seen: {kind} / known", *(f"{figures[kind][k] / figures['known'][k]:.2f}×" for k in theirs)]
          for kind in NEVER_SEEN],
    ]))


if __name__ == "__main__":
    main()
