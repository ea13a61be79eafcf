"""The sequential test (`service.analytics.stats.sequential`): against GrowthBook's own engine on the
tables of cases/stats.json, and in the A/A simulation that shows why the dashboard uses it.

`gbstats` is GrowthBook's published statistics package (`scripts/test` installs it without the
data runner's pins, which these tests do not use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gbstats.frequentist.tests import SequentialConfig, SequentialTwoSidedTTest  # type: ignore[import-untyped]
from gbstats.models.statistics import ProportionStatistic  # type: ignore[import-untyped]

from service.analytics.stats import EXPECTED_VISITORS, sequential, z_test

TABLES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "cases" / "stats.json").read_text(encoding="utf-8"))["tables"]


def growthbook(table: dict[str, Any], difference: str, expected_visitors: int) -> Any:
    """GrowthBook's sequential two-sided test of the variant (b) against the control (a); None
    where it declines (its result then carries an error message)."""
    result = SequentialTwoSidedTTest(
        ProportionStatistic(n=table["n_a"], sum=table["k_a"]), ProportionStatistic(n=table["n_b"], sum=table["k_b"]),
        SequentialConfig(difference_type=difference, sequential_tuning_parameter=expected_visitors),
    ).compute_result()
    return None if result.error_message else result


@pytest.mark.parametrize("expected_visitors", [1000, EXPECTED_VISITORS, 200_000])
@pytest.mark.parametrize("table", TABLES, ids=lambda table: str(table["name"]))
def test_sequential_figures_agree_with_growthbook(table: dict[str, Any], expected_visitors: int) -> None:
    ours = sequential(table["k_a"], table["n_a"], table["k_b"], table["n_b"], expected_visitors=expected_visitors)
    absolute = growthbook(table, "absolute", expected_visitors)
    relative = growthbook(table, "relative", expected_visitors)
    if absolute is None:
        assert ours is None and relative is None
        assert "sequential" in table["none"]
        return
    assert "sequential" not in table["none"]
    assert ours is not None
    close = {"rel": 1e-9, "abs": 1e-12}
    assert ours.p_value == pytest.approx(absolute.p_value, **close)
    assert (ours.difference.low, ours.difference.high) == pytest.approx(absolute.ci, **close)
    assert (ours.relative.low, ours.relative.high) == pytest.approx(relative.ci, **close)


def test_sequential_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError):
        sequential(5, 4, 1, 10)


def looks(rate_a: float, rate_b: float, experiments: int = 1000, days: int = 20, daily: int = 500,
          seed: int = 2026) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative conversions of control and variant at each daily look, and the visitors per
    variant by then: `daily` new visitors a day in each."""
    rng = np.random.default_rng(seed)
    return (rng.binomial(daily, rate_a, size=(experiments, days)).cumsum(axis=1),
            rng.binomial(daily, rate_b, size=(experiments, days)).cumsum(axis=1),
            daily * np.arange(1, days + 1))


def significant_at_some_look(test: Any, rate_a: float, rate_b: float) -> float:
    k_a, k_b, n = looks(rate_a, rate_b)
    hits = 0
    for experiment in range(len(k_a)):
        p_values = (test(int(k_a[experiment, day]), int(n[day]), int(k_b[experiment, day]), int(n[day]))
                    for day in range(len(n)))
        hits += any(p is not None and p < 0.05 for p in p_values)
    return hits / len(k_a)


def sequential_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float | None:
    result = sequential(k_a, n_a, k_b, n_b)
    return result.p_value if result else None


def test_an_analyst_who_looks_every_day_is_fooled_by_chance_at_most_one_time_in_twenty() -> None:
    """1,000 A/A experiments (5% on both sides), looked at daily for 20 days as 500 visitors a
    day join each variant: the fixed-horizon p-value dips under 0.05 on some day in about one
    experiment of five; the sequential one in at most one of twenty."""
    assert significant_at_some_look(z_test, 0.05, 0.05) > 0.15  # the peeking problem, reproduced
    assert significant_at_some_look(sequential_p, 0.05, 0.05) <= 0.05


def test_a_real_lift_is_still_found_by_looking_every_day() -> None:
    """The same looks with the variant converting 6.5% against 5%: the sequential test finds it
    in most experiments, a little later and a little less often than peeking would."""
    found = significant_at_some_look(sequential_p, 0.05, 0.065)
    assert 0.8 <= found <= significant_at_some_look(z_test, 0.05, 0.065)
