"""The statistics that decide a claim: a model-level trend in log2(parameters), two one-sided
tests for a claimed range, the power an estimate's precision gives at a claimed effect, and the
verdict after Holm's correction across a report's claims."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import statsmodels.api as sm
from scipy import stats

from engine.kernel.contracts import ClaimEstimate, ClaimOptions

ALPHA = 0.05
POWER = 0.80
Z = float(stats.norm.ppf(1 - ALPHA / 2))
Verdict = Literal["supported", "contradicted", "not resolvable with this design"]


def trend_across_models(rates: np.ndarray, params_b: np.ndarray, n: int, percent: bool) -> ClaimEstimate:
    """OLS slope of model-level rates on log2(parameters), per doubling, with its t interval and
    p-value: the models are the units that vary in size, so between-model variation is the error
    term (pooling trials would treat model identity as size). Needs 3 models of 2+ sizes."""
    y, x = np.asarray(rates, float), np.log2(np.asarray(params_b, float))
    quantity = "slope per doubling of parameters (model-level OLS)"
    if len(y) < 3 or len(np.unique(x)) < 2:
        return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, n, quantity, "t-test of the slope", percent,
                             f"needs at least 3 models of 2 or more sizes; have {len(y)}")
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    low, high = fit.conf_int(ALPHA)[1]
    p = float(fit.pvalues[1]) if np.isfinite(fit.bse[1]) and fit.bse[1] > 0 else math.nan
    return ClaimEstimate(float(fit.params[1]), float(low), float(high), p, n,
                         f"{quantity}, {len(y)} models", "t-test of the slope", percent)


def standard_error(est: ClaimEstimate) -> float:
    """The SE a 95% interval implies (normal approximation); NaN without an interval."""
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return math.nan
    return (est.high - est.low) / (2 * Z)


def tost_p(est: ClaimEstimate, low: float, high: float) -> float:
    """Two one-sided tests of low < effect < high (normal approximation from the interval): the
    larger of the two one-sided p-values."""
    se = standard_error(est)
    if not math.isfinite(se) or se <= 0:
        return math.nan
    p_above_low = 1 - stats.norm.cdf((est.value - low) / se)
    p_below_high = stats.norm.cdf((est.value - high) / se)
    return float(max(p_above_low, p_below_high))


def power_at(est: ClaimEstimate, effect: float) -> float:
    """Power of a two-sided test at alpha 0.05 to detect `effect` with the estimate's precision."""
    se = standard_error(est)
    if not math.isfinite(se) or se <= 0:
        return math.nan
    shift = abs(effect) / se
    return float(stats.norm.cdf(shift - Z) + stats.norm.cdf(-shift - Z))


def tost_power(est: ClaimEstimate, low: float, high: float) -> float:
    """Power of the two one-sided tests when the effect lies at the range's centre."""
    se = standard_error(est)
    if not math.isfinite(se) or se <= 0:
        return math.nan
    z = stats.norm.ppf(1 - ALPHA)
    return float(max(0.0, 2 * stats.norm.cdf((high - low) / 2 / se - z) - 1))


def minimum_detectable(est: ClaimEstimate) -> float:
    """The effect the design detects with 80% power at alpha 0.05, given the estimate's SE."""
    return (Z + float(stats.norm.ppf(POWER))) * standard_error(est)


@dataclass(frozen=True)
class Decision:
    p: float  # the claim's test p-value (TOST for a range), before correction
    holm_p: float
    power: float  # at the claimed effect (or the range's centre); NaN when no effect is claimed
    mdd: float
    verdict: Verdict
    why: str


def decision_p(est: ClaimEstimate, options: ClaimOptions) -> float:
    if est.reason is not None:
        return math.nan
    return tost_p(est, *options.range) if options.range is not None else est.p


def decide(est: ClaimEstimate, options: ClaimOptions, p: float, holm_p: float) -> Decision:
    """Supported: the test rejects (after Holm) in the claimed direction, or (range) both one-sided
    tests reject. Contradicted: it rejects in the opposite direction, or the design had 80% power
    at the claimed effect and found nothing, or (range) the 95% interval lies outside the range.
    Otherwise the design cannot resolve it."""
    unresolvable: Verdict = "not resolvable with this design"
    if est.reason is not None:
        return Decision(math.nan, math.nan, math.nan, math.nan, unresolvable, est.reason)
    mdd = minimum_detectable(est)
    if options.range is not None:
        low, high = options.range
        power = tost_power(est, low, high)
        if holm_p < ALPHA:
            return Decision(p, holm_p, power, mdd, "supported", "both one-sided tests reject an effect outside the range")
        if est.high < low or est.low > high:
            return Decision(p, holm_p, power, mdd, "contradicted", "the 95% interval lies outside the claimed range")
        return Decision(p, holm_p, power, mdd, unresolvable,
                        "the interval overlaps the range but is too wide to lie within it")
    sign = 1 if options.direction == "positive" else -1
    power = power_at(est, options.effect) if options.effect is not None else math.nan
    if math.isfinite(holm_p) and holm_p < ALPHA:
        if sign * est.value > 0:
            return Decision(p, holm_p, power, mdd, "supported", f"significant in the claimed ({options.direction}) direction")
        return Decision(p, holm_p, power, mdd, "contradicted", "significant in the opposite direction")
    # A null result contradicts a claimed size only when the interval itself rules that size out (the
    # power, from the interval's width, can disagree with an exact test on few clusters).
    reach = est.high if sign > 0 else -est.low
    if options.effect is not None and math.isfinite(reach) and reach < options.effect:
        return Decision(p, holm_p, power, mdd, "contradicted",
                        f"not significant, and the 95% interval rules out the claimed effect of {options.effect:g} "
                        f"(the design had {power:.0%} power at it)")
    why = "not significant" + (f"; the design had {power:.0%} power at the claimed effect" if math.isfinite(power)
                               else "; no effect size claimed, so no power to judge a null result")
    return Decision(p, holm_p, power, mdd, unresolvable, why)
