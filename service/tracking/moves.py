"""Pool sync: the store's pools take the rules' numbers, and a number that moves to another
pool (of any site) is not leased there while the pool that listed it before still holds it.

The rules of before are gone after a restart, and a site renamed or a number moved while the
service was down must wait all the same: the registry `sw:number:{E164}` names the pool
(`SITE:POOL`) that last listed each number. A pool's keys sit in its own cluster slot, so no
script reads two pools; a sync joins scripts of one pool each:

1. read the registry for every number the rules list (for a number it does not name, the pool
   whose numbers in the store hold it: a version before the registry synced it there);
2. give the pools that take no number from another pool their numbers (sync.lua), which drops
   those they no longer list;
3. take each number that another pool listed out of that pool (hand_over.lua), which neither
   leases nor renews it from then on, and learn when its hold there ends;
4. give the other pools their numbers: one still held elsewhere waits in `held`, with that
   hold's end and no holder, so the first lease after then frees it (lease.lua);
5. name the numbers' new pools in the registry.

A sync cut short before 5 is done again by the next, as the registry still names the former
pool, whose hold cannot grow meanwhile. Replicas that sync at once take the same steps and
write the same values; one that finds a hold already reclaimed leaves the wait it finds.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.rules.engine import Pool, Site
from service.tracking.pools import PoolKeys
from service.tracking.store import Script, Store

SYNC, HAND_OVER = Script.named("sync"), Script.named("hand_over")
Owner = tuple[str, str]  # a pool: site id, pool id


def registry_key(number: str) -> str:
    """The number's own hash tag: the registry spreads over a cluster's shards."""
    return f"sw:number:{{{number}}}"


async def sync(store: Store, sites: Iterable[Site]) -> None:
    """Make the store's pools those of the rules: at start, after a reload, after a loss."""
    pools = [(site.id, pool) for site in sites for pool in site.pools if pool.numbers]
    listed = {number: (site, pool.id) for site, pool in pools for number in pool.numbers}
    if not listed:
        return
    registered = await _registered(store, list(listed))
    before = dict(registered)
    if unknown := [number for number in listed if number not in before]:  # new numbers, or a version before this
        before.update(await _stored(store, [(site, pool.id) for site, pool in pools], unknown, listed))
    moved = {number: owner for number, owner in before.items() if owner != listed[number]}
    taking = {listed[number] for number in moved}
    # The other pools first: each drops what it no longer lists in the script that adds its new
    # numbers, so none is empty meanwhile (a decision would take it for a store that lost it).
    for site, pool in pools:
        if (site, pool.id) not in taking:
            await _sync(store, site, pool, {})
    ends = await _hand_over(store, moved)
    for site, pool in pools:
        if (site, pool.id) in taking:
            await _sync(store, site, pool, ends)
    await _register(store, {number: owner for number, owner in listed.items() if registered.get(number) != owner})


async def _sync(store: Store, site: str, pool: Pool, ends: dict[str, int]) -> None:
    keys = PoolKeys.of(site, pool.id)
    pairs = [value for number in pool.numbers for value in (number, ends.get(number, 0))]
    await store.client.eval(SYNC.source, 4, keys.numbers, keys.free, keys.held, keys.holder, *pairs)


async def _registered(store: Store, numbers: list[str]) -> dict[str, Owner]:
    """The pool that last listed each number, where the registry has one."""
    pipe = store.client.pipeline(transaction=False)
    for number in numbers:
        pipe.get(registry_key(number))
    found = await pipe.execute()
    return {number: _owner(owner) for number, owner in zip(numbers, found, strict=True) if owner}


async def _stored(store: Store, pools: list[Owner], numbers: list[str], listed: dict[str, Owner]) -> dict[str, Owner]:
    """Where the store's pools hold `numbers`, which the registry does not name: a version before
    it synced them there, and a number moved in the same deploy as the upgrade must still wait.
    A number in the pool that lists it now stays there; one in another pool moved from it."""
    pipe = store.client.pipeline(transaction=False)
    for owner in pools:
        pipe.smembers(PoolKeys.of(*owner).numbers)
    wanted, found = set(numbers), dict[str, Owner]()
    for owner, members in zip(pools, await pipe.execute(), strict=True):
        for number in {member.decode() for member in members} & wanted:
            if found.get(number) != listed[number]:
                found[number] = owner
    return found


def _owner(value: bytes) -> Owner:
    site, pool = value.decode().split(":")  # ids have no ':' (schema.json)
    return site, pool


async def _hand_over(store: Store, moved: dict[str, Owner]) -> dict[str, int]:
    """Take the `moved` numbers out of their former pools; when each one's hold there ends (ms),
    for those still held there."""
    by_pool: dict[Owner, list[str]] = {}
    for number, owner in moved.items():
        by_pool.setdefault(owner, []).append(number)
    ends: dict[str, int] = {}
    for owner, numbers in by_pool.items():
        keys = PoolKeys.of(*owner)
        found = await store.client.eval(HAND_OVER.source, 3, keys.numbers, keys.free, keys.held, *numbers)
        ends.update((number, int(end)) for number, end in zip(numbers, found, strict=True) if end)
    return ends


async def _register(store: Store, owners: dict[str, Owner]) -> None:
    if not owners:
        return
    pipe = store.client.pipeline(transaction=False)
    for number, (site, pool) in owners.items():
        pipe.set(registry_key(number), f"{site}:{pool}")
    await pipe.execute()
