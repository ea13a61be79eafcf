"""The service's event loop, watched: how long one request can keep it from everything else.

`LoopWatch` ticks on the loop and keeps the most CPU time the loop's thread spent between two
ticks: what any one step (a request's parsing, a report's figures) held the loop for, whatever
else the machine is doing, since waiting for a core is not CPU time. `serving` runs the real
application with its lifespan on the test's own loop, so the watch sees every request's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from service.front.fastpath import FastPath
from tests.conftest import BROWSER_HEADERS

BUDGET = 0.1  # seconds: what one request may hold a worker's loop for (SPEC, quality bars)


class LoopWatch:
    def __init__(self) -> None:
        self.longest = 0.0  # seconds of the loop thread's CPU between two ticks

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _tick(self) -> None:
        last = time.thread_time()
        while True:
            await asyncio.sleep(0.001)
            now = time.thread_time()
            self.longest = max(self.longest, now - last)
            last = now


@contextlib.asynccontextmanager
async def serving(app: FastPath, client: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on `app`, started and stopped as uvicorn would, all on this loop."""
    async with app.app.router.lifespan_context(app.app):
        transport = httpx.ASGITransport(app=app, client=(client, 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://swapline.test",
                                     headers=BROWSER_HEADERS, timeout=None) as http:
            yield http
