"""Relative reduction 1 - RR with the score interval for the ratio of two independent proportions:
against an independent implementation of the Miettinen-Nurminen score interval, against statsmodels
where its closed form holds, and by exact coverage at small counts (zero events included). A scenario's section that prints it is
checked with that scenario's tests."""

import warnings

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep
from miettinen_nurminen import mn_interval

from engine.analyze.stats import ratio_score_interval, relative_reduction

SMALL = [(x1, n1, x2, n2) for n1 in (1, 3, 8) for n2 in (1, 4, 9)
         for x1 in range(n1 + 1) for x2 in range(1, n2 + 1)]


@pytest.mark.parametrize("x1, n1, x2, n2", SMALL)
def test_interval_matches_an_independent_miettinen_nurminen_inversion(x1, n1, x2, n2):
    low, high = mn_interval(x1, n1, x2, n2)
    est = relative_reduction([1] * x2 + [0] * (n2 - x2), [1] * x1 + [0] * (n1 - x1))
    rr = (x1 / n1) / (x2 / n2)
    assert est.value == pytest.approx(1 - rr, abs=1e-12)
    assert est.n == n1 + n2
    assert est.high == pytest.approx(1 - low, abs=1e-6)  # 1 - RR reverses the bounds
    assert est.low == pytest.approx(1 - high, rel=1e-5, abs=1e-6)
    assert est.low <= est.value <= est.high


@pytest.mark.parametrize("x1, n1, x2, n2", [(3, 20, 10, 20), (0, 20, 5, 20), (0, 10, 1, 10), (7, 30, 4, 12),
                                            (1, 50, 20, 40)])
def test_interval_is_statsmodels_score_ratio_interval_where_an_arm_is_not_all_events(x1, n1, x2, n2):
    low, high = confint_proportions_2indep(x1, n1, x2, n2, compare="ratio", method="score")
    got = ratio_score_interval(x1, n1, x2, n2)
    assert got[0] == pytest.approx(max(float(low), 0.0), abs=1e-9)
    assert got[1] == pytest.approx(float(high), rel=1e-9)


def test_all_events_in_an_arm_gives_a_real_interval_where_the_closed_form_fails():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed = confint_proportions_2indep(2, 10, 10, 10, compare="ratio", method="score")
    assert np.iscomplexobj(closed[0]) or not closed[0] < 0.2 < closed[1]  # the statsmodels 0.15 cubic
    low, high = ratio_score_interval(2, 10, 10, 10)
    assert (low, high) == pytest.approx(mn_interval(2, 10, 10, 10), rel=1e-5)
    assert low < 0.2 < high


def test_zero_treated_events_is_100_percent_with_a_lower_bound_below_it():
    est = relative_reduction([1] * 5 + [0] * 15, [0] * 20)
    low, high = mn_interval(0, 20, 5, 20)
    assert est.value == 1.0 and est.high == 1.0 and low == 0.0
    assert est.low == pytest.approx(1 - high, rel=1e-6)
    assert 0.2 < est.low < 0.4  # 0 of 20 against 5 of 20 cannot pin the reduction near 100%


def test_zero_control_events_or_an_empty_arm_is_not_estimable():
    assert relative_reduction(np.zeros(8), np.zeros(8)) is None
    assert relative_reduction(np.zeros(8), np.ones(8)) is None
    assert relative_reduction([], [1, 0]) is None and relative_reduction([1, 0], []) is None
    with pytest.raises(ValueError, match="0/1 outcomes"):
        relative_reduction([0.5, 1.0], [0.0, 1.0])


def _exact_coverage(p_control: float, p_treated: float, n: int) -> tuple[float, float]:
    """Exact coverage of the true 1 - RR, enumerating every pair of counts, given a control event
    (otherwise no interval is given); and the probability of no interval."""
    truth = 1 - p_treated / p_control
    covered = mass = 0.0
    for x2 in range(1, n + 1):
        for x1 in range(n + 1):
            prob = stats.binom.pmf(x1, n, p_treated) * stats.binom.pmf(x2, n, p_control)
            est = relative_reduction([1] * x2 + [0] * (n - x2), [1] * x1 + [0] * (n - x1))
            mass += prob
            covered += prob * (est.low - 1e-9 <= truth <= est.high + 1e-9)
    return covered / mass, 1 - mass


@pytest.mark.parametrize("p_control, p_treated, n", [(0.4, 0.1, 12), (0.3, 0.05, 15), (0.25, 0.25, 10),
                                                     (0.6, 0.2, 8), (0.5, 0.02, 20)])
def test_exact_coverage_is_near_nominal_at_small_counts(p_control, p_treated, n):
    coverage, not_estimable = _exact_coverage(p_control, p_treated, n)
    # Score intervals for a ratio are close to nominal at small n (Miettinen & Nurminen 1985;
    # Fagerland, Lydersen & Laake 2015); the old percentile bootstrap, at 0 treated events, covered
    # nothing below 100% and so missed every true reduction under 100%.
    # (0.5, 0.02, 20): two thirds of the tables have 0 treated events.
    assert 0.93 <= coverage <= 0.99, (coverage, not_estimable)


def test_no_reduction_is_tested_by_inverting_the_score_interval_and_all_events_give_p_1():
    """Issue 21: with both arms all events the score test's p is NaN; the family's inversion gives 1, and
    elsewhere p < 0.05 exactly when the 95% interval excludes 0."""
    from engine.analyze.stats import inverted_p, relative_reduction

    est = relative_reduction([1] * 10, [1] * 10)
    assert est.value == 0 and inverted_p(est.interval_at) == 1.0
    for treated in ([0] * 10, [1] * 3 + [0] * 7, [1] * 6 + [0] * 4):
        est = relative_reduction([1] * 8 + [0] * 2, treated)
        p = inverted_p(est.interval_at)
        assert (p < 0.05) == (not est.low <= 0 <= est.high)
        assert (est.low, est.high) == est.interval_at(0.05)
