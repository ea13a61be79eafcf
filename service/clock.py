"""Moments as the store keeps counts by: the hour and the day (UTC) of a time in milliseconds."""

from __future__ import annotations

import datetime
import functools


def hour_and_day(now_ms: int) -> tuple[str, str]:
    """The hour (2026-11-22T14) and the day (2026-11-22) of a moment."""
    return _format_hour(now_ms // 3_600_000)


@functools.lru_cache(maxsize=64)  # one hour after another: formatted once, not per request
def _format_hour(hours: int) -> tuple[str, str]:
    moment = datetime.datetime.fromtimestamp(hours * 3600, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H"), moment.strftime("%Y-%m-%d")
