"""Test inversion (engine/analyze/inference.py) against the tests each family inverts: the z- and
t-tests, the F test (the noncentral-F share interval), a bootstrap's share of draws beyond the bound
(a step function), and Holm's procedure against statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from engine.analyze.inference import (bca_family, claim_p, holm_steps, log_normal_family, mapped_family,
                                      normal_family, p_above, p_below, quantile_family, share_family, t_family,
                                      two_sided_p)


@pytest.mark.parametrize("value, bound", [(0.3, 0.0), (-0.05, 0.0), (0.3, 0.25), (0.0, 0.0), (0.02, 0.1)])
def test_normal_and_t_families_invert_to_the_z_and_t_tests(value, bound):
    z = (value - bound) / 0.1
    assert p_above(normal_family(value, 0.1), bound) == pytest.approx(stats.norm.sf(z), abs=1e-9)
    assert p_below(normal_family(value, 0.1), bound) == pytest.approx(stats.norm.cdf(z), abs=1e-9)
    assert p_above(t_family(value, 0.1, 4), bound) == pytest.approx(stats.t.sf(z, 4), abs=1e-9)
    assert two_sided_p(t_family(value, 0.1, 4), bound) == pytest.approx(2 * stats.t.sf(abs(z), 4), abs=1e-9)


def test_a_claimed_range_is_the_larger_of_the_two_one_sided_tests():
    family = t_family(0.5, 0.02, 30)
    expected = max(stats.t.sf((0.5 - 0.45) / 0.02, 30), stats.t.cdf((0.5 - 0.55) / 0.02, 30))
    assert claim_p(family, 0.45, 0.55) == pytest.approx(expected, abs=1e-9)
    assert claim_p(family, 0.45, math.inf) == pytest.approx(stats.t.sf(2.5, 30), abs=1e-9)


def test_bootstrap_quantiles_a_step_function_invert_to_the_share_of_draws_beyond_the_bound():
    draws = np.random.default_rng(3).normal(0.1, 0.1, 1999)
    family = quantile_family(draws)
    assert p_above(family, 0.0) == pytest.approx(np.mean(draws <= 0.0), abs=1e-9)
    assert p_below(family, 0.25) == pytest.approx(np.mean(draws >= 0.25), abs=1e-9)
    # The interval at the inverted level reaches the bound; just below that level it does not.
    p = p_above(family, 0.0)
    assert family(2 * p)[0] > 0.0 >= family(2 * p - 1e-9)[0]


def test_the_noncentral_f_share_interval_inverts_to_the_f_test():
    for f, df1, df2 in [(3.0, 3, 10), (30.0, 4, 1), (9.0, 11, 8), (1.1, 2, 40)]:
        assert p_above(share_family(f, df1, df2, df1 + df2 + 2), 0.0) == pytest.approx(stats.f.sf(f, df1, df2),
                                                                                        abs=1e-9)
    # A share cannot go below 0: past an F test's p of 0.5 the family's zero-width interval sits on 0.
    assert stats.f.sf(0.5, 4, 10) > 0.5 and p_above(share_family(0.5, 4, 10, 15), 0.0) == 0.5


def test_bca_without_bias_or_skew_is_the_percentile_interval():
    draws = np.linspace(-1, 1, 2001)
    assert bca_family(draws, 0.0, np.zeros(10))(0.1) == quantile_family(draws)(0.1)


def test_a_monotone_map_carries_the_p_value():
    ratio = log_normal_family(0.5, 0.2)  # a risk ratio
    reduction = mapped_family(ratio, lambda r: 1 - r, decreasing=True)
    assert p_above(reduction, 0.4) == pytest.approx(p_below(ratio, 0.6), abs=1e-9)
    assert p_below(ratio, 0.6) == pytest.approx(stats.norm.cdf((math.log(0.5) - math.log(0.6)) / 0.2), abs=1e-9)


def test_holm_levels_and_adjusted_p_values():
    rng = np.random.default_rng(11)
    for _ in range(12):  # (multipletests runs the garbage collector on every call: 0.2-0.4 s)
        m = int(rng.integers(2, 7))
        p = list(rng.choice([rng.uniform(0, 0.03), rng.uniform(0, 1)], size=m))
        steps = holm_steps(p, 0.025)
        adjusted = multipletests(p, method="holm")[1]
        order = sorted(range(m), key=lambda i: p[i])
        rejected = [adjusted[i] < 0.025 for i in order]
        j0 = rejected.index(False) + 1 if False in rejected else m + 1
        for j, i in enumerate(order, 1):
            assert steps[i].adjusted == pytest.approx(adjusted[i], abs=1e-9)
            assert steps[i].alpha == pytest.approx(0.025 / (m - min(j, j0) + 1))
            assert (steps[i].adjusted < 0.025) == (p[i] < steps[i].alpha)
    assert holm_steps([math.nan, 0.01]) == [None, holm_steps([0.01])[0]]


@pytest.mark.parametrize("sums", [[0, 0, 0, 0, 0], [6, 6, 6, 6, 6], [3, 5, 1, 0, 4], [0, 0, 1, 0, 0]])
def test_a_clustered_rates_p_value_agrees_with_its_interval_at_every_bound(sums):
    """Korn-Graubard over 5 clusters of 6 (integer df): at alpha near 1 scipy's t quantile is exactly 0,
    and the narrowest interval was NaN, so a rate of 0 printed [0, 0.77] beside p = 1 against 0.9."""
    from engine.analyze.stats import rate_interval_of_totals

    family, _, _ = rate_interval_of_totals(np.array(sums, float), np.full(5, 6.0))
    low, high = family(0.05)
    assert all(math.isfinite(end) for end in family(1 - 1e-12))
    for bound in np.linspace(0.005, 0.995, 199):
        outside = bound < low or bound > high
        assert (two_sided_p(family, bound) < 0.05) == outside, (bound, low, high, two_sided_p(family, bound))
