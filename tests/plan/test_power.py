"""Plan-time precision and power (engine/plan/power.py), each formula against an independent
computation: statsmodels' Wilson interval, and simulations of the design that must reach the stated
power within their Monte Carlo tolerance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from engine.plan.power import (centred_arms, design_effect, mdd_means, mdd_rates, power_two_rates, rate_halfwidth,
                               trials_for_halfwidth)

REPS = 3000
# Monte Carlo SE of a power near 0.8 over REPS replications is about 0.0073; 4 SEs, plus the
# normal approximation's own error at these sizes.
TOLERANCE = 0.04


@pytest.mark.parametrize("k, n", [(15, 50), (1, 20), (0, 12), (37, 40), (500, 1000)])
def test_halfwidth_is_the_wilson_intervals(k, n):
    low, high = proportion_confint(k, n, method="wilson")
    assert rate_halfwidth(k / n, n) == pytest.approx((high - low) / 2, rel=1e-9)


def test_design_effect_divides_the_sample():
    # With deff 2, n trials have the half-width of n / 2 independent trials.
    assert rate_halfwidth(0.3, 200, deff=design_effect(11, 0.1)) == pytest.approx(rate_halfwidth(0.3, 100))
    assert design_effect(1, 0.9) == 1.0
    with pytest.raises(ValueError):
        design_effect(3, 1.5)


@pytest.mark.parametrize("p, target, deff", [(0.5, 0.05, 1.0), (0.1, 0.03, 1.0), (0.3, 0.1, 1.7)])
def test_trials_for_halfwidth_is_the_smallest_that_reaches_it(p, target, deff):
    n = trials_for_halfwidth(p, target, deff)
    assert rate_halfwidth(p, n, deff) <= target < rate_halfwidth(p, n - 1, deff)


def _rejections(pvalues: np.ndarray) -> float:
    return float(np.mean(pvalues < 0.05))


@pytest.mark.parametrize("p, n", [(0.3, 100), (0.1, 200), (0.5, 40)])
def test_mdd_of_two_independent_rates_has_its_power_in_simulation(p, n):
    delta = mdd_rates(p, n)
    rng = np.random.default_rng(1)
    low, high = centred_arms(p, delta)
    a = rng.binomial(n, low, REPS)
    b = rng.binomial(n, high, REPS)
    pvalues = np.array([proportions_ztest([x, y], [n, n])[1] if 0 < x + y < 2 * n else 1.0 for x, y in zip(a, b)])
    assert _rejections(pvalues) == pytest.approx(0.80, abs=TOLERANCE)


def _paired(rng, p1: float, p2: float, rho: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of 0/1 outcomes with marginals p1, p2 and correlation rho."""
    p11 = p1 * p2 + rho * math.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    probs = np.array([p11, p1 - p11, p2 - p11, 1 - p1 - p2 + p11])
    cells = rng.choice(4, size=n, p=probs)
    return (cells <= 1).astype(int), np.isin(cells, (0, 2)).astype(int)


def test_mdd_of_paired_rates_has_its_power_in_simulation():
    p, n, rho = 0.3, 80, 0.5
    delta = mdd_rates(p, n, rho=rho)
    assert delta < mdd_rates(p, n)  # pairing on correlated items helps
    rng = np.random.default_rng(2)
    rejected = 0
    for _ in range(REPS):
        x, y = _paired(rng, *centred_arms(p, delta), rho, n)
        d = y - x
        se = math.sqrt(max(np.mean(d != 0) - np.mean(d) ** 2, 1e-12) / n)
        rejected += abs(np.mean(d)) / se > stats.norm.ppf(0.975)
    assert rejected / REPS == pytest.approx(0.80, abs=TOLERANCE)


def test_mdd_of_clustered_rates_has_its_power_in_simulation():
    # 30 clusters of 6 per arm, ICC 0.2: a beta-binomial with that ICC, analysed on cluster means.
    p, clusters, m, icc = 0.3, 30, 6, 0.2
    n = clusters * m
    delta = mdd_rates(p, n, deff=design_effect(m, icc))
    rng = np.random.default_rng(3)

    def arm(rate: float) -> np.ndarray:
        a = rate * (1 - icc) / icc
        b = (1 - rate) * (1 - icc) / icc
        return rng.binomial(m, rng.beta(a, b, clusters)) / m

    low, high = centred_arms(p, delta)
    pvalues = np.array([stats.ttest_ind(arm(low), arm(high)).pvalue for _ in range(REPS)])
    # The t-test on 30 cluster means per arm has a little less power than the z approximation.
    assert _rejections(pvalues) == pytest.approx(0.80, abs=TOLERANCE + 0.02)


def test_mdd_of_means_has_its_power_in_simulation():
    sd, n = 2.0, 50
    delta = mdd_means(sd, n)
    rng = np.random.default_rng(4)
    pvalues = stats.ttest_ind(rng.normal(0, sd, (REPS, n)), rng.normal(delta, sd, (REPS, n)), axis=1).pvalue
    assert _rejections(pvalues) == pytest.approx(0.80, abs=TOLERANCE)


def test_power_is_alpha_without_a_difference_and_grows_with_it():
    assert power_two_rates(0.3, 0.3, 100) == pytest.approx(0.05, abs=1e-9)
    assert power_two_rates(0.3, 0.4, 100) < power_two_rates(0.3, 0.5, 100) < power_two_rates(0.3, 0.5, 400)


def test_no_difference_is_detectable_with_one_trial_per_arm():
    from engine.analyze.report_power import Layout, rate_mdd

    # Even 0% vs 100% is one discordant pair: Newcombe's interval does not exclude 0.
    assert rate_mdd(Layout(1, 1, paired=True), 0.5) is None
    assert rate_mdd(Layout(1, 1, paired=False), 0.5) is None


def test_an_interval_computed_one_study_at_a_time_gives_the_same_power():
    # The path an interval with no vectorised form takes (e.g. one the report computes on each study's
    # cluster totals): a t interval written per study decides as the vectorised one does.
    from engine.plan.power import (PER_STUDY_DRAWS, ClusteredRates, ClusterRule, per_study_decide, t_critical,
                                   t_decide)

    def t_of_totals(first, second, m, alpha):
        d = (second - first) / m
        half = t_critical(len(d), alpha) * d.std(ddof=1) / math.sqrt(len(d))
        return d.mean() - half, d.mean() + half

    design = ClusteredRates(12, 3, 0.1, draws=PER_STUDY_DRAWS)
    one = ClusterRule("t", t_critical, 10, per_study_decide(t_of_totals), draws=PER_STUDY_DRAWS)
    many = ClusterRule("t", t_critical, 10, t_decide)
    for p1, p2 in ((0.3, 0.6), (0.5, 0.5), (0.2, 0.9)):
        assert design.power(p1, p2, one) == design.power(p1, p2, many)
    assert ClusteredRates(9, 3, 0.1).power(0.1, 0.9, many) == 0.0  # fewer clusters than the rule needs
