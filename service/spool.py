"""The spool: conversions and calls that arrive while the store is down, kept on local disk
and replayed when it is back, so nothing accepted is lost.

Each process appends JSON lines to `spool-PID.jsonl` in the data dir's `spool/`, only during
an outage and in a thread, off the event loop, and fsyncs each line: accepted means on disk.
To replay, a process first renames its file to `replay-PID-N.jsonl` (appends then start a new
file), and works through that file with no lock held; the file goes only when all of it went
through. The files of a process that died are taken over the same way: a rename is atomic,
so exactly one process gets each. Replaying is idempotent (conversions carry their event id,
calls their call id, and the store counts each once), so an interrupted replay that runs
again counts nothing twice. Entries carry no IP address and no caller number.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from service.observability import SPOOLED

log = logging.getLogger("swapline")
Replay = Callable[[dict[str, Any]], Awaitable[None]]
_OWNER = re.compile(r"(?:spool|replay)-(\d+)")


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"spool-{os.getpid()}.jsonl"
        self._lock = asyncio.Lock()  # an append and the rename of this process's file never overlap
        self._taken = itertools.count()

    async def append(self, entry: dict[str, Any]) -> None:
        SPOOLED.labels("call" if "call" in entry else "conversion").inc()
        line = orjson.dumps(entry) + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def depth(self) -> int:
        """Entries waiting, in every process's files."""
        if not self.directory.is_dir():
            return 0
        return sum(path.read_bytes().count(b"\n") for path in self.directory.glob("*.jsonl"))

    async def replay(self, handle: Replay) -> int:
        """Hand every waiting entry to `handle`. Stops at the first that fails (the store is
        still down): that file stays for the next try, nothing is dropped."""
        async with self._lock:
            await asyncio.to_thread(self._take, self.path)
        for path in await asyncio.to_thread(self._orphans):
            await asyncio.to_thread(self._take, path)
        replayed = 0
        for path in sorted(self.directory.glob(f"replay-{os.getpid()}-*.jsonl")):
            for line in (await asyncio.to_thread(path.read_bytes)).splitlines():
                if line.strip():
                    await handle(orjson.loads(line))
                    replayed += 1
            await asyncio.to_thread(path.unlink)
        return replayed

    def _take(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):  # nothing spooled, or another process took it first
            path.rename(self.directory / f"replay-{os.getpid()}-{next(self._taken)}.jsonl")

    def _orphans(self) -> list[Path]:
        """Files of processes that are gone."""
        if not self.directory.is_dir():
            return []
        return [path for path in self.directory.glob("*.jsonl")
                if (owner := _OWNER.match(path.name)) and int(owner[1]) != os.getpid() and not _alive(int(owner[1]))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def keep_replaying(spool: Spool, handle: Replay, every: float = 1.0) -> None:
    """Runs until cancelled: replays the spool whenever it has something and the store answers."""
    while True:
        await asyncio.sleep(every)
        try:
            if replayed := await spool.replay(handle):
                log.info("replayed %d spooled events and calls", replayed)
        except Exception as exc:  # the store is not back yet; the entries stay
            log.debug("spool replay waits: %s", exc)
