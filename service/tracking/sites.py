"""A site's data as a whole: which keys are a site's, and erasing them all.

Every key of a site carries the site id in its hash tag, then one separator and one name
(docs/STORAGE.md): `{SITE/EXPERIMENT}` a ledger (`_site`: the whole site's), `{SITE:POOL}` a
number pool, `{SITE:calls}` the call records, `{SITE:log}` the call and conversion log with what
hangs off it (webhooks' consumer groups inside the stream, exports' cursors, the reports by
dimension), `{SITE|VID}` a visitor's visits. That name holds no separator itself, so a key is
one site's exactly: `sw:{shop:log}:entries` is `shop`'s and never `shop-msk`'s, and a tag such
as `{shop/b:pool}` or `{shop/b/exp}` (a site `shop/b`, were ids allowed a slash) is not `shop`'s.

`swapline sites erase SITE` deletes them all for a client who has left: a slice of the key space
at a time (`SCAN` on every primary of a cluster), `UNLINK`ed in batches, so the store goes on
serving meanwhile.
"""

from __future__ import annotations

import re
from collections import Counter

from service.tracking.store import Store

SLICE = 1000  # keys scanned, and unlinked, at a time
# What follows the site id in a tag → the kind of data an erasure names. A pool whose id is
# `calls` or `log` shares their tag (and its slot), and is counted with them.
KINDS = {"/": "ledgers", ":": "pools", "|": "visits", ":calls": "calls", ":log": "log"}


def tag_of(site: str) -> re.Pattern[bytes]:
    """Matches the keys of `site`, an id as the rules write them (no separator, nothing a SCAN
    pattern reads as a wildcard); group 1 is what follows the id in the tag."""
    return re.compile(rb"sw:\{" + re.escape(site.encode()) + rb"([/:|][^/:|}]+)\}")


def _kind(rest: bytes) -> str:
    name = rest.decode()
    return KINDS.get(name) or KINDS[name[0]]


async def erase(store: Store, site: str) -> Counter[str]:
    """Delete every key of `site`; how many keys of each kind (`KINDS`) went."""
    client, mine = store.client, tag_of(site)
    erased: Counter[str] = Counter()
    waiting: dict[str, list[bytes]] = {}  # by kind: UNLINK says how many it deleted, a key a SCAN repeats once
    async for key in client.scan_iter(match=f"sw:{{{site}[/:|]*", count=SLICE):
        if found := mine.match(key):
            kind = _kind(found[1])
            batch = waiting.setdefault(kind, [])
            batch.append(key)
            if len(batch) == SLICE:
                erased[kind] += await client.unlink(*batch)
                batch.clear()
    for kind, batch in waiting.items():
        if batch:
            erased[kind] += await client.unlink(*batch)
    return Counter({kind: erased[kind] for kind in dict.fromkeys(KINDS.values()) if erased[kind]})

