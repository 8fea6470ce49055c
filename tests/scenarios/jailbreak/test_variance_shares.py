"""Provider eta-squared and size R-squared side by side, and their difference, instead of their ratio:
against first-principles computations, an independent permutation test, and simulation with known
answers, and the provider_vs_size section rendered from a trace table."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from engine import load_study
from engine.kernel.hashing import derived_seed
from engine.scenarios.jailbreak.analysis.data import JailbreakData
from engine.scenarios.jailbreak.analysis.decomposition import variance_shares
from engine.scenarios.jailbreak.report import ProviderVsSizeSection

K, N = 12, 21
GROUPS = np.array([f"p{i % K:02d}" for i in range(N)])
SIZES = 2 ** np.random.default_rng(42).uniform(1, 9, N)


def first_principles(y, sizes, groups):
    grand = y.mean()
    between = sum(len(y[groups == g]) * (y[groups == g].mean() - grand) ** 2 for g in np.unique(groups))
    eta2 = between / ((y - grand) ** 2).sum()
    r2 = stats.linregress(np.log2(sizes), y).rvalue ** 2
    return eta2, r2


def test_shares_and_difference_match_first_principles_and_an_independent_permutation_test():
    rng = np.random.default_rng(7)
    effect = dict(zip(np.unique(GROUPS), np.linspace(0.1, 0.6, K)))
    y = np.array([effect[g] for g in GROUPS]) + 0.02 * np.log2(SIZES) + rng.normal(0, 0.05, N)
    v = variance_shares(y, SIZES, GROUPS, seed=3, n_permutations=4000)
    eta2, r2 = first_principles(y, SIZES, GROUPS)
    assert (v.eta2, v.r2, v.difference) == pytest.approx((eta2, r2, eta2 - r2), abs=1e-12)
    assert (v.null_eta2, v.null_r2, v.null_difference) == pytest.approx((11 / 20, 1 / 20, 10 / 20))
    assert (v.k, v.n, v.n_permutations) == (K, N, 4000)
    assert 0 <= v.eta2_low <= v.eta2_high < 1 and 0 <= v.r2_low <= v.r2_high < 1
    # The interval inverts the permutation test under a shift: the estimate minus the permutation
    # quantiles taken about the no-effect value (recomputed here with other draws).
    draws = np.random.default_rng(11)
    perms = np.array([np.subtract(*first_principles(draws.permutation(y), SIZES, GROUPS)) for _ in range(4000)])
    high, low = np.quantile(np.append(perms, eta2 - r2), [0.975, 0.025])
    assert v.difference_low == pytest.approx(eta2 - r2 - (high - v.null_difference), abs=0.02)
    assert v.difference_high == pytest.approx(eta2 - r2 - (low - v.null_difference), abs=0.02)
    assert variance_shares(y, SIZES, GROUPS, seed=3, n_permutations=4000) == v  # seeded


def test_r2_interval_covers_the_population_r2_at_the_nominal_rate():
    """Fixed sizes, normal noise: the population R^2 = lambda / (lambda + N), lambda = b^2 Sxx / sigma^2."""
    x = np.log2(SIZES)
    slope, sigma = 0.03, 0.1
    lam = slope ** 2 * ((x - x.mean()) ** 2).sum() / sigma ** 2
    truth = lam / (lam + N)
    rng = np.random.default_rng(5)
    covered = []
    for _ in range(300):
        y = 0.2 + slope * x + rng.normal(0, sigma, N)
        v = variance_shares(y, SIZES, GROUPS, seed=0, n_permutations=0)
        covered.append(v.r2_low <= truth <= v.r2_high)
    assert 0.91 <= np.mean(covered) <= 0.985


def test_no_effect_values_are_the_permutation_means():
    """With ASR shuffled over models (a fixed derived seed), neither provider nor size can matter: the
    shares and their difference average (k-1)/(N-1), 1/(N-1) and (k-2)/(N-1)."""
    y = np.random.default_rng(9).beta(2, 5, N)
    rng = np.random.default_rng(derived_seed(0, "test", "variance_shares_null"))
    perms = np.array([first_principles(rng.permutation(y), SIZES, GROUPS) for _ in range(4000)])
    v = variance_shares(y, SIZES, GROUPS, seed=0, n_permutations=200)
    assert perms[:, 0].mean() == pytest.approx(v.null_eta2, abs=0.01)
    assert perms[:, 1].mean() == pytest.approx(v.null_r2, abs=0.005)
    assert (perms[:, 0] - perms[:, 1]).mean() == pytest.approx(v.null_difference, abs=0.012)
    assert v.null_difference > 0.4  # the no-effect difference is far from 0 with 12 providers of 21 models


def test_difference_interval_covers_the_no_effect_value_when_nothing_matters():
    rng = np.random.default_rng(13)
    inside = []
    for rep in range(200):
        v = variance_shares(rng.normal(0, 1, N), SIZES, GROUPS, seed=rep, n_permutations=400)
        inside.append(v.difference_low <= v.null_difference <= v.difference_high)
    assert 0.88 <= np.mean(inside) <= 0.99


def test_the_interval_clears_the_no_effect_value_exactly_when_the_permutation_test_rejects():
    rng = np.random.default_rng(4)
    for rep in range(20):
        y = rng.normal(0, 1, N) + np.where(np.arange(N) % K < 3, rng.uniform(0, 1.5), 0)
        v = variance_shares(y, SIZES, GROUPS, seed=rep, n_permutations=999)
        order = np.argsort(np.random.default_rng(rep).random((999, N)), axis=1)
        perms = np.array([np.subtract(*first_principles(y[o], SIZES, GROUPS)) for o in order])
        p = (1 + np.sum(perms >= v.difference - 1e-12)) / 1000
        assert (v.difference_low > v.null_difference) == (p < 0.025)
    with pytest.raises(ValueError, match="more units than groups"):
        variance_shares(np.array([0.1, 0.5, 0.3]), np.array([1.0, 2.0, 4.0]), np.array(["a", "b", "c"]), seed=0)


def _ctx(models: pd.DataFrame):
    params = load_study("provider_vs_size").scenario_params
    rows = []
    for m in models.itertuples():
        for p in range(m.evaluable):
            rows.append({"model": m.model, "provider": m.provider, "family": m.provider, "params_total_b": m.params,
                         "params_active_b": np.nan, "attack": "direct", "prompt_id": f"q{p:03d}",
                         "category": "cyber", "benign": False,
                         "label": "COMPLIANCE" if p < m.successes else "REFUSAL"})
    traces = pd.DataFrame(rows)
    return SimpleNamespace(shared={"jailbreak": JailbreakData(params, traces, 0, None)}, seed=17, con=None,
                           spec=SimpleNamespace(models={})), params


def test_the_section_prints_both_shares_and_their_difference_and_no_ratio():
    rng = np.random.default_rng(21)
    successes = rng.integers(5, 35, N)
    models = pd.DataFrame({"model": [f"m{i:02d}" for i in range(N)], "provider": GROUPS,
                           "params": np.round(SIZES, 2), "successes": successes, "evaluable": 40})
    ctx, params = _ctx(models)
    md = ProviderVsSizeSection().render(ctx, ProviderVsSizeSection.Options(type="provider_vs_size", chart=False,
                                                                           n_permutations=500)).markdown
    flat = md.replace("\\", "")
    asr_values = successes / 40
    eta2, r2 = first_principles(asr_values, models.params.to_numpy(), GROUPS)
    v = variance_shares(asr_values, models.params.to_numpy(), GROUPS, n_permutations=500,
                        seed=derived_seed(17, "provider_vs_size", "variance_shares"))
    assert v.difference == pytest.approx(eta2 - r2)
    assert (f"| Provider minus size: eta² - R² | {eta2 - r2:+.3f} [{v.difference_low:+.3f}, "
            f"{v.difference_high:+.3f}] |") in flat
    assert "500 arrangements of ASR over the models, seeded" in flat
    assert "| eta² - R² expected with neither effect | +0.500 |" in flat
    assert f"| Size: population R², 95% interval | [{v.r2_low:.3f}, {v.r2_high:.3f}] |" in flat
    assert "| R² expected with no size effect | 0.050 |" in flat
    assert f"size R² {r2:.3f}" in flat and f"provider eta² {eta2:.3f}" in flat
    assert "| eta² / R²" not in flat and f"{eta2 / r2:.1f}" not in flat  # the ratio is gone
    assert "grows without bound as R² approaches 0" in flat
