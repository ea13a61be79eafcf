"""What an earlier version kept in the store, moved to where this version reads it.

Before spans (service/lua/spans.lua) a ledger counted its cohorts in five hashes whose fields
were "DAY|PAGE|TAIL": `exposed`, `overflow`, `conversions`, `totals` and `excluded`. As it
starts, a process moves what is left of them into spans, a slice at a time, each field once
whichever processes do it together (respan.lua); then it marks the store done, so later
starts look no further. Every process of a deployment runs the same version: one of an older
version would go on writing the old hashes, which nothing reads.
"""

from __future__ import annotations

import logging

from service.tracking.store import Script, Store

log = logging.getLogger("swapline")
OLD = {"exposed": "e", "overflow": "o", "conversions": "u", "totals": "c", "excluded": "x"}  # family → measure
RESPAN = Script.named("respan", "spans")
DONE = "sw:upgraded:spans"
SLICE = 1000  # keys or fields read at a time


async def respan(store: Store, keep_days: int) -> None:
    """Move every ledger's old counts into spans kept `keep_days` (SWAPLINE_REPORT_DAYS)."""
    client = store.client
    if await client.exists(DONE):
        return
    moved = 0
    async for raw in client.scan_iter(match="sw:{*/*}:*", count=SLICE):
        key = raw.decode()
        prefix, _, family = key.rpartition(":")
        if family not in OLD:
            continue
        cursor = None
        while cursor != 0:
            cursor, fields = await client.hscan(key, cursor or 0, count=SLICE)
            if fields:
                call = RESPAN((key,), (f"{prefix}:", keep_days * 86_400, OLD[family], *fields))
                moved += int((await store.batcher.submit(call))[0])
    await client.set(DONE, 1)
    if moved:
        log.info("upgrade: %d counts of the ledgers moved into spans", moved)
