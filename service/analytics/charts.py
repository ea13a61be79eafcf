"""The dashboard's experiment charts, as SVG geometry a template draws.

Both read an experiment's cohorts by day (the report's `daily`: the visitors first exposed that
day, and their conversions), added up day after day, so each chart's last point is the
table's figure:

    conversion   each variant's conversion rate so far, with its 95% (Wilson) band
    lift         each variant's relative lift over the control so far, with its always-valid
                 band (`stats.sequential`): the band a daily look may be judged by
    bars         a report by dimension's conversion rates, each with its 95% interval

A day's variants stand side by side, each point with its interval as a whisker, so a single
day of data still reads; the axis runs in round steps from the lowest interval to the highest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from service.analytics import stats

WIDTH, HEIGHT = 640, 220
LEFT = 48  # room for the axis labels, at least
LABEL_CHAR = 8.0  # the width an 11px label's character may take, about: a label of n fits in 8n
BAR_LABEL = 32  # characters of a bar's label, at most
PADDING = 20  # between the axis and the first day
COLOURS = ("#4b5563", "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")  # control first, in grey


class Point(NamedTuple):
    day: int  # index into the chart's days
    value: float
    low: float
    high: float


def conversion(daily: Sequence[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    days, running = _running(daily, variants)
    series = []
    for variant in variants:
        points = []
        for day, (converted, visitors) in enumerate(running[variant]):
            interval = stats.wilson(converted, visitors)
            if interval:
                points.append(Point(day, converted / visitors, interval.low, interval.high))
        series.append((variant, points))
    return _draw(days, variants, series, _percent, floor=0.0)


def lift(daily: Sequence[dict[str, Any]], variants: Sequence[str], expected_visitors: int) -> dict[str, Any]:
    days, running = _running(daily, variants)
    control = running[variants[0]]
    series = []
    for variant in variants[1:]:
        points = []
        for day, ((k_a, n_a), (k_b, n_b)) in enumerate(zip(control, running[variant], strict=True)):
            figures = stats.sequential(k_a, n_a, k_b, n_b, expected_visitors=expected_visitors)
            if figures:  # a lift below -100% is no conversion at all
                relative = figures.relative
                points.append(Point(day, k_b / n_b / (k_a / n_a) - 1, max(-1.0, relative.low), relative.high))
        series.append((variant, points))
    return _draw(days, variants, series, _signed_percent, floor=None)


Running = dict[str, list[tuple[int, int]]]  # a variant's conversions and visitors up to each day


def _running(daily: Sequence[dict[str, Any]], variants: Sequence[str]) -> tuple[list[str], Running]:
    """The days, and each variant's conversions and visitors up to and including each of them."""
    days = sorted({point["day"] for point in daily})
    by_day = {(point["day"], point["variant"]): (point["converted"], point["visitors"]) for point in daily}
    running: Running = {}
    for variant in variants:
        converted = visitors = 0
        running[variant] = []
        for day in days:
            k, n = by_day.get((day, variant), (0, 0))
            converted, visitors = converted + k, visitors + n
            running[variant].append((converted, visitors))
    return days, running


def _draw(days: list[str], variants: Sequence[str], series: list[tuple[str, list[Point]]],
          tick_label: Callable[[float], str], floor: float | None) -> dict[str, Any]:
    """`floor`: where the axis starts whatever the data (0 for rates); None to fit the lowest
    interval, with zero always on the axis (lifts)."""
    lows = [point.low for _, points in series for point in points]
    highs = [point.high for _, points in series for point in points]
    low = floor if floor is not None else min(0.0, *lows) if lows else -0.01
    step, bottom_steps, top_steps = _steps(low, max(0.0, *highs) if highs else 0.01)
    axis_low, axis_high = -bottom_steps * step, top_steps * step
    values = [step * i for i in range(-bottom_steps, top_steps + 1)]
    left = max(LEFT, 6 + LABEL_CHAR * max(len(tick_label(value)) for value in values))  # "+3000%" whole
    bottom, plot_w, plot_h = HEIGHT - 28, WIDTH - left - 16, HEIGHT - 44
    apart = min(12.0, plot_w / max(1, len(days)) / (len(variants) + 1))

    def x(day: int, offset: float) -> float:  # offset: a variant's place beside the others on its day
        inner = plot_w - 2 * PADDING  # the first and the last day clear the axis labels
        middle = left + PADDING + (day / (len(days) - 1) * inner if len(days) > 1 else inner / 2)
        return middle + offset * apart

    def y(value: float) -> float:
        return bottom - (value - axis_low) / (axis_high - axis_low) * plot_h

    lines = []
    for variant, points in series:
        index = variants.index(variant)
        offset = index - (len(variants) - 1) / 2
        dots = [{"x": x(p.day, offset), "y": y(p.value), "low": y(p.low), "high": y(p.high)} for p in points]
        band = [(dot["x"], dot["high"]) for dot in dots] + [(dot["x"], dot["low"]) for dot in reversed(dots)]
        lines.append({"variant": variant, "colour": COLOURS[index % len(COLOURS)], "dots": dots,
                      "points": " ".join(f"{dot['x']:.1f},{dot['y']:.1f}" for dot in dots),
                      "band": " ".join(f"{bx:.1f},{by:.1f}" for bx, by in band) if len(dots) > 1 else ""})
    ticks = [{"y": y(value), "label": tick_label(value), "zero": value == 0} for value in values]
    labels = [{"x": x(day, 0), "label": days[day][5:]} for day in range(0, len(days), max(1, len(days) // 8))]
    return {"width": WIDTH, "height": HEIGHT, "lines": lines, "ticks": ticks, "days": labels,
            "left": left, "right": left + plot_w, "bottom": bottom}


def _steps(low: float, high: float) -> tuple[float, int, int]:
    """A round step (1, 2, 2.5 or 5 times a power of ten, about a quarter of the span) and how
    many of them reach down to `low` (≤ 0) and up to `high` (≥ 0)."""
    span = (high - low) or 0.01
    wanted = span / 4
    power = 10 ** math.floor(math.log10(wanted))
    step = next(power * mantissa for mantissa in (1, 2, 2.5, 5, 10) if power * mantissa >= wanted * (1 - 1e-9))
    below = max(0, math.ceil(-low / step - 1e-9))
    above = max(1 if below == 0 else 0, math.ceil(high / step - 1e-9))
    return step, below, above


def _percent(value: float) -> str:
    return f"{round(value * 100, 6):g}%"


def _signed_percent(value: float) -> str:
    return f"{round(value * 100, 6):+g}%".replace("-", "−") if value else "0%"


def bars(rows: Sequence[dict[str, Any]], by: Sequence[str],
         named: Callable[[str, str], str] = lambda value, dimension: value) -> dict[str, Any]:
    """Each row's conversion rate as a horizontal bar with its 95% interval as a whisker, on an
    axis of round steps from 0: which source (or campaign, phrase …) converts, and how surely.
    `named`: a value of a dimension (`by`) as the reader's dashboard names it."""
    shown = [row for row in rows if row["rate"] is not None]
    highest = max((row["interval"][1] for row in shown), default=0.0)
    step, _, steps = _steps(0.0, highest or 0.01)
    top, line = step * steps, 22
    names = [" · ".join(map(named, row["values"], by)) for row in shown]
    room = min(BAR_LABEL, max(map(len, names), default=0))
    left = max(LEFT, 8 + LABEL_CHAR * room)
    width, height = WIDTH - left - 16, 36 + line * len(shown)

    def x(rate: float) -> float:
        return left + rate / top * width

    items = [{"label": name if len(name) <= room else name[:room - 1] + "…", "y": 24 + line * index,
              "x": x(row["rate"]), "low": x(row["interval"][0]), "high": x(row["interval"][1])}
             for index, (name, row) in enumerate(zip(names, shown, strict=True))]
    ticks = [{"x": x(step * i), "label": _percent(step * i)} for i in range(steps + 1)]
    return {"width": WIDTH, "height": height, "left": left, "bars": items, "ticks": ticks,
            "bottom": height - 12}
