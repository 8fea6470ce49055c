"""Provider-vs-size statistics against independent computations on synthetic data."""

import math

import numpy as np
import pytest
from scipy import stats

from engine.scenarios.jailbreak.analysis.decomposition import eta2_interval, group_residuals, one_way, risk_ratio, scale_regression

RNG = np.random.default_rng(42)


def test_scale_regression_matches_linregress_and_recovers_a_known_slope():
    params = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], float)
    asr = 0.5 - 0.03 * np.log2(params) + RNG.normal(0, 0.01, len(params))
    fit = scale_regression(asr, params)
    ref = stats.linregress(np.log2(params), asr)
    assert fit.slope_per_doubling == pytest.approx(ref.slope)
    assert fit.r2 == pytest.approx(ref.rvalue ** 2)
    assert fit.p_value == pytest.approx(ref.pvalue)
    t = stats.t.ppf(0.975, len(params) - 2)
    assert fit.slope_low == pytest.approx(ref.slope - t * ref.stderr)
    assert fit.slope_low < -0.03 < fit.slope_high


def test_one_way_matches_textbook_formulas_and_scipy():
    groups = ["a"] * 4 + ["b"] * 5 + ["c"] * 3
    y = np.array([0.1, 0.15, 0.12, 0.08, 0.4, 0.35, 0.42, 0.38, 0.45, 0.2, 0.22, 0.25])
    res = one_way(y, groups, seed=1, n_permutations=2000)
    grand = y.mean()
    arrays = [y[np.array(groups) == g] for g in "abc"]
    ss_b = sum(len(a) * (a.mean() - grand) ** 2 for a in arrays)
    ss_t = ((y - grand) ** 2).sum()
    ms_w = (ss_t - ss_b) / (len(y) - 3)
    assert res.eta2 == pytest.approx(ss_b / ss_t)
    assert res.omega2 == pytest.approx((ss_b - 2 * ms_w) / (ss_t + ms_w))
    f_ref = stats.f_oneway(*arrays)
    assert res.f_stat == pytest.approx(f_ref.statistic) and res.p_f == pytest.approx(f_ref.pvalue)
    assert res.p_permutation < 0.01 and res.eta2_low <= res.eta2 <= res.eta2_high
    assert res.null_eta2 == pytest.approx(2 / 11)


def test_eta_squared_under_no_effect_is_about_k_minus_1_over_n_minus_1():
    """With 12 groups and 21 units and no group effect, eta-squared averages (k-1)/(N-1) = 0.55."""
    groups = [f"p{i % 12}" for i in range(21)]
    etas, ps = [], []
    for s in range(300):
        y = np.random.default_rng(s).normal(0.3, 0.1, 21)
        res = one_way(y, groups, seed=s, n_permutations=200)
        etas.append(res.eta2)
        ps.append(res.p_permutation)
    assert np.mean(etas) == pytest.approx(11 / 20, abs=0.03)
    assert np.mean(np.array(ps) < 0.05) < 0.1  # the permutation test holds its level


def test_eta2_interval_covers_the_population_value_at_its_nominal_rate():
    """Fixed group means, normal noise: the population eta^2 = lambda/(lambda+N) is known exactly."""
    groups = np.repeat(np.arange(6), [1, 2, 2, 3, 4, 4])
    means = np.array([0.0, 0.3, -0.2, 0.5, 0.1, -0.4])[groups]
    sigma, n = 0.3, len(groups)
    lam = float(((means - means.mean()) ** 2).sum() / sigma**2)
    truth = lam / (lam + n)
    covered = []
    for s in range(400):
        y = means + np.random.default_rng(s).normal(0, sigma, n)
        res = one_way(y, groups, seed=s, n_permutations=10)
        assert 0 <= res.eta2_low <= res.eta2_high < 1
        covered.append(res.eta2_low <= truth <= res.eta2_high)
    assert 0.91 <= np.mean(covered) <= 0.985


def test_eta2_interval_matches_the_noncentral_f_definition():
    f, d1, d2 = 4.2, 5, 14
    low, high = eta2_interval(f, d1, d2)
    lam_low, lam_high = low * 20 / (1 - low), high * 20 / (1 - high)
    assert stats.ncf.cdf(f, d1, d2, lam_low) == pytest.approx(0.975, abs=1e-6)
    assert stats.ncf.cdf(f, d1, d2, lam_high) == pytest.approx(0.025, abs=1e-6)
    # An F below the central 97.5% point gives a lower bound of exactly zero.
    assert eta2_interval(0.5, d1, d2)[0] == 0.0


def test_group_residuals_recover_planted_offsets():
    params = np.tile([2.0, 8.0, 32.0, 128.0], 3)
    offsets = {"g": -0.15, "m": 0.0, "n": 0.15}
    groups = np.repeat(list(offsets), 4)
    asr = 0.3 + np.array([offsets[g] for g in groups]) + RNG.normal(0, 0.005, 12)
    res = {r.group: r for r in group_residuals(asr, params, groups)}
    for g, off in offsets.items():
        assert res[g].mean == pytest.approx(off, abs=0.02)
        assert res[g].low <= res[g].mean <= res[g].high and res[g].n == 4


def test_risk_ratio_and_katz_interval():
    rr = risk_ratio(39, 100, 9, 100)
    se = math.sqrt(1 / 39 - 1 / 100 + 1 / 9 - 1 / 100)
    assert rr.ratio == pytest.approx(39 / 9)
    assert rr.low == pytest.approx(39 / 9 * math.exp(-1.959963984540054 * se))
    assert math.isnan(risk_ratio(0, 10, 3, 10).ratio)


def test_one_way_refuses_degenerate_designs():
    with pytest.raises(ValueError, match="at least 2 groups"):
        one_way([0.1, 0.2], ["a", "b"], seed=0)


def _residual_design():
    """21 models: providers of 3, 3, 2 x 6 and 1 x 3 models, sizes spread over 1B to 512B."""
    groups = np.array(["t1"] * 3 + ["t2"] * 3 + [f"d{i}" for i in range(6) for _ in range(2)] + ["s0", "s1", "s2"])
    params = 2.0 ** np.random.default_rng(8).uniform(0, 9, len(groups))
    return groups, params


def test_group_residual_interval_is_the_variance_formula_with_the_groups_own_intercept():
    groups, params = _residual_design()
    y = 0.4 - 0.02 * np.log2(params) + np.random.default_rng(1).normal(0, 0.08, len(groups))
    x = np.column_stack([np.ones(len(y)), np.log2(params)])
    hat = x @ np.linalg.inv(x.T @ x) @ x.T
    e = y - hat @ y
    for r in group_residuals(y, params, groups):
        one = (groups == r.group).astype(float)
        m, c = one.sum(), one @ (np.eye(len(y)) - hat) @ one
        augmented = np.column_stack([x, one])
        rss = np.sum((y - augmented @ np.linalg.lstsq(augmented, y, rcond=None)[0]) ** 2)
        half = stats.t.ppf(0.975, len(y) - 3) * math.sqrt(rss / (len(y) - 3) * c) / m  # sigma^2 c / m^2
        assert r.mean == pytest.approx(one @ e / m) and r.df == len(y) - 3 and r.n == m
        assert (r.low, r.high) == pytest.approx((r.mean - half, r.mean + half))


def test_group_residual_intervals_cover_at_their_nominal_rate_with_no_provider_effect():
    """ASR = line + normal between-model noise, no provider effect: every provider's expected mean residual
    is 0. The old bootstrap over a provider's models covered 52% (2 models) and 75% (3 models)."""
    groups, params = _residual_design()
    covered = {1: [], 2: [], 3: []}
    for s in range(400):
        y = 0.3 - 0.01 * np.log2(params) + np.random.default_rng(s).normal(0, 0.1, len(groups))
        for r in group_residuals(y, params, groups):
            covered[r.n].append(r.low <= 0 <= r.high)
    for n, hits in covered.items():  # 400 runs x 3-6 providers; binomial SE of 95% coverage under 1 point
        assert 0.93 <= np.mean(hits) <= 0.97, (n, np.mean(hits))


def test_group_residuals_say_when_no_interval_can_be_given():
    # Four models, one provider holding all but one: N - 3 = 1 df is left, so an interval exists; with
    # three models no degree of freedom is left for any provider.
    three = group_residuals(np.array([0.1, 0.3, 0.2]), np.array([1.0, 4.0, 16.0]), ["a", "a", "b"])
    assert all(math.isnan(r.low) and r.df == 0 for r in three)
    four = group_residuals(np.array([0.1, 0.3, 0.2, 0.5]), np.array([1.0, 4.0, 16.0, 2.0]), ["a", "a", "a", "b"])
    assert all(r.df == 1 and r.low < r.mean < r.high for r in four)
