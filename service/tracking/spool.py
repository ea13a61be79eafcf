"""The spool: conversions and calls that arrive while the store is down, kept on local disk
and replayed when it is back, so nothing accepted is lost.

Each process appends records to `spool-PID.jsonl` in the data dir's `spool/`, only during
an outage and in a thread, off the event loop, and fsyncs each one: accepted means on disk.
A record is one line, `CRC32 JSON`, the checksum in hex: a line torn by a crash or garbled
on disk fails it and is skipped (logged and counted) while the rest replays. An append that
fails (a full or read-only disk) is cut off the file again and raises `SpoolFull`: the
request is refused (503), never acknowledged.
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
import shutil
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from service.errors import Unavailable
from service.observability import SPOOL_CORRUPT, SPOOL_FAILURES, SPOOLED

log = logging.getLogger("swapline")
Replay = Callable[[dict[str, Any]], Awaitable[None]]
_OWNER = re.compile(r"(?:spool|replay)-(\d+)")


RETRY_SECONDS = 30  # what a 503 asks: an outage of the store is usually seconds
REPLAY_SLICE = 1 << 20  # bytes of records read at a time
ROOM = 1 << 20  # bytes free below which the spool counts as full: a thousand entries or so


PROBE = b"\n" * 4096  # what `check` writes and takes back: room for a few records


def _why(failure: OSError) -> str:
    return f"{type(failure).__name__}: {failure}"


class SpoolFull(OSError):
    """The spool could not keep an entry (a full or read-only disk): it was not accepted."""


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"spool-{os.getpid()}.jsonl"
        self._lock = asyncio.Lock()  # an append and the rename of this process's file never overlap
        self._taken = itertools.count()
        self.failing: str | None = None  # why the last append failed, until one succeeds

    async def append(self, entry: dict[str, Any]) -> None:
        """Keep `entry` on disk, fsync-ed, or raise `SpoolFull` having kept nothing of it."""
        body = orjson.dumps(entry)
        record = b"%08x %s\n" % (zlib.crc32(body), body)
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, record)
            except OSError as exc:
                self.failing = _why(exc)
                SPOOL_FAILURES.inc()
                raise SpoolFull(exc.errno, f"the spool cannot keep it: {exc.strerror or exc}") from exc
        self.failing = None
        SPOOLED.labels("call" if "call" in entry else "conversion").inc()

    async def keep(self, entry: dict[str, Any]) -> None:
        """`append` for a request: if the spool cannot keep the entry either, nothing can now, so
        the request is refused with 503 and its sender tries again (telephony systems retry)."""
        try:
            await self.append(entry)
        except SpoolFull as exc:
            log.error("refused while the store is down: %s", exc)
            raise Unavailable("store_unavailable", "the store is down and the spool is full: try again later",
                              retry_after=RETRY_SECONDS) from None

    async def check(self) -> str | None:
        """`trouble`, once a failed append is tried again: after the disk was freed, the next
        outage's first append would be the first to find out, and until then `/readyz` and
        `swapline_spool_writable` would go on saying the spool cannot write. Cheap enough for
        each readiness check and scrape: the disk is written only while the spool is failing."""
        if self.failing:
            async with self._lock:
                try:
                    await asyncio.to_thread(self._append, PROBE, False)
                except OSError as exc:
                    self.failing = _why(exc)
                else:
                    self.failing = None
        return await asyncio.to_thread(self.trouble)

    def _append(self, record: bytes, keep: bool = True) -> None:
        """Write `record` at the end of this process's file and fsync it; not `keep`: a probe,
        taken back once it went through."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Unbuffered: a buffer would try again to write what failed when the file closes.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                left = memoryview(record)
                while left:
                    left = left[os.write(fd, left):]
                os.fsync(fd)
            except OSError:  # what got out must not be read as a record, nor glue onto the next
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                raise
            if not keep:
                os.ftruncate(fd, start)
        finally:
            os.close(fd)

    def trouble(self) -> str | None:
        """Why the spool could not keep what an outage brings, or None: the last append failed,
        or its directory cannot be written or has under `ROOM` bytes free. Reads the disk."""
        if self.failing:
            return self.failing
        # The nearest folder there is: the first append makes the others in it.
        folder = next(path for path in (self.directory, *self.directory.absolute().parents) if path.exists())
        if not folder.is_dir():
            return f"{folder} is not a directory"
        if not os.access(folder, os.W_OK):
            return f"{folder} is not writable"
        free = shutil.disk_usage(folder).free
        return f"{free} bytes free in {folder}" if free < ROOM else None

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
            with open(path, "rb") as file:  # read a slice at a time: a long outage makes a big file
                while lines := await asyncio.to_thread(file.readlines, REPLAY_SLICE):
                    for line in lines:
                        entry = _entry(line)
                        if entry is not None:
                            await handle(entry)
                            replayed += 1
                        elif line.strip():
                            SPOOL_CORRUPT.inc()
                            log.error("a spooled record in %s is torn or corrupt and was skipped: %r",
                                      path.name, line[:200])
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


def _entry(line: bytes) -> dict[str, Any] | None:
    """A record's entry, or None for one that is torn or corrupt. Lines of the spool's first
    format (JSON alone, before checksums) are read as they are."""
    line = line.rstrip(b"\n")
    checksum, _, body = line.partition(b" ")
    try:
        if line.startswith(b"{"):
            entry = orjson.loads(line)
        elif len(checksum) == 8 and int(checksum, 16) == zlib.crc32(body):
            entry = orjson.loads(body)
        else:
            return None
    except (ValueError, orjson.JSONDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


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
