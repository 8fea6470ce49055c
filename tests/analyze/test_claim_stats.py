"""Claim statistics (engine/analyze/claim_stats.py) against independent computations: scipy's
regression, statsmodels' z-TOST, a simulation of the power formula, and the verdict rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import ztost

from engine.analyze.claim_stats import (decide, minimum_detectable, power_at, tost_p, trend_across_models)
from engine.kernel.contracts import ClaimEstimate, ClaimOptions

Z = stats.norm.ppf(0.975)


def estimate(value: float, se: float, p: float | None = None) -> ClaimEstimate:
    p = 2 * stats.norm.sf(abs(value) / se) if p is None else p
    return ClaimEstimate(value, value - Z * se, value + Z * se, p, 100, "difference", "z-test")


def test_trend_is_scipys_regression_on_log2_parameters():
    rates = np.array([0.4, 0.2, 0.7, 0.8, 0.5, 1.0])
    params = np.array([8, 24, 70, 100, 200, 405])
    est = trend_across_models(rates, params, n=60, percent=True)
    fit = stats.linregress(np.log2(params), rates)
    t = stats.t.ppf(0.975, len(rates) - 2)
    assert est.value == pytest.approx(fit.slope) and est.p == pytest.approx(fit.pvalue)
    assert (est.low, est.high) == pytest.approx((fit.slope - t * fit.stderr, fit.slope + t * fit.stderr))


def test_trend_needs_three_models():
    est = trend_across_models(np.array([0.1, 0.5]), np.array([1, 2]), n=20, percent=True)
    assert est.reason is not None and "3 models" in est.reason and math.isnan(est.value)


def test_tost_is_statsmodels_ztost():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.2, 80)
    se = x.std(ddof=1) / math.sqrt(len(x))
    est = estimate(float(x.mean()), se)
    assert tost_p(est, 0.45, 0.55) == pytest.approx(ztost(x, 0.45, 0.55)[0], rel=1e-6)


def test_power_at_matches_a_simulation_of_the_estimate():
    est = estimate(0.1, 0.05)
    rng = np.random.default_rng(1)
    draws = rng.normal(0.12, 0.05, 20000)
    simulated = float(np.mean(np.abs(draws / 0.05) > Z))
    assert power_at(est, 0.12) == pytest.approx(simulated, abs=0.015)
    assert power_at(est, minimum_detectable(est)) == pytest.approx(0.80, abs=1e-3)


def options(**kw) -> ClaimOptions:
    return ClaimOptions(claim="c", test="t", **kw)


def test_verdicts():
    positive = options(direction="positive", effect=0.3)
    assert decide(estimate(0.3, 0.05), positive, 1e-8, 1e-8).verdict == "supported"
    assert decide(estimate(-0.3, 0.05), positive, 1e-8, 1e-8).verdict == "contradicted"
    # Not significant, and the interval [-0.09, 0.11] rules out the claimed 0.3: contradicted.
    calm = decide(estimate(0.01, 0.05), positive, 0.84, 0.84)
    assert calm.verdict == "contradicted" and calm.power > 0.99
    # Not significant by its exact test, but the interval still reaches the claimed effect: open.
    reaching = ClaimEstimate(0.15, 0.05, 0.30, 0.25, 20, "difference", "sign-flip")
    assert decide(reaching, options(direction="positive", effect=0.2), 0.25, 0.25).verdict == \
        "not resolvable with this design"
    # Not significant and underpowered: the design cannot tell.
    vague = decide(estimate(0.1, 0.2), positive, 0.6, 0.6)
    assert vague.verdict == "not resolvable with this design" and vague.power < 0.8
    # Holm's correction, not the raw p, decides.
    assert decide(estimate(0.3, 0.14), options(direction="positive"), 0.03, 0.09).verdict != "supported"


def test_range_verdicts():
    claim = options(range=(0.45, 0.55))
    inside = estimate(0.5, 0.01)
    assert decide(inside, claim, tost_p(inside, 0.45, 0.55), tost_p(inside, 0.45, 0.55)).verdict == "supported"
    outside = estimate(0.2, 0.05)
    assert decide(outside, claim, 1.0, 1.0).verdict == "contradicted"
    wide = estimate(0.5, 0.2)
    assert decide(wide, claim, tost_p(wide, 0.45, 0.55), 0.6).verdict == "not resolvable with this design"


def test_claim_options_need_a_direction_or_a_range():
    with pytest.raises(ValueError):
        options()
    with pytest.raises(ValueError):
        options(direction="positive", range=(0, 1))
    with pytest.raises(ValueError):
        options(range=(0.5, 0.4))
