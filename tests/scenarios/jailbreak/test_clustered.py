"""Prompt-clustered rate intervals and the selection-aware risk ratio: against scipy and hand counts, and
their coverage by simulation with prompt-level random effects."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit
from statsmodels.stats.proportion import proportion_confint

from engine.kernel.hashing import derived_seed
from engine.scenarios.jailbreak.analysis.clustered import (BOOTSTRAP, CONSERVATIVE, WILSON, _selected, cluster_interval,
                                                           clustered_rates, selected_risk_ratio)
from engine.scenarios.jailbreak.analysis.decomposition import risk_ratio


def test_each_prompt_once_is_wilson_over_traces():
    k = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0])
    rate, low, high, method = cluster_interval(k, np.ones(12), seed=0)
    assert method == WILSON and rate == pytest.approx(5 / 12)
    assert (low, high) == pytest.approx(proportion_confint(5, 12, method="wilson"))


def test_repeated_prompts_are_resampled_whole_as_scipy_does():
    rows = pd.DataFrame({"model": ["a"] * 36, "prompt_id": np.repeat([f"p{i:02d}" for i in range(12)], 3),
                         "success": np.random.default_rng(3).random(36) < np.repeat(np.linspace(0, 1, 12), 3)})
    out = clustered_rates(rows, "model", seed=11, n_bootstrap=999).iloc[0]
    per_prompt = rows.groupby("prompt_id")["success"].agg(["sum", "size"])  # the 12 clusters by hand
    ref = stats.bootstrap((per_prompt["sum"].to_numpy(float), per_prompt["size"].to_numpy(float)),
                          lambda k, n, axis=-1: k.sum(axis) / n.sum(axis), paired=True, vectorized=True,
                          n_resamples=999, method="BCa", rng=np.random.default_rng(derived_seed(11, "a")))
    assert (out.method, out.prompts, out.evaluable) == (BOOTSTRAP, 12, 36)
    assert out.value == pytest.approx(rows.success.mean())
    assert (out.low, out.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_few_or_uniform_prompts_get_the_conservative_bound():
    rate, low, high, method = cluster_interval(np.array([0, 3, 1]), np.array([3, 3, 3]), seed=0)  # 3 prompts
    assert method == CONSERVATIVE and (low, high) == pytest.approx(proportion_confint(4 / 9 * 3, 3, method="wilson"))
    rate, low, high, method = cluster_interval(np.zeros(20), np.full(20, 6), seed=0)  # nothing varies
    assert method == CONSERVATIVE and rate == 0 and high == pytest.approx(proportion_confint(0, 20, method="wilson")[1])


def test_cluster_interval_covers_where_wilson_over_traces_does_not():
    """40 prompts x 6 attacks, prompt log-odds N(-1, 1): the target is the rate over the prompt population."""
    prompts, attacks, mu = 40, 6, -1.0
    truth = expit(mu + np.random.default_rng(9).normal(size=200_000)).mean()
    cluster, wilson = [], []
    for rep in range(300):
        rng = np.random.default_rng(rep)
        k = rng.binomial(attacks, expit(mu + rng.normal(0, 1, prompts)))
        _, low, high, method = cluster_interval(k, np.full(prompts, attacks), seed=rep, n_bootstrap=1000)
        assert method == BOOTSTRAP
        cluster.append(low <= truth <= high)
        w_low, w_high = proportion_confint(k.sum(), prompts * attacks, method="wilson")
        wilson.append(w_low <= truth <= w_high)
    # 300 runs: binomial SE of a 95% coverage is 1.3 points; BCa with 40 clusters runs a little under.
    assert 0.90 <= np.mean(cluster) <= 0.985
    assert np.mean(wilson) < 0.90 and np.mean(cluster) - np.mean(wilson) > 0.03


PROVIDERS = [f"P{i:02d}" for i in range(12)]
SIZES = [2] * 9 + [1] * 3  # 21 models, as in the write-up


def _simulate(rng, model_sd: float, prompts: int = 40, attacks: int = 6):
    provider_of = np.repeat(np.arange(12), SIZES)
    logit = -1.5 + rng.normal(0, model_sd, len(provider_of))[:, None] + rng.normal(0, 1, prompts)[None, :]
    k = rng.binomial(attacks, expit(logit)).astype(float)
    return k, np.full_like(k, attacks), provider_of


def _coverage(model_sd: float, reps: int) -> tuple[float, float]:
    """Coverage of the true ratio, 1 (every provider's population of models is the same), by the
    selection-aware interval and by Katz on the selected pair."""
    selected, katz = [], []
    for rep in range(reps):
        k, n, provider_of = _simulate(np.random.default_rng(rep + 1), model_sd)
        pooled = np.bincount(provider_of, k.sum(1)) / np.bincount(provider_of, n.sum(1))
        hi, lo = int(np.argmax(pooled)), int(np.argmin(pooled))
        if pooled[lo] == 0:
            continue
        r = _selected(k, n, provider_of, PROVIDERS, hi, lo, rep, 1000)
        selected.append(r.low <= 1 <= r.high)
        kz = risk_ratio(int(k[provider_of == hi].sum()), int(n[provider_of == hi].sum()),
                        int(k[provider_of == lo].sum()), int(n[provider_of == lo].sum()))
        katz.append(kz.low <= 1 <= kz.high)
        assert r.ratio == pytest.approx(kz.ratio)
    return float(np.mean(selected)), float(np.mean(katz))


def test_selection_aware_interval_covers_equal_providers_far_more_often_than_katz():
    selected, katz = _coverage(model_sd=0.0, reps=200)
    assert selected >= 0.92 and katz <= 0.6  # measured: 0.995 and 0.41
    # When a provider's one or two models differ, resampling them cannot show it: the interval is too
    # narrow (as the report says), though still far better than Katz, which never covers 1 here.
    selected, katz = _coverage(model_sd=0.5, reps=200)
    assert 0.5 <= selected < 0.9 and katz <= 0.1  # measured: 0.685 and 0.0


def test_selected_interval_matches_a_basic_bootstrap_when_the_pair_is_clear():
    """Two one-model providers far apart: the pair is re-selected in every resample, so the interval is the
    basic bootstrap interval of that log ratio over prompts (here computed by a plain loop)."""
    rng = np.random.default_rng(5)
    prompts = 60
    k = np.vstack([rng.binomial(6, expit(-2.5 + rng.normal(0, 1, prompts))),
                   rng.binomial(6, expit(0.5 + rng.normal(0, 1, prompts)))]).astype(float)
    n = np.full_like(k, 6)
    rows = pd.DataFrame([{"model": f"m{m}", "provider": "AB"[m], "prompt_id": f"q{p}", "success": s < k[m, p]}
                         for m in range(2) for p in range(prompts) for s in range(6)])
    r = selected_risk_ratio(rows, ["A", "B"], "B", "A", seed=7, n_bootstrap=4000)
    assert r.same_pair == 1.0 and r.zero_low == 0 and r.dropped == 0
    assert r.ratio == pytest.approx(k[1].sum() / k[0].sum())
    loop_rng, logs = np.random.default_rng(123), []
    for _ in range(4000):
        idx = loop_rng.integers(0, prompts, prompts)
        logs.append(math.log((k[1, idx].sum() / n[1, idx].sum()) / (k[0, idx].sum() / n[0, idx].sum())))
    q_low, q_high = np.quantile(logs, [0.025, 0.975])
    log_r = math.log(r.ratio)
    assert math.log(r.low) == pytest.approx(2 * log_r - q_high, abs=0.05)
    assert math.log(r.high) == pytest.approx(2 * log_r - q_low, abs=0.05)


def test_a_resample_with_no_success_at_the_bottom_sets_the_low_bound_to_zero():
    # Provider A's only successes sit on one prompt of 10: many resamples miss it.
    k = np.array([[3] + [0] * 9, [3] * 10], float)
    r = _selected(k, np.full_like(k, 6), np.array([0, 1]), ["A", "B"], 1, 0, seed=2, n_bootstrap=2000)
    assert r.zero_low > 0.025 * 2000 and r.low == 0.0 and math.isfinite(r.high)


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
    assert risk == fresh_risk and set(models["method"]) == {BOOTSTRAP}
    assert risk.high_provider == fresh_models.groupby("provider")["successes"].sum().div(
        fresh_models.groupby("provider")["evaluable"].sum()).idxmax()
