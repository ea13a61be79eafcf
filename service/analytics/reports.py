"""Analyst reports: conversion per page and per experiment variant, with honest statistics.

`GET /v1/reports/{site}` (JSON) and `GET /v1/reports/{site}.csv`, behind the site's report
token. Visitors count in the cohort of their first exposure (day, page, variant); the
conversion rate of a variant is its converted visitors over its exposed visitors, leaving out
bots (never exposed) and, from the rates a call counts in (`BY_CALL`: calls, and any
conversion), visitors who got an overflow number: they could not be credited a call.
Filters: `from`, `to` (cohort days, YYYY-MM-DD), `page`, `experiment`, and `metric`, the
conversion kind the statistics compare (default `any`).
"""

from __future__ import annotations

import datetime
import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from service.analytics import dimensions, one_thread, sheets, stats
from service.analytics.language import Said
from service.analytics.sheets import Sheet, Value, period
from service.errors import BadRequest, only
from service.front.auth import require_report_token
from service.front.events import GOAL_NAME
from service.front.responses import JSON
from service.rules.engine import Experiment, Site
from service.runtime import Runtime
from service.tracking.journal import BACKWARDS
from service.tracking.ledger import ALL, BY_CALL, OTHER, SITE, Ledger, cohorts, page_field

KINDS = ("qualified_call", "call", "missed_call", "form", "tel_click", "goal", "any")
CONTROL = "control"
# What an experiment's table warns of, as `Said`: the dashboard says it in the reader's language.
MISMATCH = "sample ratio mismatch (p = %(p)s): the split does not follow the weights, so the figures cannot be trusted"
NO_CONVERSIONS = "too little data: the control has no conversions yet, so no sample size can be judged"
TOO_HIGH = "the control converts %(rate)s: a 20%% lift would pass 100%%, so no sample size can be judged"
TOO_FEW = ("%(variant)s: %(visitors)s of the %(needed)s visitors needed to see a 20%% lift (by the fixed-horizon test; "
           "the sequential one, safe to read every day, needs more)")
LEFT_OUT = ("%(overflowed)s of the %(exposed)s visitors got the overflow number and are not in these figures, which "
            "calls count in: read a metric without calls (form), or give the pool more numbers")
LEFT_OUT_SHARE = 0.1  # of an experiment's visitors out of a call metric's figures, worth saying so beside them
# What the always-valid figures let a reader decide on any day's look (`verdict`), as `Said`.
BETTER = ("Variant %(variant)s converts better than the control (%(lift)s, always-valid p = %(p)s): you may end "
          "the test, with winner: %(variant)s")
WORSE = "Every variant converts worse than the control: you may end the test, with winner: control"
UNDECIDED = "No variant converts better than the control yet: keep the test running"
UNTRUSTED = "Decide nothing on these figures until the split follows the weights"
SIGNIFICANT = 0.05  # an always-valid p below this shows a difference, as the dashboard colours it
MOST_PAGES = 1000  # the most pages a report lists (`limit`); the rest is one "(other)" row


@dataclass(frozen=True, slots=True)
class Filters:
    since: str | None = None  # first cohort day, ISO
    until: str | None = None  # last cohort day, ISO
    page: str | None = None
    experiment: str | None = None
    metric: str = "any"
    limit: int = 100  # pages listed, the most visited first; the rest is summed up as "(other)"

    @classmethod
    def parse(cls, params: Any, limit: int = 100) -> Filters:
        only(params, ("from", "to", "page", "experiment", "metric", "limit", "test"))  # test: the dashboard's
        for name in ("from", "to"):
            if params.get(name):
                try:
                    datetime.date.fromisoformat(params[name])
                except ValueError:
                    raise BadRequest("invalid_filter", f"{name!r} must be a date: YYYY-MM-DD") from None
        if params.get("from") and params.get("to") and params["from"] > params["to"]:
            raise BadRequest("invalid_filter", Said(BACKWARDS))
        metric = params.get("metric") or "any"
        goal = metric.removeprefix("goal:")
        if metric not in KINDS and not (goal != metric and (GOAL_NAME.fullmatch(goal) or goal == OTHER)):
            raise BadRequest("invalid_filter", f"metric must be one of {', '.join(KINDS)} or goal:NAME, a name of "
                                               "a-z, 0-9, _ and -")
        if params.get("limit"):
            given = params["limit"]
            if not (given.isascii() and given.isdigit() and 1 <= int(given) <= MOST_PAGES):
                raise BadRequest("invalid_filter", f"limit must be a whole number from 1 to {MOST_PAGES}")
            limit = int(given)
        return cls(params.get("from") or None, params.get("to") or None, params.get("page") or None,
                   params.get("experiment") or None, metric, limit)


@dataclass
class Cell:
    """One variant of one experiment on one page."""

    exposed: int = 0
    overflowed: int = 0
    converted: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)  # conversions of visitors who overflowed

    def visitors(self, metric: str) -> int:
        """The visitors the metric's rate is of."""
        return self.exposed - self.overflowed if metric in BY_CALL else self.exposed

    def add(self, other: Cell) -> None:
        self.exposed += other.exposed
        self.overflowed += other.overflowed
        self.converted.update(other.converted)
        self.totals.update(other.totals)
        self.excluded.update(other.excluded)


@dataclass
class Page:
    """One page of one experiment: each variant's counts, and per day and variant the
    visitors exposed, overflowed and converted by the report's metric (`_daily`)."""

    cells: defaultdict[str, Cell] = field(default_factory=lambda: defaultdict(Cell))
    daily: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @property
    def exposed(self) -> int:
        return sum(cell.exposed for cell in self.cells.values())

    def add(self, other: Page) -> None:
        for variant, cell in other.cells.items():
            self.cells[variant].add(cell)


async def build(runtime: Runtime, site: Site, filters: Filters) -> dict[str, Any]:
    """The report. The counts are read a slice at a time and the figures made in a thread, so
    a site with a big ledger costs time but never holds the event loop for long."""
    experiments = [e for e in site.experiments if filters.experiment in (None, e.id)]
    if not experiments and filters.experiment:  # a typo read as "no data yet" misleads
        raise BadRequest("invalid_filter", f"no experiment {filters.experiment[:64]!r} in the site's rules: "
                                           f"{', '.join(e.id for e in site.experiments) or 'it has none'}")
    ledger = runtime.ledger
    first, last = ledger.window(filters.since, filters.until, runtime.today(site))
    pages = {}
    for name in (SITE, *(experiment.id for experiment in experiments)):
        pages[name] = await one_thread.run(_pages, await ledger.counts(site.id, name, first, last), filters)
    for experiment in experiments:
        await _daily(ledger, site.id, experiment, pages[experiment.id], filters, first, last)
    return await one_thread.run(assemble, site, experiments, pages, await ledger.bots(site.id, first, last), filters)


def assemble(site: Site, experiments: list[Experiment], pages: dict[str, dict[str, Page]], bots: int,
             filters: Filters) -> dict[str, Any]:
    report: dict[str, Any] = {
        "site": site.id,
        "metric": filters.metric,
        "from": filters.since,
        "to": filters.until,
        "pages": [{"page": unquote(page), **_figures(counts.cells[ALL], filters.metric)}
                  for page, counts in pages[SITE].items()],
        "experiments": [],
        "excluded": _excluded(pages[SITE].values(), bots),
    }
    for experiment in experiments:
        overall = _srm(experiment, pages[experiment.id].values())
        for page, counts in pages[experiment.id].items():
            report["experiments"].append(_experiment(experiment, unquote(page), counts, filters, overall))
    return report


BY_KIND = {"u": "converted", "c": "totals", "x": "excluded"}  # the measures of spans.lua counted by kind


def _pages(counts: dict[bytes, int], filters: Filters) -> dict[str, Page]:
    """Page (as the ledger writes it, `page_field`) → its counts, from an experiment's
    `Ledger.counts`: the `limit` most visited pages first, then all the others added up as
    "(other)"; or the one page the filters name."""
    pages: defaultdict[str, Page] = defaultdict(Page)
    wanted = filters.page and page_field(filters.page)
    for measure, page, variant, kind, count in cohorts(counts):
        if wanted and page != wanted:
            continue
        if kind is not None and measure in BY_KIND:
            getattr(pages[page].cells[variant], BY_KIND[measure])[kind] += count
        elif kind is None and measure == "e":
            pages[page].cells[variant].exposed += count
        elif kind is None and measure == "o":
            pages[page].cells[variant].overflowed += count
    if wanted:
        return dict(pages)
    ranked = sorted((page for page in pages if page != OTHER), key=lambda page: (-pages[page].exposed, page))
    listed = {page: pages[page] for page in ranked[:filters.limit]}
    if len(ranked) > filters.limit or OTHER in pages:
        other = listed[OTHER] = pages.get(OTHER, Page())
        for page in ranked[filters.limit:]:
            other.add(pages[page])
    return listed


async def _daily(ledger: Ledger, site: str, experiment: Experiment, pages: dict[str, Page], filters: Filters,
                 first: str, last: str) -> None:
    """Each listed page's visitors exposed, overflowed and converted by the metric, per day and
    variant: read from the days' own counts for the pages listed by name; "(other)", when it
    adds up the pages past the limit, is each day's total less theirs."""
    rest = OTHER in pages and not filters.page
    named = [page for page in pages if not (rest and page == OTHER)]
    variants = [variant.id for variant in experiment.variants]
    fields = [f"{measure}|{page}|{variant}{tail}" for page in (*named, "*") for variant in variants
              for measure, tail in (("e", ""), ("o", ""), ("u", f"|{filters.metric}"))]
    per_page = 3 * len(variants)
    for day, counts in (await ledger.daily(site, experiment.id, first, last, fields)).items():
        for n, page in enumerate(named):
            _add_days(pages[page], day, variants, counts[n * per_page:(n + 1) * per_page])
        if rest:  # the day's totals less the named pages' sums, measure by measure
            _add_days(pages[OTHER], day, variants, [counts[-per_page + i] - sum(counts[i:-per_page:per_page])
                                                   for i in range(per_page)])


def _add_days(page: Page, day: str, variants: list[str], counts: list[int]) -> None:
    for n, variant in enumerate(variants):
        if counts[3 * n]:  # anyone exposed: nobody overflows or converts in a cohort of no one
            page.daily[day, variant] = counts[3 * n:3 * n + 3]


def _figures(cell: Cell, metric: str) -> dict[str, Any]:
    converted = cell.converted
    visitors = cell.visitors(metric)
    interval = stats.wilson(converted[metric], visitors)
    return {
        "exposed": cell.exposed,
        "overflowed": cell.overflowed,
        "visitors": visitors,
        "converted": {kind: converted[kind] for kind in _kinds(converted)},
        "totals": {kind: cell.totals[kind] for kind in _kinds(converted)},
        "rate": converted[metric] / visitors if visitors else None,
        "interval": [interval.low, interval.high] if interval else None,
    }


def _kinds(converted: Counter[str]) -> list[str]:
    return [*KINDS, *sorted(kind for kind in converted if kind.startswith("goal:"))]


def _experiment(experiment: Experiment, page: str, counts: Page, filters: Filters,
                srm: dict[str, Any] | None) -> dict[str, Any]:
    metric = filters.metric
    cells = counts.cells
    k_control, n_control = cells[CONTROL].converted[metric], cells[CONTROL].visitors(metric)
    variants = []
    for variant in experiment.variants:
        cell = cells[variant.id]
        row = {"variant": variant.id, "weight": variant.weight, **_figures(cell, metric), "lift": None}
        if variant.id != CONTROL and n_control and row["visitors"]:
            row["lift"] = _lift(k_control, n_control, cell.converted[metric], row["visitors"],
                                experiment.expected_visitors)
        variants.append(row)
    lifts = [row["lift"] for row in variants if row["lift"]]
    corrected = len(experiment.variants) > 2  # several variants each against the control: one wins by chance
    if corrected:
        for lift, adjusted in zip(lifts, stats.holm([lift["p_value"] for lift in lifts]), strict=True):
            lift["p_value_holm"] = adjusted
        always_valid = [lift["sequential"] for lift in lifts]
        for figures, adjusted in zip(always_valid, stats.holm([f and f["p_value"] for f in always_valid]), strict=True):
            if figures:
                figures["p_value_holm"] = adjusted
    verdict = None if experiment.winner else _verdict(variants, srm, corrected)
    # No sample to wait for in an ended experiment, which counts nobody more, nor in one whose
    # difference the always-valid test has shown.
    decided = experiment.winner or (verdict and verdict.template in (BETTER, WORSE))
    warnings = [] if decided else _sample_warnings(k_control, n_control, variants)
    exposed = sum(cells[variant.id].exposed for variant in experiment.variants)
    overflowed = sum(cells[variant.id].overflowed for variant in experiment.variants)
    if metric in BY_CALL and overflowed > LEFT_OUT_SHARE * exposed:
        warnings.append(Said(LEFT_OUT, overflowed=str(overflowed), exposed=str(exposed)))
    if srm and srm["alarm"]:
        warnings.insert(0, Said(MISMATCH, p=f"{srm['p_value']:.2g}"))
    return {
        "experiment": experiment.id,
        "page": page,
        # p-values corrected for testing several variants against the control at once
        "correction": "holm" if corrected else None,
        "expected_visitors": experiment.expected_visitors,  # the sequential test's tuning
        "winner": experiment.winner.id if experiment.winner else None,  # ended: every visitor sees it
        "srm": srm,
        "warnings": warnings,
        "verdict": verdict,  # what the figures let the reader decide; None for an ended test or one without data
        "variants": variants,
        "daily": [_day(day, variant, Cell(exposed, overflowed), converted, metric)
                  for (day, variant), (exposed, overflowed, converted) in sorted(counts.daily.items())],
    }


def _verdict(variants: list[dict[str, Any]], srm: dict[str, Any] | None, corrected: bool) -> Said | None:
    """By the always-valid figures (Holm-adjusted for several variants), so that a reader who
    looks every day may act on it: the variant that converts best of those better than the
    control, or every variant worse, or neither yet."""
    compared = [row for row in variants if row["lift"]]
    if not compared:
        return None
    if srm and srm["alarm"]:
        return Said(UNTRUSTED)

    def significant(row: dict[str, Any]) -> float | None:
        figures = row["lift"]["sequential"]
        p_value: float | None = figures and figures["p_value_holm" if corrected else "p_value"]
        return p_value if p_value is not None and p_value < SIGNIFICANT else None

    better = [row for row in compared if significant(row) is not None and (row["lift"]["absolute"] or 0) > 0]
    if better:
        best = max(better, key=lambda row: row["lift"]["absolute"])
        relative = best["lift"]["relative"]  # none where the control converted nobody: the difference, in points
        lift = f"{relative:+.1%}" if relative is not None else f"{best['lift']['absolute'] * 100:+.1f} pp"
        return Said(BETTER, variant=best["variant"], lift=lift, p=f"{significant(best):.3g}")  # as the table prints it
    if len(compared) == len(variants) - 1 and all(significant(row) is not None for row in compared):
        return Said(WORSE)
    return Said(UNDECIDED)


def _day(day: str, variant: str, cell: Cell, converted: int, metric: str) -> dict[str, Any]:
    visitors = cell.visitors(metric)
    return {"day": day, "variant": variant, "visitors": visitors, "converted": converted,
            "rate": converted / visitors if visitors else None}


def _sample_warnings(k_control: int, n_control: int, variants: list[dict[str, Any]]) -> list[Said]:
    """Which variants have fewer visitors than a 20% lift on the control's rate needs."""
    base = k_control / n_control if n_control else 0.0
    needed = stats.required_sample(base) if base else None
    if needed is None and not base:
        return [Said(NO_CONVERSIONS)]
    if needed is None:
        return [Said(TOO_HIGH, rate=f"{base:.0%}")]
    return [Said(TOO_FEW, variant=row["variant"], visitors=str(row["visitors"]), needed=str(needed))
            for row in variants if row["visitors"] < needed]


def _lift(k_a: int, n_a: int, k_b: int, n_b: int, expected_visitors: int) -> dict[str, Any]:
    absolute = stats.difference(k_a, n_a, k_b, n_b)
    relative = stats.ratio(k_a, n_a, k_b, n_b)
    always_valid = stats.sequential(k_a, n_a, k_b, n_b, expected_visitors=expected_visitors)
    return {
        "absolute": absolute[0] if absolute else None,
        "absolute_interval": [absolute[1].low, absolute[1].high] if absolute else None,
        "relative": relative[0] if relative else None,
        "relative_interval": [relative[1].low, relative[1].high] if relative else None,
        "p_value": stats.z_test(k_a, n_a, k_b, n_b),
        "chance_to_beat": stats.chance_to_beat(k_a, n_a, k_b, n_b),
        # Valid at every look, so the dashboard shows these: the figures above hold for one
        # look, at a sample size fixed in advance.
        "sequential": always_valid and {
            "p_value": always_valid.p_value,
            # Two rates differ by a whole one at most: the interval is cut there as the rates are.
            "absolute_interval": [max(-1.0, always_valid.difference.low), min(1.0, always_valid.difference.high)],
            # Symmetric around the estimate; a lift below -100% would be fewer than no conversions.
            "relative_interval": [max(-1.0, always_valid.relative.low), always_valid.relative.high],
        },
    }


def _srm(experiment: Experiment, pages: Iterable[Page]) -> dict[str, Any] | None:
    """Does the split follow the weights? Over all pages: assignment does not depend on the page."""
    exposed: Counter[str] = Counter()
    for page in pages:
        exposed.update({variant: cell.exposed for variant, cell in page.cells.items()})
    result = stats.srm([exposed[v.id] for v in experiment.variants], [v.weight for v in experiment.variants])
    if result is None:
        return None
    chi2, p_value = result
    return {"chi2": chi2, "p_value": p_value, "alarm": p_value < stats.SRM_ALARM}


def _excluded(pages: Iterable[Page], bots: int) -> dict[str, int]:
    cells = [cell for page in pages for cell in page.cells.values()]
    return {
        "bot_page_views": bots,
        "overflowed_visitors": sum(cell.overflowed for cell in cells),
        "overflowed_conversions": sum(cell.excluded["any"] for cell in cells),
    }


def sheet(report: dict[str, Any], site: str, today: str) -> Sheet:
    """One row per page and per experiment variant: the table an analyst pastes into a sheet.
    Its name says the days it covers: from the experiments' start unless `from` says, to `today`
    unless `to` says."""
    kinds = list(KINDS)
    rows: list[list[Value]] = [
        ["page", None, page["page"], "all", None, *_counts(page, kinds), report["metric"], page["rate"],
         *(page["interval"] or [None, None]), *[None] * 16] for page in report["pages"]]
    for table in report["experiments"]:
        for row in table["variants"]:
            lift = row["lift"] or {}
            always_valid = lift.get("sequential") or {}
            rows.append([
                "experiment", table["experiment"], table["page"], row["variant"], row["weight"],
                *_counts(row, kinds), report["metric"], row["rate"], *(row["interval"] or [None, None]),
                lift.get("absolute"), *(lift.get("absolute_interval") or [None, None]),
                lift.get("relative"), *(lift.get("relative_interval") or [None, None]),
                lift.get("p_value"), lift.get("p_value_holm"), lift.get("chance_to_beat"), always_valid.get("p_value"),
                always_valid.get("p_value_holm"), *(always_valid.get("relative_interval") or [None, None]),
                (table["srm"] or {}).get("p_value"), "; ".join(table["warnings"]), table["verdict"],
            ])
    until = report["to"] or today
    return Sheet(f"{site}-report-{period(report['from'], until) if report['from'] else f'until-{until}'}", [
        "section", "experiment", "page", "variant", "weight", "exposed", "overflowed", "visitors",
        *[f"converted_{kind}" for kind in kinds], "metric", "rate", "rate_low", "rate_high",
        "lift_abs", "lift_abs_low", "lift_abs_high", "lift_rel", "lift_rel_low", "lift_rel_high",
        "p_value", "p_value_holm", "chance_to_beat", "p_value_sequential", "p_value_sequential_holm",
        "lift_rel_low_sequential", "lift_rel_high_sequential", "srm_p_value", "warnings", "verdict"], rows)


def _counts(row: dict[str, Any], kinds: Iterable[str]) -> list[Value]:
    return [row["exposed"], row["overflowed"], row["visitors"], *(row["converted"].get(k, 0) for k in kinds)]


async def report_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    return await answer(runtime, site, request.query_params, sheets.requested(request.url.path))


async def answer(runtime: Runtime, site: Site, params: Mapping[str, str], form: str | None) -> Response:
    """The report `params` ask for, as JSON or as a file in `form` (`sheets.FORMATS`)."""
    if params.get("by"):  # visits and conversions by source, campaign, phrase…
        by = await dimensions.report(runtime, site, dimensions.Query(params, runtime.today(site)))
        return await sheets.download(functools.partial(dimensions.sheet, by, site.id), form) if form else JSON(by)
    report = await build(runtime, site, Filters.parse(params))
    if not form:
        return JSON(report)
    return await sheets.download(functools.partial(sheet, report, site.id, runtime.today(site)), form)
