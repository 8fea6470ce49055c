"""One procedure per estimate (issue 21, rule 1): an estimate's interval family `interval_at(alpha)`
-> the two-sided (1 - alpha) interval, and every p-value printed beside it the inversion of that
same family, so "the 95% interval excludes b" <=> "two-sided p < 0.05" holds by construction.

- `p_above(f, b)`: the one-sided p of "the quantity is above b": the beta at which the lower end of
  the two-sided (1 - 2 beta) interval reaches b (if the estimate is at or below b: 1 minus the beta
  at which the upper end does). Found by bisection on beta, which needs only that the intervals
  shrink as beta grows: it works for step functions (bootstrap quantiles, exact intervals) as for
  smooth ones. `p_below` symmetrically; `two_sided_p`; `claim_p` for a claim that the quantity lies
  in (low, high) (one end infinite: a one-sided test; both finite: the interval-based TOST).
- Families: normal, t, log-normal (ratios), quantiles of draws (a percentile bootstrap), BCa, and a
  monotone map of a family (1 - RR from RR).
- `holm_steps`: Holm's procedure at a family-wise one-sided level, with the level each claim is
  decided at and its Holm-adjusted p (rule 2).
Pure numpy/scipy: a simulation can call all of it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize, special, stats

IntervalAt = Callable[[float], tuple[float, float]]

# The bisection's range of beta: below FLOOR a p-value is reported as FLOOR; at beta = 0.5 the
# interval has shrunk to zero width (alpha = 1, or as near as a family allows).
FLOOR = 1e-12
WIDEST_ALPHA, NARROWEST_ALPHA = 2 * FLOOR, 1 - 1e-12
BISECTIONS = 60  # beta to within 0.5 / 2^60: far below any level a claim is decided at
Z_FLOOR = float(-special.ndtri(FLOOR))


def _at(family: IntervalAt, beta: float) -> tuple[float, float]:
    return family(min(max(2 * beta, WIDEST_ALPHA), NARROWEST_ALPHA))


def _first_beta(gap: Callable[[float], float]) -> float:
    """The beta in [FLOOR, 0.5] where `gap` (the interval's end minus the bound, signed so that it is
    positive when the test rejects, and rising with beta) turns positive; the caller has checked it
    is positive at 0.5. Searched on z = the normal quantile of 1 - beta, where most families' ends are
    near linear (a normal family's exactly): Brent's method takes a few steps for a smooth family, and
    for a step function (bootstrap quantiles) it brackets the jump as bisection would; bisection if
    the family gives NaN."""
    if gap(FLOOR) > 0:
        return FLOOR

    def signed(z: float) -> float:  # strictly negative where the test does not reject (a share's end sits
        g = gap(float(special.ndtr(-z)))  # at exactly 0 there), so the sign turns exactly at the root
        return g if g > 0 else g - 1e-9 * z

    try:
        z = float(optimize.brentq(signed, 0.0, Z_FLOOR, xtol=1e-12, rtol=1e-12, maxiter=200))
        step = 1e-12
        while not gap(float(special.ndtr(-z))) > 0 and z > 0:  # the root's rejecting side (a step's jump)
            z, step = max(z - step, 0.0), 2 * step
        return float(special.ndtr(-z))
    except (ValueError, RuntimeError):
        lo, hi = FLOOR, 0.5
        for _ in range(BISECTIONS):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if gap(mid) > 0 else (mid, hi)
        return hi


@dataclass(frozen=True)
class InvertedFamily:
    """A family that carries its own exact inversion, for one whose ends need a slow quantile function
    (searching the family would call it dozens of times per p-value). `p_above(b)` must be the value
    the search would find: the beta at which the lower end of the (1 - 2 beta) interval reaches b."""
    interval: IntervalAt
    p_above: Callable[[float], float]

    def __call__(self, alpha: float) -> tuple[float, float]:
        return self.interval(alpha)


def _one_sided(family: IntervalAt, bound: float, above: bool) -> float:
    if isinstance(family, InvertedFamily):
        p = family.p_above(bound)
        return min(max(p if above else 1 - p, FLOOR), 1.0)
    end, other = (0, 1) if above else (1, 0)
    sign = 1.0 if above else -1.0
    centre = _at(family, 0.5)
    if sign * (centre[end] - bound) > 0:  # the estimate is on the tested side
        return _first_beta(lambda beta: sign * (_at(family, beta)[end] - bound))
    if -sign * (centre[other] - bound) > 0:  # on the other side: 1 - the other test's p
        return 1 - _first_beta(lambda beta: -sign * (_at(family, beta)[other] - bound))
    return 0.5  # the estimate sits on the bound (or the family has no point there)


def p_above(family: IntervalAt, bound: float) -> float:
    """One-sided p-value of "the quantity is above `bound`", by inversion of `family`."""
    return _one_sided(family, bound, above=True)


def p_below(family: IntervalAt, bound: float) -> float:
    """One-sided p-value of "the quantity is below `bound`", by inversion of `family`."""
    return _one_sided(family, bound, above=False)


def two_sided_p(family: IntervalAt, null: float) -> float:
    """2 min(p_above, p_below), capped at 1: the smaller one is on the estimate's side (the other is 1
    minus it), so one inversion does."""
    centre = _at(family, 0.5)
    if centre[0] > null:
        return min(1.0, 2 * p_above(family, null))
    if centre[1] < null:
        return min(1.0, 2 * p_below(family, null))
    return 1.0


def claim_p(family: IntervalAt, low: float, high: float) -> float:
    """p-value of "the quantity lies in (low, high)": the larger of the one-sided p-values against its
    finite ends (one end: a one-sided test; two: the two one-sided tests of an equivalence claim)."""
    parts = ([p_above(family, low)] if math.isfinite(low) else []) + \
            ([p_below(family, high)] if math.isfinite(high) else [])
    return max(parts) if parts else 0.0


# -------------------------------------------------------------------------------------- families

def normal_family(value: float, se: float) -> IntervalAt:
    def at(alpha: float) -> tuple[float, float]:
        half = -float(special.ndtri(alpha / 2)) * se
        return value - half, value + half
    return at


def t_family(value: float, se: float, df: float) -> IntervalAt:
    def at(alpha: float) -> tuple[float, float]:
        half = -float(special.stdtrit(df, alpha / 2)) * se
        return value - half, value + half
    return at


def log_normal_family(ratio: float, se_log: float) -> IntervalAt:
    """A ratio's Wald interval on the log scale."""
    inner = normal_family(math.log(ratio), se_log)

    def at(alpha: float) -> tuple[float, float]:
        low, high = inner(alpha)
        return math.exp(low), math.exp(high)
    return at


def quantile_family(draws: np.ndarray) -> IntervalAt:
    """Percentile interval of resampled estimates: the alpha/2 and 1 - alpha/2 quantiles (no
    interpolation, so each end is a draw and the family is a step function of alpha)."""
    ordered = np.sort(np.asarray(draws, float))

    def at(alpha: float) -> tuple[float, float]:
        low, high = np.quantile(ordered, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
        return float(low), float(high)
    return at


def shift_family(value: float, null_draws: np.ndarray, centre: float) -> IntervalAt:
    """The interval that inverts a permutation (or other null-distribution) test under a location shift:
    value minus the null draws' quantiles taken about their `centre` (the statistic's value with no
    effect). Its lower end clears `centre` exactly when the test's one-sided p (the share of null draws
    at or above the value) is below alpha / 2; exact under the null when the draws include the
    observed arrangement (a step function of alpha)."""
    ordered = np.sort(np.asarray(null_draws, float))

    def at(alpha: float) -> tuple[float, float]:
        low, high = np.quantile(ordered, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
        return value - (float(high) - centre), value - (float(low) - centre)
    return at


def bca_family(draws: np.ndarray, estimate: float, jackknife: np.ndarray) -> IntervalAt:
    """Bias-corrected and accelerated bootstrap interval (Efron 1987) from the resampled estimates,
    the estimate and its leave-one-out (jackknife) values."""
    ordered = np.sort(np.asarray(draws, float))
    below = float(np.mean(ordered < estimate)) + 0.5 * float(np.mean(ordered == estimate))
    z0 = float(stats.norm.ppf(min(max(below, 0.5 / len(ordered)), 1 - 0.5 / len(ordered))))
    centred = np.mean(jackknife) - np.asarray(jackknife, float)
    spread = float(np.sum(centred ** 2))
    accel = float(np.sum(centred ** 3)) / (6 * spread ** 1.5) if spread > 0 else 0.0

    def level(z: float) -> float:
        w = z0 + z
        if 1 - accel * w <= 0:  # past the formula's pole: the end goes to the extreme draw
            return 1.0 if w > 0 else 0.0
        return float(stats.norm.cdf(z0 + w / (1 - accel * w)))

    def at(alpha: float) -> tuple[float, float]:
        z = float(stats.norm.ppf(alpha / 2))
        low, high = np.quantile(ordered, [level(z), level(-z)], method="inverted_cdf")
        return float(low), float(high)
    return at


def share_family(f: float, df_effect: int, df_error: int, n: int) -> IntervalAt:
    """Interval for the share of variance an effect explains, eta^2 = lambda / (lambda + n), from its F
    statistic by inverting the noncentral F for lambda (Steiger 2004). Its lower end is 0 exactly
    when the F test's p-value is at least alpha / 2, so its inversion against 0 is the F test."""
    def lam_for(prob: float) -> float:
        # cdf(F; lambda) falls as lambda grows; lambda = 0 when even the central F is past `prob`.
        if stats.f.cdf(f, df_effect, df_error) <= prob:
            return 0.0
        high = max(10.0, 2 * f * df_effect)
        while stats.ncf.cdf(f, df_effect, df_error, high) > prob:
            high *= 2
        return optimize.brentq(lambda lam: stats.ncf.cdf(f, df_effect, df_error, lam) - prob, 0.0, high)

    def at(alpha: float) -> tuple[float, float]:
        if math.isnan(f):
            return math.nan, math.nan
        low, high = lam_for(1 - alpha / 2), lam_for(alpha / 2)
        return low / (low + n), high / (high + n)
    return at


def mapped_family(family: IntervalAt, transform: Callable[[float], float], decreasing: bool) -> IntervalAt:
    """The family of a monotone transform of the quantity (e.g. 1 - RR from RR: decreasing)."""
    def at(alpha: float) -> tuple[float, float]:
        low, high = family(alpha)
        return (transform(high), transform(low)) if decreasing else (transform(low), transform(high))
    return at


# ---------------------------------------------------------------------------------- multiplicity

@dataclass(frozen=True)
class HolmStep:
    """Where a claim stands in Holm's procedure: decided at one-sided level `alpha` (its printed
    interval is the two-sided 1 - 2 alpha one), its `step` of `of`, and its Holm-adjusted p."""

    alpha: float
    step: int
    of: int
    adjusted: float


def holm_steps(pvalues: list[float], familywise: float = 0.025) -> list[HolmStep | None]:
    """Holm's step-down procedure over the finite p-values (None for a NaN: no test). Claim j in
    order of p is decided at familywise / (m - min(j, j0) + 1), j0 the first step that does not
    reject: the steps before j0 at their own level, every later one at j0's. The adjusted p is
    max over i <= j of (m - i + 1) p_(i), capped at 1, so adjusted < familywise <=> rejected."""
    given = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(given, key=lambda i: pvalues[i])
    m = len(order)
    out: list[HolmStep | None] = [None] * len(pvalues)
    adjusted, stopped = 0.0, None
    for j, i in enumerate(order, 1):
        adjusted = max(adjusted, min(1.0, (m - j + 1) * pvalues[i]))
        if stopped is None and adjusted >= familywise:
            stopped = j
        level = familywise / (m - (j if stopped is None else stopped) + 1)
        out[i] = HolmStep(level, j, m, adjusted)
    return out
