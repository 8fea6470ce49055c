"""Intervals against independent computations."""

import math

import numpy as np
import pytest

from engine.analyze.stats import bootstrap_mean, wilson


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (40, 120)])
def test_wilson_matches_closed_form(k, n):
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    est = wilson(k, n)
    assert est.value == pytest.approx(p)
    assert est.low == pytest.approx(centre - half, abs=1e-9)
    assert est.high == pytest.approx(centre + half, abs=1e-9)


def test_wilson_empty_is_nan_with_zero_n():
    est = wilson(0, 0)
    assert est.n == 0 and math.isnan(est.value)


def test_bootstrap_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(3).normal(2.0, 1.0, size=40)
    a, b = bootstrap_mean(values, seed=11), bootstrap_mean(values, seed=11)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.low < values.mean() < a.high
    # Percentile bootstrap of a mean is close to the normal interval for n=40.
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert a.high - a.low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_bootstrap_degenerate_cases():
    assert bootstrap_mean([5.0, 5.0, 5.0], seed=0).low == 5.0
    single = bootstrap_mean([2.0], seed=0)
    assert single.value == 2.0 and single.n == 1 and math.isnan(single.low)


def test_relative_reduction_is_one_minus_the_statsmodels_score_ratio_interval():
    from statsmodels.stats.proportion import confint_proportions_2indep

    from engine.analyze.stats import relative_reduction

    off = np.array([1.0] * 20 + [0.0] * 20)  # 50%
    on = np.array([1.0] * 10 + [0.0] * 30)   # 25%
    est = relative_reduction(off, on)
    assert est.value == 0.5 and est.n == 80
    low, high = confint_proportions_2indep(10, 40, 20, 40, compare="ratio", method="score")
    assert (est.low, est.high) == pytest.approx((1 - high, 1 - low), abs=1e-9)
    assert relative_reduction(np.zeros(5), on) is None


def test_the_fast_quantile_equals_scipys_ppf_everywhere():
    # `quantile` skips ppf's argument handling inside the support; it must give ppf's value bit for bit
    # there, and ppf's own value (bounds, NaN) at the edges and for invalid shapes.
    from itertools import product

    from scipy import stats

    from engine.analyze.stats import quantile

    rng = np.random.default_rng(0)
    qs = [0.0, 1e-300, 1e-12, 0.025, 0.5, 0.975, 1 - 1e-12, 1.0, -0.1, 1.1, math.nan, *rng.random(30)]
    shapes = [-1.0, 0.0, 1e-300, 1e-3, 0.5, 1, 2.5, 7.3, 30, 1e6, math.inf, math.nan, *(rng.random(8) * 40)]

    def same(x: float, y: float) -> bool:  # equal, and both numpy floats (x / 0 is inf or NaN, not an error)
        return (x == y or (math.isnan(x) and math.isnan(y))) and type(x) is type(y) is np.float64

    with np.errstate(all="ignore"):
        for q in qs:
            assert same(quantile(stats.norm, q), stats.norm.ppf(q))
            for df in shapes:
                assert same(quantile(stats.t, q, df), stats.t.ppf(q, df)), (q, df)
            for a, b in product(shapes, shapes):
                assert same(quantile(stats.beta, q, a, b), stats.beta.ppf(q, a, b)), (q, a, b)
