"""Abuse limits: requests per client network and window, shared by every worker.

A client is its network: an IPv4 address (/32) or an IPv6 /64 by default, since one
household or phone gets a whole /64 and can rotate addresses inside it. Counts live in the
store under a keyed hash of the network (no address at rest), in fixed windows, so every
worker and container sees the same count. Each worker also counts on its own: that
refuses a flood without a store round trip, and keeps refusing it while the store is down.

The store counts in steps of a twentieth of the limit: a network that sends a handful of
requests a window (nearly every visitor) costs the store nothing, and the workers together
let through at most the limit plus a step each. A step is counted with the commands its
request sends anyway (queued in the batcher before the request's own commands leave), so a
limit costs no round trip of its own; what the store answers blocks the network here until
the window ends.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import math
from typing import Any

from service.errors import TooManyRequests
from service.ips import ip_address
from service.tracking.store import Batcher, Command


class Limiter:
    """At most `limit` requests per `window` seconds from one network; `limit` 0 turns it off.
    Callers say when (`now`, unix seconds): tests and replays run on a clock of their own."""

    def __init__(self, name: str, limit: int, window: int, key: bytes, prefixes: tuple[int, int] = (32, 64)) -> None:
        self.name = name
        self.limit = limit
        self.window = window
        self._hashed = hashlib.blake2b(key=hashlib.blake2b(key + name.encode()).digest(), digest_size=8)
        self._prefixes = prefixes
        self._step = max(1, limit // 20)
        self._current = -1  # the window the counts below belong to
        self._counts: dict[str, int] = {}
        self._blocked: set[str] = set()
        self.network = functools.lru_cache(maxsize=4096)(self._network)

    def admit(self, address: str, batcher: Batcher, now: float) -> None:
        """Count one request from `address`, or refuse it with 429 when its network is over
        the limit. The store's count goes with the next batch `batcher` sends."""
        if not self.limit:
            return
        network = self.network(address)
        self.refuse_if_blocked(network, now)
        self._count(network, self._current, batcher)

    def refuse_if_blocked(self, network: str, now: float, what: str | None = None) -> None:
        """429 while `network` is over the limit; `what` names what it sent too many of, if not `name`
        (one limiter counts guesses at several kinds of credential)."""
        self._roll(now)
        if network in self._blocked:
            raise TooManyRequests("rate_limited", f"too many {what or self.name} from this network; slow down",
                                  retry_after=max(1, math.ceil((self._current + 1) * self.window - now)))

    def note(self, network: str, batcher: Batcher, now: float) -> None:
        """Count one request from `network` here and in the store."""
        if self.limit:
            self._count(network, self._roll(now), batcher)

    def distinct(self, network: str, now: float, sent: str) -> tuple[Command, Command]:
        """The commands that add a keyed hash of `sent` to what `network` sent in this window:
        the first one's reply is 1 if it had not sent it before."""
        key, digest = f"{self._key(network, self._roll(now))}:sent", self._hashed.copy()
        digest.update(sent.encode())
        return ("SADD", key, digest.hexdigest()), ("EXPIRE", key, 2 * self.window)

    async def consult(self, network: str, batcher: Batcher, now: float) -> None:
        """Learn the store's count for `network` now (for rare requests, such as sign-ins)."""
        if not self.limit:
            return
        window = self._roll(now)
        try:
            (count,) = await batcher.submit(("GET", self._key(network, window)))
        except Exception:  # the store is down: this worker's own count still holds
            return
        if count is not None and int(count) >= self.limit and window == self._current:
            self._blocked.add(network)

    def _count(self, network: str, window: int, batcher: Batcher) -> None:
        count = self._counts[network] = self._counts.get(network, 0) + 1
        if count >= self.limit:  # this one is the last that passes
            self._blocked.add(network)
        if count % self._step == 0:
            key = self._key(network, window)
            counted = batcher.submit(("INCRBY", key, self._step), ("EXPIRE", key, 2 * self.window))
            counted.add_done_callback(functools.partial(self._heard, network, window))

    def _heard(self, network: str, window: int, counted: asyncio.Future[list[Any]]) -> None:
        if counted.cancelled() or counted.exception() is not None:  # the store is down: local counts hold
            return
        count, _ = counted.result()
        if count >= self.limit and window == self._current:
            self._blocked.add(network)

    def _key(self, network: str, window: int) -> str:
        return f"sw:{{limit:{self.name}:{network}}}:{window}"

    def _roll(self, now: float) -> int:
        """The window `now` is in; a new one forgets the last one's counts (which bounds them)."""
        window = int(now) // self.window
        if window != self._current:
            self._current = window
            self._counts.clear()
            self._blocked.clear()
        return window

    def _network(self, address: str) -> str:
        """A keyed hash of the address's network: the same for every worker, no address in it."""
        try:
            ip = ip_address(address)
        except ValueError:
            packed = address.encode()
        else:
            prefix = self._prefixes[ip.version == 6]
            packed = ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address.packed + bytes([prefix])
        digest = self._hashed.copy()
        digest.update(packed)
        return digest.hexdigest()
