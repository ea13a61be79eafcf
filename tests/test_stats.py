"""service.analytics.stats against statsmodels and scipy, computed live on the tables in cases/stats.json.

Where the reference gives nan or inf (no value), the function under test must return None, and the
case file must say so (its "none" list), so a table that changes meaning is noticed.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import integrate  # type: ignore[import-untyped]
from scipy import stats as scipy_stats
from statsmodels.stats.power import NormalIndPower  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from service.analytics.stats import (
    SRM_ALARM,
    Interval,
    chance_to_beat,
    difference,
    holm,
    normal_quantile,
    ratio,
    required_sample,
    srm,
    wilson,
    z_test,
)

CASES: dict[str, Any] = json.loads((Path(__file__).parent / "cases" / "stats.json").read_text(encoding="utf-8"))
TABLES: list[dict[str, Any]] = CASES["tables"]
CONFIDENCES = (0.95, 0.9, 0.99)
EXACT_TERMS = 20_000  # past this chance_to_beat approximates (service.analytics.stats._EXACT_TERMS)


def counts(table: dict[str, Any]) -> tuple[int, int, int, int]:
    return table["k_a"], table["n_a"], table["k_b"], table["n_b"]


def table_id(table: dict[str, Any]) -> str:
    return str(table["name"])


each_table = pytest.mark.parametrize("table", TABLES, ids=table_id)


def close(expected: Any) -> Any:
    """Closed forms agree to 1e-9 relative; abs because a bound that is 0 may come out as 1e-17."""
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


@contextmanager
def quiet() -> Iterator[None]:
    """statsmodels warns on the degenerate tables; the nan it returns is what is checked."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def finite(*values: Any) -> tuple[float, ...] | None:
    numbers = tuple(float(value) for value in values)
    return numbers if all(math.isfinite(number) for number in numbers) else None


# References. Counts go in as numpy floats so that statsmodels gives nan or inf rather than raising
# ZeroDivisionError, as it does for Python numbers.


def reference_wilson(k: int, n: int, confidence: float) -> tuple[float, ...] | None:
    with quiet():
        return finite(*proportion_confint(np.float64(k), np.float64(n), alpha=1 - confidence, method="wilson"))


def reference_z_test(k_a: int, n_a: int, k_b: int, n_b: int) -> float | None:
    with quiet():
        _, p_value = proportions_ztest(np.array([k_b, k_a], dtype=float), np.array([n_b, n_a], dtype=float))
    result = finite(p_value)
    return None if result is None else result[0]


def reference_2indep(
    k_a: int, n_a: int, k_b: int, n_b: int, confidence: float, **kwargs: str
) -> tuple[float, ...] | None:
    with quiet():
        interval = confint_proportions_2indep(
            *np.array([k_b, n_b, k_a, n_a], dtype=float), alpha=1 - confidence, **kwargs
        )
    return finite(*interval)


def reference_chance(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """P(p_b > p_a) = integral of pdf_b(x) * cdf_a(x) dx, by adaptive quadrature."""
    beta_a = scipy_stats.beta(1 + k_a, 1 + n_a - k_a)
    beta_b = scipy_stats.beta(1 + k_b, 1 + n_b - k_b)
    # With big counts the posteriors are needles; quad only finds them if told where they are.
    low = min(beta_a.ppf(1e-15), beta_b.ppf(1e-15))
    high = max(beta_a.isf(1e-15), beta_b.isf(1e-15))
    value, _ = integrate.quad(
        lambda x: beta_b.pdf(x) * beta_a.cdf(x),
        low,
        high,
        points=sorted({beta_a.mean(), beta_b.mean()}),
        epsabs=1e-13,
        epsrel=1e-12,
        limit=1000,
    )
    return float(value)


def assert_interval(actual: Interval, expected: tuple[float, ...]) -> None:
    assert (actual.low, actual.high) == close(expected)


def test_wilson_reaches_its_ends_when_nobody_or_everybody_converted() -> None:
    """Not 2.8e-17 for nobody of 26, as rounding made it: an analyst reads that as a rate."""
    for n in (1, 26, 1_000, 123_457):
        assert wilson(0, n).low == 0.0 and wilson(n, n).high == 1.0


# The two-variant tables.


@each_table
def test_wilson(table: dict[str, Any]) -> None:
    k_a, n_a, k_b, n_b = counts(table)
    for side, k, n in (("wilson_a", k_a, n_a), ("wilson_b", k_b, n_b)):
        for confidence in CONFIDENCES:
            expected = reference_wilson(k, n, confidence)
            actual = wilson(k, n, confidence)
            assert (expected is None) == (side in table["none"])
            if expected is None:
                assert actual is None
            else:
                assert actual is not None
                assert_interval(actual, expected)


@each_table
def test_z_test(table: dict[str, Any]) -> None:
    expected = reference_z_test(*counts(table))
    actual = z_test(*counts(table))
    assert (expected is None) == ("z_test" in table["none"])
    assert actual == (None if expected is None else close(expected))


@each_table
def test_difference(table: dict[str, Any]) -> None:
    k_a, n_a, k_b, n_b = counts(table)
    for confidence in CONFIDENCES:
        expected = reference_2indep(k_a, n_a, k_b, n_b, confidence, method="newcomb", compare="diff")
        actual = difference(k_a, n_a, k_b, n_b, confidence)
        assert (expected is None) == ("difference" in table["none"])
        if expected is None:
            assert actual is None
        else:
            assert actual is not None
            lift, interval = actual
            assert lift == close(k_b / n_b - k_a / n_a)
            assert_interval(interval, expected)
            assert interval.low <= lift <= interval.high


@each_table
def test_ratio(table: dict[str, Any]) -> None:
    k_a, n_a, k_b, n_b = counts(table)
    for confidence in CONFIDENCES:
        expected = reference_2indep(k_a, n_a, k_b, n_b, confidence, method="log", compare="ratio")
        actual = ratio(k_a, n_a, k_b, n_b, confidence)
        assert (expected is None) == ("ratio" in table["none"])
        if expected is None:
            assert actual is None
        else:
            assert actual is not None
            lift, interval = actual
            assert lift == close((k_b / n_b) / (k_a / n_a) - 1)
            assert (interval.low + 1, interval.high + 1) == close(expected)
            assert interval.low <= lift <= interval.high


@each_table
def test_chance_to_beat(table: dict[str, Any]) -> None:
    k_a, n_a, k_b, n_b = counts(table)
    exact = min(1 + k_a, 1 + n_a - k_a, 1 + k_b, 1 + n_b - k_b) <= EXACT_TERMS
    assert chance_to_beat(k_a, n_a, k_b, n_b) == pytest.approx(
        reference_chance(k_a, n_a, k_b, n_b), abs=1e-6 if exact else 1e-3
    )


@each_table
def test_chance_to_beat_is_complementary(table: dict[str, Any]) -> None:
    # Swapping the sides takes another of the four sums (or the approximation); they must agree.
    k_a, n_a, k_b, n_b = counts(table)
    assert chance_to_beat(k_a, n_a, k_b, n_b) + chance_to_beat(k_b, n_b, k_a, n_a) == pytest.approx(1, abs=1e-9)


def test_chance_to_beat_on_equal_data_is_even() -> None:
    for k, n in ((0, 0), (0, 10), (3, 7), (10, 10), (500, 10000), (30000, 1000000)):
        assert chance_to_beat(k, n, k, n) == pytest.approx(0.5, abs=1e-9)


# Sample-ratio mismatch.


@pytest.mark.parametrize("case", CASES["srm"], ids=lambda case: case["name"])
def test_srm(case: dict[str, Any]) -> None:
    observed, weights = case["observed"], case["weights"]
    expected = [sum(observed) * weight / sum(weights) for weight in weights]
    reference = scipy_stats.chisquare(observed, f_exp=expected)
    result = srm(observed, weights)
    assert result is not None
    chi2, p_value = result
    assert chi2 == close(float(reference.statistic))
    assert p_value == pytest.approx(float(reference.pvalue), rel=1e-9, abs=1e-300)
    assert (p_value < SRM_ALARM) == case["alarm"]


@pytest.mark.parametrize("case", CASES["srm_none"], ids=lambda case: case["name"])
def test_srm_without_a_split(case: dict[str, Any]) -> None:
    assert srm(case["observed"], case["weights"]) is None


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 25])
def test_srm_p_value_across_the_chi_square_range(df: int) -> None:
    # Sweeps the statistic across both branches of the incomplete gamma (series below df/2 + 1,
    # continued fraction above) by building counts with a known statistic.
    for target in (0.01, 0.5, df / 2, df + 1, df + 3, 3 * df + 10, 60, 200, 1000):
        observed = [1_000_000] * (df + 1)
        observed[0] += round(math.sqrt(target * 1_000_000))
        expected = [sum(observed) / (df + 1)] * (df + 1)
        reference = scipy_stats.chisquare(observed, f_exp=expected)
        result = srm(observed, [1.0] * (df + 1))
        assert result is not None
        assert result[0] == pytest.approx(float(reference.statistic), rel=1e-9)
        assert result[1] == pytest.approx(float(reference.pvalue), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([10, 10], [50]), ([10, -1], [50, 50]), ([10, 10], [100, 0]), ([10, 10], [50, float("nan")])],
)
def test_srm_rejects_bad_input(observed: list[int], weights: list[float]) -> None:
    with pytest.raises(ValueError):
        srm(observed, weights)


# Sample size.


@pytest.mark.parametrize("rate", CASES["required_sample"]["rates"])
def test_required_sample(rate: float) -> None:
    grid = CASES["required_sample"]
    for lift in grid["lifts"]:
        for alpha, power in grid["levels"]:
            effect = proportion_effectsize(rate * (1 + lift), rate)
            n = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power)
            assert required_sample(rate, lift, alpha, power) == math.ceil(float(n)), (rate, lift, alpha, power)


def test_required_sample_defaults() -> None:
    effect = proportion_effectsize(0.05 * 1.2, 0.05)
    n = NormalIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)
    assert required_sample(0.05) == math.ceil(float(n)) == 8143


@pytest.mark.parametrize("case", CASES["required_sample_none"], ids=lambda case: f"{case['rate']}x{1 + case['lift']}")
def test_required_sample_without_a_target(case: dict[str, float]) -> None:
    assert required_sample(case["rate"], case["lift"]) is None


@pytest.mark.parametrize(("alpha", "power"), [(0, 0.8), (1, 0.8), (0.05, 1), (0.05, 0.05), (0.2, 0.1)])
def test_required_sample_rejects_bad_levels(alpha: float, power: float) -> None:
    with pytest.raises(ValueError):
        required_sample(0.05, 0.2, alpha, power)


# The normal quantile.


def test_normal_quantile() -> None:
    for p in CASES["normal_quantile"]:
        assert normal_quantile(p) == pytest.approx(float(scipy_stats.norm.ppf(p)), rel=1e-9, abs=1e-15), p


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_normal_quantile_outside_0_1(p: float) -> None:
    with pytest.raises(ValueError):
        normal_quantile(p)


# Input checks shared by the table functions.


@pytest.mark.parametrize("function", [z_test, difference, ratio, chance_to_beat])
@pytest.mark.parametrize(("k_a", "n_a", "k_b", "n_b"), [(5, 4, 1, 10), (-1, 4, 1, 10), (1, 4, 11, 10), (1, 4, 1, -1)])
def test_impossible_counts(function: Callable[..., object], k_a: int, n_a: int, k_b: int, n_b: int) -> None:
    with pytest.raises(ValueError):
        function(k_a, n_a, k_b, n_b)


@pytest.mark.parametrize("confidence", [0, 1, 95, -0.5])
def test_confidence_outside_0_1(confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson(5, 10, confidence)
    with pytest.raises(ValueError):
        difference(5, 10, 6, 10, confidence)
    with pytest.raises(ValueError):
        ratio(5, 10, 6, 10, confidence)


def test_none_returns() -> None:
    assert wilson(0, 0) is None
    assert z_test(0, 0, 1, 5) is None
    assert z_test(1, 5, 0, 0) is None
    assert z_test(0, 5, 0, 8) is None  # pooled rate 0
    assert z_test(5, 5, 8, 8) is None  # pooled rate 1
    assert difference(0, 0, 1, 5) is None
    assert difference(1, 5, 0, 0) is None
    assert ratio(0, 5, 1, 5) is None
    assert ratio(1, 5, 0, 5) is None
    assert ratio(0, 0, 1, 5) is None
    assert srm([0, 0], [1, 1]) is None
    assert srm([7], [1]) is None
    assert required_sample(0.0) is None
    assert required_sample(0.9, 0.2) is None


def test_interval_is_a_frozen_value() -> None:
    interval = Interval(0.1, 0.2)
    assert interval == Interval(0.1, 0.2)
    with pytest.raises(AttributeError):
        interval.low = 0.3  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(20))
def test_holm_agrees_with_statsmodels(seed: int) -> None:
    from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    p_values = [float(p) for p in rng.uniform(0, 0.2, size=int(rng.integers(2, 8)))]
    if seed % 4 == 0:
        p_values[0] = p_values[-1]  # ties
    expected = multipletests(p_values, method="holm")[1]
    assert holm(p_values) == pytest.approx(list(expected), rel=1e-12, abs=1e-15)
    gaps = holm([None, *p_values, None])
    assert gaps[0] is None and gaps[-1] is None and gaps[1:-1] == pytest.approx(list(expected), rel=1e-12)
