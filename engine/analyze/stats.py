"""Interval estimates. Wilson for proportions; the score interval for a ratio of two proportions
(relative reduction); a seeded percentile bootstrap over units for means."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.proportion import (confint_proportions_2indep, proportion_confint,
                                          test_proportions_2indep)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int


def wilson(successes: int, n: int, alpha: float = 0.05) -> Estimate:
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return Estimate(successes / n, float(low), float(high), n)


NOT_ESTIMABLE_NO_CONTROL_EVENTS = "not estimable: no events without the instructions"


def _binary_count(values: np.ndarray | list[float], arm: str) -> tuple[int, int]:
    data = np.asarray(values, dtype=float)
    if not np.all((data == 0) | (data == 1)):
        raise ValueError(f"relative_reduction needs 0/1 outcomes; the {arm} arm has other values")
    return int(data.sum()), len(data)


def ratio_score_interval(count_treated: int, n_treated: int, count_control: int, n_control: int,
                         alpha: float = 0.05) -> tuple[float, float]:
    """Score interval for RR = p_treated / p_control of two independent binomial arms (Koopman 1984;
    Miettinen & Nurminen 1985, with their n / (n - 1) variance correction), valid at zero counts.
    Needs count_control > 0. statsmodels' closed form (Nam 1995's cubic,
    `confint_proportions_2indep(..., compare="ratio", method="score")`) is used unless an arm is all
    events: there (statsmodels 0.15) its roots can be complex, NaN or wrong (1/1 vs 1/1 gives
    [1.0, 8.7]), so the same score test (`test_proportions_2indep`, method "score", the
    Miettinen-Nurminen correction) is inverted numerically on the log scale instead. Elsewhere the
    two agree to 1e-5 on every table with both arms up to 12 units."""
    if count_control <= 0 or n_treated <= 0 or n_control <= 0:
        raise ValueError("the ratio needs events in the control arm and units in both arms")
    rr = (count_treated / n_treated) / (count_control / n_control)
    if count_treated == n_treated or count_control == n_control:
        return _invert_ratio_score_test(count_treated, n_treated, count_control, n_control, rr, alpha)
    with np.errstate(all="ignore"):
        low, high = confint_proportions_2indep(count_treated, n_treated, count_control, n_control,
                                               compare="ratio", method="score", alpha=alpha)
    return (0.0 if count_treated == 0 else float(np.real(low))), float(np.real(high))


def _invert_ratio_score_test(x1: int, n1: int, x2: int, n2: int, rr: float, alpha: float) -> tuple[float, float]:
    def excess(log_ratio: float) -> float:  # p-value minus alpha; positive inside the interval
        with np.errstate(all="ignore"):
            p = test_proportions_2indep(x1, n1, x2, n2, value=math.exp(log_ratio), compare="ratio",
                                        method="score", correction=True).pvalue
        return float(p) - alpha

    def bound(start: float, step: float) -> float:
        inner = start
        outer = inner + step
        while excess(outer) > 0:
            inner, outer = outer, outer + step
            step *= 2
        return math.exp(optimize.brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-12))

    # Start a little off the estimate: at it the score test's variance can be 0 (e.g. both arms all events).
    centre = math.log(rr) if rr > 0 else math.log(1e-9)
    low = 0.0 if x1 == 0 else bound(centre - 1e-6, -0.5)
    high = bound(centre + 1e-6, 0.5)
    return low, high


def relative_reduction(baseline: np.ndarray | list[float], treated: np.ndarray | list[float],
                       alpha: float = 0.05) -> Estimate | None:
    """Relative reduction 1 - RR, RR = p_treated / p_baseline, of two independent arms of 0/1
    outcomes, with the score interval for RR (`ratio_score_interval`) mapped to 1 - RR: no
    resampling, and valid when the treated arm has no events (then the estimate is 100% and the
    interval's lower end says how small the reduction could be). None when either arm is empty or the
    baseline has no events: no reduction can be estimated (NOT_ESTIMABLE_NO_CONTROL_EVENTS).
    N is the number of units in both arms."""
    k_base, n_base = _binary_count(baseline, "baseline")
    k_treat, n_treat = _binary_count(treated, "treated")
    if n_base == 0 or n_treat == 0 or k_base == 0:
        return None
    rr = (k_treat / n_treat) / (k_base / n_base)
    low, high = ratio_score_interval(k_treat, n_treat, k_base, n_base, alpha)
    return Estimate(1 - rr, 1 - high, 1 - low, n_base + n_treat)


def bootstrap_mean(values: np.ndarray | list[float], seed: int, n_resamples: int = 2000,
                   alpha: float = 0.05) -> Estimate:
    """Mean with a percentile bootstrap interval, resampling the units given (e.g. trials)."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n == 1 or np.all(data == data[0]):
        # No variation to resample: the interval is the point (shown with its N).
        return Estimate(mean, mean, mean, n) if n > 1 else Estimate(mean, math.nan, math.nan, 1)
    result = stats.bootstrap((data,), np.mean, n_resamples=n_resamples, confidence_level=1 - alpha,
                             method="percentile", rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Estimate(mean, float(ci.low), float(ci.high), n)
