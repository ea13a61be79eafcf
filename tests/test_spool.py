"""The spool keeps what it acknowledges: records are checksummed, a torn or corrupt one is
skipped while the rest replays, and what the disk cannot take is refused, never lost."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.observability import SPOOL_CORRUPT
from service.tracking.spool import Spool
from tests.conftest import BROWSER_HEADERS, free_port, make_settings
from tests.test_reports import SECRET, SHOP


def entries(n: int) -> list[dict[str, Any]]:
    return [{"site": "shop", "conversion": {"id": f"form:{i}", "vid": f"spool-visitor-{i:08d}"}} for i in range(n)]


def replayed(spool: Spool) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    async def handle(entry: dict[str, Any]) -> None:
        got.append(entry)

    asyncio.run(spool.replay(handle))
    return got


def test_a_torn_or_corrupt_record_is_skipped_and_the_rest_replays(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    kept = entries(4)
    for entry in kept:
        asyncio.run(spool.append(entry))
    lines = spool.path.read_bytes().splitlines(keepends=True)
    garbled = lines[1].replace(b"spool-visitor", b"spool-visitoR")  # a flipped bit on disk
    legacy = orjson.dumps({"site": "shop", "conversion": {"id": "form:legacy"}}) + b"\n"  # the first format
    spool.path.write_bytes(lines[0] + garbled + lines[2] + legacy + lines[3][:-9])  # the last one torn mid-write
    before = SPOOL_CORRUPT._value.get()
    assert replayed(spool) == [kept[0], kept[2], {"site": "shop", "conversion": {"id": "form:legacy"}}]
    assert SPOOL_CORRUPT._value.get() - before == 2
    assert not list(spool.directory.glob("*.jsonl"))  # nothing left to replay forever


def test_an_append_the_disk_cuts_short_leaves_no_torn_record(tmp_path: Path) -> None:
    """A file-size limit stands in for a disk that fills up in the middle of a record."""
    directory = tmp_path / "spool"
    script = f"""
import asyncio, resource, signal
from pathlib import Path
from service.tracking.spool import Spool, SpoolFull
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG instead
spool = Spool(Path({str(directory)!r}))
entry = {{"site": "shop", "conversion": {{"id": "x" * 100}}}}
asyncio.run(spool.append(entry))
asyncio.run(spool.append(entry))
resource.setrlimit(resource.RLIMIT_FSIZE, (spool.path.stat().st_size + 60, resource.RLIM_INFINITY))
try:
    asyncio.run(spool.append(entry))
except SpoolFull:
    print("refused", spool.failing)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent, check=True)
    assert result.stdout.startswith("refused OSError"), result.stdout + result.stderr
    assert len(replayed(Spool(directory))) == 2  # the two it acknowledged, and no half of the third


def test_a_spool_that_could_not_write_says_so_until_the_disk_has_room_again(tmp_path: Path) -> None:
    """A file-size limit stands in for a full disk, and raising it for the space freed: the
    check that `/readyz` and `/metrics` make clears the failure without waiting for an outage."""
    directory = tmp_path / "spool"
    script = f"""
import asyncio, resource, signal
from pathlib import Path
from service.tracking.spool import Spool, SpoolFull
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
spool = Spool(Path({str(directory)!r}))
entry = {{"site": "shop", "conversion": {{"id": "x" * 100}}}}
asyncio.run(spool.append(entry))
resource.setrlimit(resource.RLIMIT_FSIZE, (spool.path.stat().st_size + 60, resource.RLIM_INFINITY))
try:
    asyncio.run(spool.append(entry))
except SpoolFull:
    pass
print("full:", asyncio.run(spool.check()))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("freed:", asyncio.run(spool.check()))
asyncio.run(spool.append(entry))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent, check=True)
    full, freed = result.stdout.splitlines()
    assert full.startswith("full: OSError: [Errno 27] File too large"), result.stdout + result.stderr
    assert freed == "freed: None"
    assert len(replayed(Spool(directory))) == 2  # the probes left nothing to replay


@pytest.fixture
def shop_without_store(tmp_path: Path, rules_dir: Path) -> TestClient:
    """The shop on a store that is not there, with a spool it cannot write (its directory is a
    file: root writes through permissions, and /dev/full reads back forever)."""
    (rules_dir / "shop.yaml").write_text(SHOP)
    data = tmp_path / "data"
    data.mkdir()
    (data / "spool").write_text("not a directory")
    app = create_app(make_settings(f"redis://127.0.0.1:{free_port()}/0", rules_dir, data_dir=data))
    client = TestClient(app, client=("127.0.0.1", 40000), headers=BROWSER_HEADERS)
    client.__enter__()
    return client


def test_with_the_store_down_and_the_disk_full_nothing_is_acknowledged(shop_without_store: TestClient,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    shop = shop_without_store
    assert any("the spool cannot keep what a store outage brings" in record.getMessage()
               for record in caplog.get_records("setup"))  # said at start, not first in an outage
    try:
        decision = shop.get("/v1/decide", params={"site": "shop", "url": "/"}).json()
        assert decision["degraded"] is True  # decisions still answer
        beacon = shop.post("/v1/events", content=orjson.dumps({"type": "form", "id": "f1",
                                                                "token": decision["token"]}))
        raw = orjson.dumps({"call_id": "c1", "called": "+74951500001", "start": 1795000000, "talk_seconds": 40})
        signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        call = shop.post("/v1/calls?site=shop", content=raw, headers={"x-swapline-signature": signature})
        ready = shop.get("/readyz")
        metrics = shop.get("/metrics").text
    finally:
        shop.__exit__(None, None, None)
    for refused in (beacon, call):
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
        assert refused.headers["retry-after"] == "30"
    assert ready.status_code == 503 and "the spool cannot keep events either" in ready.json()["error"]["message"]
    assert "swapline_spool_writable 0" in metrics


def test_records_carry_their_checksum(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    asyncio.run(spool.append(entries(1)[0]))
    checksum, _, body = spool.path.read_bytes().rstrip(b"\n").partition(b" ")
    assert int(checksum, 16) == zlib.crc32(body) and orjson.loads(body) == entries(1)[0]


def test_a_data_directory_not_made_yet_is_no_trouble(tmp_path: Path) -> None:
    """The first append makes it: no warning at start, no "not writable" on /readyz."""
    spool = Spool(tmp_path / "data" / "spool")
    assert spool.trouble() is None
    asyncio.run(spool.append(entries(1)[0]))
    assert spool.trouble() is None and spool.depth() == 1
