"""Prompt-clustered rate intervals and the selection-aware risk ratio: against scipy, statsmodels and hand
counts, and their coverage by simulation with prompt-level and model-level random effects (issue 21:
at least 93% wherever an interval is printed, up to its Monte Carlo error; tests/coverage_check.py)."""

import math

import numpy as np
import pandas as pd
import pytest
from coverage_check import assert_covers
from scipy import stats
from scipy.special import expit
from statsmodels.stats.multicomp import pairwise_tukeyhsd
from statsmodels.stats.proportion import proportion_confint

from engine.scenarios.jailbreak.analysis.clustered import (CLUSTERED, EXACT, NO_INTERVAL, _selected, cluster_interval,
                                                           clustered_rates)
from engine.scenarios.jailbreak.analysis.decomposition import risk_ratio


def test_each_prompt_once_is_clopper_pearson_over_traces():
    k = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0])
    rate, low, high, method = cluster_interval(k, np.ones(12))
    assert method == EXACT and rate == pytest.approx(5 / 12)
    assert (low, high) == pytest.approx(proportion_confint(5, 12, method="beta"))


def korn_graubard_by_hand(k: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Korn & Graubard (1998): Clopper-Pearson at n* = p(1 - p) / v (at most the traces), shrunk by
    (z / t_df)^2, v the linearised variance of the ratio over prompts, df Satterthwaite's (<= prompts - 1)."""
    p, m = k.sum() / n.sum(), len(k)
    e = k - p * n
    v = m / (m - 1) * np.sum(e ** 2) / n.sum() ** 2
    df = min(m - 1, np.sum(e ** 2) ** 2 / np.sum(e ** 4))
    size = min(n.sum(), p * (1 - p) / v) * (stats.norm.ppf(0.975) / stats.t.ppf(0.975, df)) ** 2
    return stats.beta.ppf(0.025, p * size, size - p * size + 1), stats.beta.ppf(0.975, p * size + 1, size - p * size)


def test_repeated_prompts_get_korn_graubard_over_prompts():
    rows = pd.DataFrame({"model": ["a"] * 36, "prompt_id": np.repeat([f"p{i:02d}" for i in range(12)], 3),
                         "success": np.random.default_rng(3).random(36) < np.repeat(np.linspace(0, 1, 12), 3)})
    out = clustered_rates(rows, "model", seed=11).iloc[0]
    per_prompt = rows.groupby("prompt_id")["success"].agg(["sum", "size"])  # the 12 clusters by hand
    assert (out.method, out.prompts, out.evaluable) == (CLUSTERED, 12, 36)
    assert out.value == pytest.approx(rows.success.mean())
    assert (out.low, out.high) == pytest.approx(korn_graubard_by_hand(per_prompt["sum"].to_numpy(float),
                                                                      per_prompt["size"].to_numpy(float)))


def test_one_prompt_has_no_interval_and_a_rate_of_zero_counts_each_prompt_once():
    rate, low, high, method = cluster_interval(np.array([2]), np.array([6]))
    assert method == NO_INTERVAL and rate == pytest.approx(1 / 3) and math.isnan(low) and math.isnan(high)
    rate, low, high, method = cluster_interval(np.zeros(20), np.full(20, 6))  # nothing varies
    size = 20 * (stats.norm.ppf(0.975) / stats.t.ppf(0.975, 19)) ** 2
    assert method == CLUSTERED and rate == low == 0 and high == pytest.approx(stats.beta.ppf(0.975, 1, size))


@pytest.mark.parametrize("prompts,mu", [(40, -1.0), (10, -1.0), (30, -3.5)])
def test_cluster_interval_covers_where_wilson_over_traces_does_not(prompts, mu):
    """prompts x 6 attacks, prompt log-odds N(mu, 1) (mu -3.5: a rare event, about 5%): the target is the
    rate over the prompt population. The BCa bootstrap printed before covered 89-91% here."""
    attacks, reps = 6, 1000
    truth = expit(mu + np.random.default_rng(9).normal(size=400_000)).mean()
    rng, covered, wilson = np.random.default_rng(prompts), 0, 0
    for _ in range(reps):
        k = rng.binomial(attacks, expit(mu + rng.normal(0, 1, prompts)))
        _, low, high, method = cluster_interval(k, np.full(prompts, attacks))
        assert method == CLUSTERED
        covered += low <= truth <= high
        w_low, w_high = proportion_confint(k.sum(), prompts * attacks, method="wilson")
        wilson += w_low <= truth <= w_high
    assert_covers(covered, reps, f"Korn-Graubard, {prompts} prompts x {attacks} attacks, mu {mu}")
    if prompts == 40:
        assert wilson / reps < 0.90


PROVIDERS = [f"P{i:02d}" for i in range(12)]
SIZES = [2] * 9 + [1] * 3  # 21 models, as in the write-up


def _simulate(rng, model_sd: float, prompts: int = 40, attacks: int = 6, shift: np.ndarray | None = None):
    provider_of = np.repeat(np.arange(12), SIZES)
    shift = np.zeros(12) if shift is None else shift
    logit = (-1.5 + shift[provider_of][:, None] + rng.normal(0, model_sd, len(provider_of))[:, None]
             + rng.normal(0, 1, prompts)[None, :])
    k = rng.binomial(attacks, expit(logit)).astype(float)
    return k, np.full_like(k, attacks), provider_of


def _coverage(model_sd: float, reps: int, provider_effect: float = 0.0) -> tuple[int, int, float]:
    """(covered, printed, Katz's coverage) of the selection-aware interval for the extremes' ratio of
    population rates. Providers P00 and P11 are shifted by -/+ provider_effect on the log-odds scale (the
    rest equal), so the truth is the ratio of the two picked providers' population rates (Monte Carlo
    over models and prompts)."""
    shift = np.zeros(12)
    shift[0], shift[11] = -provider_effect, provider_effect
    z = np.random.default_rng(0).normal(size=(2, 200_000))
    population = {s: expit(-1.5 + s + model_sd * z[0] + z[1]).mean() for s in set(shift)}
    covered = printed = katz = 0
    rng = np.random.default_rng(int(model_sd * 10) + int(provider_effect * 100))
    for _ in range(reps):
        k, n, provider_of = _simulate(rng, model_sd, shift=shift)
        pooled = np.bincount(provider_of, k.sum(1)) / np.bincount(provider_of, n.sum(1))
        hi, lo = int(np.argmax(pooled)), int(np.argmin(pooled))
        if pooled[lo] == 0:
            continue
        truth = population[shift[hi]] / population[shift[lo]]
        r = _selected(k, n, provider_of, PROVIDERS, hi, lo)
        if math.isfinite(r.low):
            printed += 1
            covered += r.low <= truth <= r.high
        kz = risk_ratio(int(k[provider_of == hi].sum()), int(n[provider_of == hi].sum()),
                        int(k[provider_of == lo].sum()), int(n[provider_of == lo].sum()))
        katz += kz.low <= truth <= kz.high
        assert r.ratio == pytest.approx(kz.ratio)
    return covered, printed, katz / reps


@pytest.mark.parametrize("model_sd,provider_effect", [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.5, 1.0)])
def test_selection_aware_interval_covers_when_a_providers_models_differ(model_sd, provider_effect):
    """12 providers of one or two models (21 models, as in the write-up), 40 prompts x 6 attacks. The
    resampling interval printed before covered 32-36% at model SD 0.5 (69% of 1 with no provider effect),
    Katz 0-41%."""
    covered, printed, katz = _coverage(model_sd, 400, provider_effect)
    assert printed >= 390  # 9 providers with two models: the model SD is always estimable
    assert_covers(covered, printed, f"selected risk ratio, model SD {model_sd}, provider effect {provider_effect}")
    if model_sd > 0:
        assert katz < 0.5


def test_selected_interval_is_tukey_kramer_on_the_models_log_rates():
    """Against statsmodels' Tukey HSD (Tukey-Kramer for unequal group sizes) on the models' log ASRs
    (half a success added), for the picked pair: the interval is the ratio's."""
    k, n, provider_of = _simulate(np.random.default_rng(12), 0.5)
    pooled = np.bincount(provider_of, k.sum(1)) / np.bincount(provider_of, n.sum(1))
    hi, lo = int(np.argmax(pooled)), int(np.argmin(pooled))
    r = _selected(k, n, provider_of, PROVIDERS, hi, lo)
    logs = np.log((k.sum(1) + 0.5) / (n.sum(1) + 1))
    tukey = pairwise_tukeyhsd(logs, np.array(PROVIDERS)[provider_of], alpha=0.05)
    pairs = list(zip(tukey.groupsunique[tukey._multicomp.pairindices[0]],
                     tukey.groupsunique[tukey._multicomp.pairindices[1]]))
    row = pairs.index(tuple(sorted((PROVIDERS[hi], PROVIDERS[lo]))))
    low, high = tukey.confint[row]  # of the later group's mean minus the earlier's
    if PROVIDERS[hi] < PROVIDERS[lo]:
        low, high = -high, -low
    assert (r.low, r.high) == pytest.approx((math.exp(low), math.exp(high)), rel=1e-4)
    assert r.ratio == pytest.approx(pooled[hi] / pooled[lo])


def test_the_ratios_p_value_is_the_search_over_its_own_intervals():
    """The closed-form inversion (one studentized-range tail) gives what inverting `interval_at` by
    search gives, on both sides of the estimate and far in the tail, so the verdict and the printed
    interval still come from one procedure."""
    from engine.analyze.inference import claim_p, p_above, p_below, two_sided_p

    k, n, provider_of = _simulate(np.random.default_rng(12), 0.5)
    pooled = np.bincount(provider_of, k.sum(1)) / np.bincount(provider_of, n.sum(1))
    r = _selected(k, n, provider_of, PROVIDERS, int(np.argmax(pooled)), int(np.argmin(pooled)))
    searched, exact = r.interval_at, r.family
    assert exact(0.05) == searched(0.05) == (r.low, r.high)
    for bound in (r.centre / 40, r.low, r.centre / 1.5, r.centre, r.centre * 1.5, r.high, r.centre * 3):
        assert p_above(exact, bound) == pytest.approx(p_above(searched, bound), rel=1e-6, abs=1e-9), bound
        assert p_below(exact, bound) == pytest.approx(p_below(searched, bound), rel=1e-6, abs=1e-9), bound
    assert two_sided_p(exact, r.low) == pytest.approx(0.05, rel=1e-6)
    assert claim_p(exact, 2.0, math.inf) == pytest.approx(claim_p(searched, 2.0, math.inf), rel=1e-6)


def test_no_interval_when_every_provider_has_one_model():
    k = np.array([[3] + [0] * 9, [3] * 10], float)
    r = _selected(k, np.full_like(k, 6), np.array([0, 1]), ["A", "B"], 1, 0)
    assert math.isnan(r.low) and math.isnan(r.high) and "one model" in r.reason
    # A claim on the ratio then has no verdict, and says why (not a decision on NaN ends).
    from engine.scenarios.jailbreak.claims import risk_ratio_estimate

    est = risk_ratio_estimate(r, None, "ratio")
    assert est.reason == r.reason and est.interval_at is None


def test_the_report_reads_stored_resamples_equal_to_fresh_ones(tmp_path):
    """Stored in a writable study database, read back unchanged from a read-only one (as by the report)."""
    import duckdb

    from engine.scenarios.jailbreak.analysis.asr import evaluable_harmful, model_asr, provider_vs_size
    from engine.store.db import StudyStore

    k, n, provider_of = _simulate(np.random.default_rng(4), 0.3, prompts=15, attacks=3)
    rows = [{"model": f"m{m:02d}", "provider": PROVIDERS[provider_of[m]], "family": "f", "params_total_b": 2.0 ** (m % 7 + 1),
             "params_active_b": np.nan, "attack": f"a{s}", "prompt_id": f"q{p:02d}", "category": "x", "benign": False,
             "label": "COMPLIANCE" if s < k[m, p] else "REFUSAL"}
            for m in range(k.shape[0]) for p in range(k.shape[1]) for s in range(3)]
    traces = pd.DataFrame(rows)

    def analyse(con):
        models = model_asr(traces, "strict", seed=3, con=con)
        return models, provider_vs_size(models, basis="total", min_provider_evaluable=10, seed=3,
                                        evaluable=evaluable_harmful(traces, "strict"), con=con).selected_risk

    fresh_models, fresh_risk = analyse(None)
    path = tmp_path / "s.duckdb"
    store = StudyStore(path)
    analyse(store.con)
    assert store.con.execute("SELECT count(*) FROM fit_cache").fetchone()[0] == 2
    store.con.close()
    con = duckdb.connect(str(path), read_only=True)
    models, risk = analyse(con)
    con.close()
    pd.testing.assert_frame_equal(models, fresh_models)
    assert risk == fresh_risk and set(models["method"]) == {CLUSTERED}
    assert risk.high_provider == fresh_models.groupby("provider")["successes"].sum().div(
        fresh_models.groupby("provider")["evaluable"].sum()).idxmax()


def test_a_group_with_no_interval_is_stored_and_read_back(tmp_path):
    """A group whose traces all share one prompt has no interval (NaN ends): the study database stores it
    (JSON has no NaN) and gives it back unchanged."""
    from engine.store.db import StudyStore

    rows = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 12, "prompt_id": ["p0"] * 3 + [f"p{i}" for i in range(12)],
                         "success": [True, False, True] + [i % 3 == 0 for i in range(12)]})
    fresh = clustered_rates(rows, "model", seed=0)
    store = StudyStore(tmp_path / "s.duckdb")
    try:
        stored = clustered_rates(rows, "model", seed=0, con=store.con)
        again = clustered_rates(rows, "model", seed=0, con=store.con)
    finally:
        store.con.close()
    assert fresh.set_index("model").loc["a", "method"] == NO_INTERVAL and math.isnan(fresh["low"].iloc[0])
    pd.testing.assert_frame_equal(stored, fresh)
    pd.testing.assert_frame_equal(again, fresh)
