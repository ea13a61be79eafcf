"""Analysts' work that runs Python for long (laying out a report, writing a file, drawing the
dashboard), in one thread per worker, one job after another.

Each thread that runs Python beside the event loop takes turns with it at the GIL, so page
views wait longer the more of them run at once (docs/PERFORMANCE.md, "Downloads"): analysts
who ask together wait in line instead of the visitors.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysts")


async def run(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in the analysts' thread, after the jobs asked for before it."""
    return await asyncio.get_running_loop().run_in_executor(_THREAD, functools.partial(function, *args))
