"""Statistics for experiment reports: pure functions on conversion counts, standard library only.

    wilson           interval for one variant's conversion rate
    z_test           two-sided p-value, variant b against a (pooled two-proportion z-test)
    difference       absolute lift p_b - p_a with Newcombe's hybrid score interval
    ratio            relative lift p_b / p_a - 1 with a Katz log interval
    chance_to_beat   Bayesian P(p_b > p_a) under uniform priors
    sequential       always-valid p-value and confidence sequences of the lift, for daily looks
    srm              sample-ratio mismatch: chi-square of the split against the weights
    required_sample  visitors per variant to detect a lift (Cohen's h, normal power)
    normal_quantile  inverse standard normal CDF

Each agrees with statsmodels / scipy (see tests/test_stats.py); where those give nan or raise,
these return None, so a report can show "not enough data" instead of a number.
Counts are ints with 0 <= successes <= trials; anything else is a caller bug and raises ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

SRM_ALARM = 0.001  # p below this: the split is broken, the experiment's numbers can't be trusted

_STANDARD_NORMAL = NormalDist()
_EXACT_TERMS = 20_000  # chance_to_beat sums at most this many terms, then approximates
EXPECTED_VISITORS = 5000  # `sequential`'s default tuning, as GrowthBook's


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def normal_quantile(p: float) -> float:
    """Inverse standard normal CDF: normal_quantile(0.975) == 1.959963984540054."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be strictly between 0 and 1, got {p}")
    # The standard library's NormalDist uses Wichura's AS241, good to about 1e-16 over the whole range.
    return _STANDARD_NORMAL.inv_cdf(p)


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval | None:
    """Wilson score interval for a proportion; None when there are no trials."""
    _check(successes, trials)
    if trials == 0:
        return None
    z = _critical(confidence)
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    # Mathematically inside [0, 1], and at its end when nobody or everybody converted;
    # rounding can miss either (statsmodels clips too).
    low = 0.0 if successes == 0 else max(0.0, center - half)
    return Interval(low, 1.0 if successes == trials else min(1.0, center + half))


def z_test(k_a: int, n_a: int, k_b: int, n_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of b against a.

    None when a side has no trials, or nobody or everybody converted on both sides together:
    the pooled variance is 0 and there is no test (statsmodels gives nan).
    """
    _check(k_a, n_a)
    _check(k_b, n_b)
    if n_a == 0 or n_b == 0 or k_a + k_b in (0, n_a + n_b):
        return None
    pooled = (k_a + k_b) / (n_a + n_b)
    z = (k_b / n_b - k_a / n_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 2 * _upper_tail(abs(z))


def difference(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95) -> tuple[float, Interval] | None:
    """Absolute lift p_b - p_a with Newcombe's hybrid score interval (his method 10: from each
    side's Wilson interval, as statsmodels' method="newcomb"); None when a side has no trials.

    Wald's interval shrinks to nothing with few conversions (0 of 1 against 1 of 1 gave [1, 1],
    0 of 50 against 5 of 50 excluded 0 where an exact test does not); this one keeps its width.
    """
    _check(k_a, n_a)
    _check(k_b, n_b)
    a, b = wilson(k_a, n_a, confidence), wilson(k_b, n_b, confidence)
    if a is None or b is None:
        return None
    p_a, p_b = k_a / n_a, k_b / n_b
    lift = p_b - p_a
    return lift, Interval(lift - math.hypot(p_b - b.low, a.high - p_a), lift + math.hypot(b.high - p_b, p_a - a.low))


def ratio(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95) -> tuple[float, Interval] | None:
    """Relative lift p_b / p_a - 1 with the Katz log interval of the ratio, shifted by -1.

    None when either side has no conversions (or no trials): the log of the ratio is then -inf or
    undefined. statsmodels' method="log" raises ZeroDivisionError there for int counts, and for
    float counts gives (0, nan) when k_b == 0, (nan, inf) when k_a == 0, (nan, nan) for both.
    """
    _check(k_a, n_a)
    _check(k_b, n_b)
    if k_a == 0 or k_b == 0:  # also covers n == 0, since k <= n
        return None
    z = _critical(confidence)
    risk_ratio = (k_b / n_b) / (k_a / n_a)
    # Delta-method variance of log(p_b / p_a).
    half = z * math.sqrt((1 / k_b - 1 / n_b) + (1 / k_a - 1 / n_a))
    low = risk_ratio * math.exp(-half) - 1
    high = risk_ratio * math.exp(half) - 1
    return risk_ratio - 1, Interval(low, high)


def chance_to_beat(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Bayesian P(p_b > p_a), each rate with a Beta(1 + k, 1 + n - k) posterior (uniform prior).

    Exact for integer parameters (Evan Miller's closed form) while the sum is short. Past
    _EXACT_TERMS terms a normal approximation of p_b - p_a: by then both Betas are very nearly
    normal (about 1e-6 off the exact sum just past the threshold) and the sum would cost 30 ms and up.
    """
    _check(k_a, n_a)
    _check(k_b, n_b)
    a_a, b_a = 1 + k_a, 1 + n_a - k_a
    a_b, b_b = 1 + k_b, 1 + n_b - k_b
    # The closed form sums over alpha of the second Beta. By symmetry (P(x > y) = 1 - P(y > x),
    # and p > q exactly when 1 - p < 1 - q) any of the four parameters can be the one summed over:
    # take the smallest.
    terms = min(a_a, b_a, a_b, b_b)
    if terms > _EXACT_TERMS:
        return _beat_normal(a_a, b_a, a_b, b_b)
    if terms == a_b:
        return _beat(a_a, b_a, a_b, b_b)
    if terms == a_a:
        return 1 - _beat(a_b, b_b, a_a, b_a)
    if terms == b_a:
        return _beat(b_b, a_b, b_a, a_a)
    return 1 - _beat(b_a, a_a, b_b, a_b)


@dataclass(frozen=True, slots=True)
class Sequential:
    p_value: float  # always valid: at most alpha under no difference, however often it is looked at
    difference: Interval  # of p_b - p_a
    relative: Interval  # of p_b / p_a - 1


def sequential(k_a: int, n_a: int, k_b: int, n_b: int, alpha: float = 0.05,
               expected_visitors: int = EXPECTED_VISITORS) -> Sequential | None:
    """Lift figures that stay valid at every look, as GrowthBook's sequential test computes
    them: the asymptotic confidence sequence of Waudby-Smith et al. (2023, arXiv:2103.06476,
    eq. 9) around the unpooled normal estimate, and the always-valid p-value that inverts it
    (eq. 155). `expected_visitors` (control and variant together) tunes the mixture (eq. 161):
    the sequence is narrowest there, and only somewhat wider an order of magnitude away.

    None, as GrowthBook, while a side has a rate of 0 or 1 (or no trials): its variance is 0,
    and the normal approximation this rests on says nothing yet.
    """
    _check(k_a, n_a)
    _check(k_b, n_b)
    if not (0 < k_a < n_a and 0 < k_b < n_b):
        return None
    p_a, p_b = k_a / n_a, k_b / n_b
    var_a, var_b = p_a * (1 - p_a), p_b * (1 - p_b)
    variance = var_a / n_a + var_b / n_b
    n = n_a + n_b
    rho2 = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / expected_visitors
    spread = n * rho2 + 1
    # The sequence's half-width per standard error; the mixture's e-value in logs (an
    # overwhelming difference overflows exp).
    width = math.sqrt(2 * spread / (n * rho2) * math.log(math.sqrt(spread) / alpha))
    lift = p_b - p_a
    log_evalue = rho2 * lift**2 * n / variance / (2 * spread) - math.log(spread) / 2
    half = width * math.sqrt(variance)
    # The delta method's variance of p_b / p_a - 1.
    half_relative = width * math.sqrt(var_b / (p_a**2 * n_b) + var_a * p_b**2 / (p_a**4 * n_a))
    return Sequential(math.exp(-max(0.0, log_evalue)), Interval(lift - half, lift + half),
                      Interval(lift / p_a - half_relative, lift / p_a + half_relative))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values tested together (several variants against one
    control), as statsmodels' `multipletests(method="holm")`: the smallest p times m, the next
    times m - 1, …, each at least the one before it, at most 1. None (no test) stays None and
    does not count in m."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def srm(observed: Sequence[int], weights: Sequence[float]) -> tuple[float, float] | None:
    """Sample-ratio mismatch: (chi-square statistic, p-value) of the observed split against the weights.

    Weights need not add up to anything; they are normalised. None when there is nothing to test:
    fewer than two variants, or no visitors. A p-value below SRM_ALARM means the split is broken.
    """
    if len(observed) != len(weights):
        raise ValueError(f"{len(observed)} counts for {len(weights)} weights")
    if any(count < 0 for count in observed):
        raise ValueError(f"negative count in {list(observed)}")
    if any(not weight > 0 for weight in weights):  # `not >` also rejects nan
        raise ValueError(f"weights must be positive, got {list(weights)}")
    total = sum(observed)
    if len(observed) < 2 or total == 0:
        return None
    scale = total / math.fsum(weights)
    chi2 = math.fsum(
        (count - weight * scale) ** 2 / (weight * scale) for count, weight in zip(observed, weights, strict=True)
    )
    return chi2, _chi2_sf(chi2, len(observed) - 1)


def required_sample(rate: float, relative_lift: float = 0.2, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Visitors per variant to detect a change from `rate` to `rate * (1 + relative_lift)`.

    A two-sided test at `alpha` with `power`, on Cohen's h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)),
    solved exactly as statsmodels' NormalIndPower does (both tails), then rounded up.
    None when there is nothing to detect: the base or the target rate is not strictly between 0 and 1,
    or the lift is 0.
    """
    if not 0 < alpha < 1 or not alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    target = rate * (1 + relative_lift)
    if not (0 < rate < 1 and 0 < target < 1) or target == rate:
        return None
    h = abs(2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(rate)))
    z = -normal_quantile(alpha / 2)
    # With n per variant the test statistic's mean is s = h * sqrt(n / 2), and
    # power(s) = P(Z > z - s) + P(Z < -z - s). The textbook s = z + z_power drops the second,
    # far tail; it changes n by a few parts in a million, enough to move the rounded n now and then.
    # Newton from the textbook value adds it back in two or three steps.
    s = z + normal_quantile(power)
    for _ in range(50):
        error = _upper_tail(z - s) + _upper_tail(z + s) - power
        slope = _STANDARD_NORMAL.pdf(z - s) - _STANDARD_NORMAL.pdf(z + s)
        step = error / slope
        s -= step
        if abs(step) <= 1e-15 * s:
            break
    return math.ceil(2 * (s / h) ** 2)


# Helpers.


def _check(successes: int, trials: int) -> None:
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} out of {trials}")


def _critical(confidence: float) -> float:
    """The two-sided critical value: 1.96 for 95%."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    # From the small tail, not from 1 - tail, so 0.999999 keeps its digits.
    return -normal_quantile((1 - confidence) / 2)


def _upper_tail(x: float) -> float:
    """P(Z > x) for a standard normal Z; erfc keeps full relative precision far out in the tail."""
    return 0.5 * math.erfc(x / math.sqrt(2))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beat(a_x: int, b_x: int, a_y: int, b_y: int) -> float:
    """P(Y > X) for X ~ Beta(a_x, b_x), Y ~ Beta(a_y, b_y), integer parameters; a_y terms.

    sum over i < a_y of B(a_x + i, b_x + b_y) / ((b_y + i) B(1 + i, b_y) B(a_x, b_x)),
    each term in log space: the Beta functions alone overflow a float long before the counts get big.
    """
    # The parts that do not depend on i.
    constant = math.lgamma(b_x + b_y) - math.lgamma(b_y) - _log_beta(a_x, b_x)
    total = math.fsum(
        math.exp(
            constant
            + math.lgamma(a_x + i)
            - math.lgamma(a_x + i + b_x + b_y)
            - math.log(b_y + i)
            - math.lgamma(1 + i)
            + math.lgamma(1 + i + b_y)
        )
        for i in range(a_y)
    )
    return min(1.0, total)


def _beat_normal(a_x: int, b_x: int, a_y: int, b_y: int) -> float:
    """P(Y > X) with both Betas replaced by normals of the same mean and variance (large counts only)."""
    mean_x, var_x = _beta_moments(a_x, b_x)
    mean_y, var_y = _beta_moments(a_y, b_y)
    return _upper_tail((mean_x - mean_y) / math.sqrt(var_x + var_y))


def _beta_moments(a: int, b: int) -> tuple[float, float]:
    mean = a / (a + b)
    return mean, mean * (b / (a + b)) / (a + b + 1)


def _chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df): the regularised upper incomplete gamma Q(df / 2, x / 2)."""
    return _gamma_q(df / 2, x / 2)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x), as Numerical Recipes' gammq.

    The series for P converges fast below x = a + 1, the continued fraction for Q above it, where
    Q is small and computing it directly keeps its relative precision (1 - P would not).
    Either converges within about 60 steps for the degrees of freedom of an experiment.
    """
    if x <= 0:
        return 1.0
    # x^a e^-x / Gamma(a), the factor both expansions share.
    prefix = math.exp(a * math.log(x) - x - math.lgamma(a))
    if x < a + 1:
        # P(a, x) = prefix * sum over n of x^n / (a (a + 1) ... (a + n)).
        term = total = 1 / a
        denominator = a
        for _ in range(1000):
            denominator += 1
            term *= x / denominator
            total += term
            if term < total * 1e-15:
                break
        return 1 - prefix * total
    # Q(a, x) = prefix * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / (x + 5 - a - ...))),
    # evaluated by the modified Lentz method.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    fraction = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        delta = c * d
        fraction *= delta
        if abs(delta - 1) < 1e-15:
            break
    return prefix * fraction
