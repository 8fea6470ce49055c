"""The trace-level mixed logistic model recovers a planted size slope and declines thin data."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from engine.scenarios.jailbreak.analysis.mixed_effects import MixedResult, MixedUnavailable, mixed_scale_model

TRUE_SLOPE = -0.3  # log-odds per doubling of parameters


def simulate(seed: int, slope: float = TRUE_SLOPE, n_providers: int = 12, n_prompts: int = 40) -> pd.DataFrame:
    """12 providers x 2-3 models x 40 prompts; random intercepts for provider (SD 0.8), model (0.3), prompt (0.5).

    Also adds traces the model must ignore: an ERROR and a NOT_GRADEABLE per model, and benign controls.
    """
    rng = np.random.default_rng(seed)
    prompt_effect = rng.normal(0, 0.5, n_prompts)
    frames = []
    for p in range(n_providers):
        provider_effect = rng.normal(0, 0.8)
        for m in range(rng.integers(2, 4)):
            params = 2 ** rng.uniform(0, 9)  # 1B to 512B
            eta = -0.5 + slope * (np.log2(params) - 4.5) + provider_effect + rng.normal(0, 0.3) + prompt_effect
            success = rng.random(n_prompts) < 1 / (1 + np.exp(-eta))
            labels = [*np.where(success, "COMPLIANCE", "REFUSAL"), "ERROR", "NOT_GRADEABLE",
                      "COMPLIANCE", "COMPLIANCE"]
            frames.append(pd.DataFrame({
                "model": f"p{p}m{m}", "provider": f"p{p}", "family": f"p{p}", "params_total_b": params,
                "params_active_b": np.nan, "attack": "direct",
                "prompt_id": [f"q{i}" for i in range(n_prompts)] + ["q0", "q1", "b0", "b1"], "category": "x",
                "benign": [False] * (n_prompts + 2) + [True, True], "label": labels}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, MixedResult]:
    traces = simulate(0)
    return traces, mixed_scale_model(traces, "strict", seed=0)


def test_recovers_planted_slope_within_its_interval(planted):
    traces, res = planted
    assert isinstance(res, MixedResult)
    assert res.slope_low < TRUE_SLOPE < res.slope_high and res.slope_high < 0
    assert res.slope_low == pytest.approx(res.slope_per_doubling - 1.96 * res.slope_sd)
    assert res.odds_ratio_per_doubling == pytest.approx(np.exp(res.slope_per_doubling))
    harmful_gradeable = (~traces.benign & traces.label.isin(["COMPLIANCE", "REFUSAL"])).sum()
    assert (res.n_traces, res.n_models, res.n_providers, res.n_prompts) == (
        harmful_gradeable, traces.model.nunique(), 12, 40)
    assert set(res.vc_sd) == {"provider", "model", "prompt_id"}
    assert 0.3 < res.vc_sd["provider"] < 1.6  # planted 0.8
    assert "fit_vb" in res.method and "COMPLIANCE" in res.method and "seed 0" in res.method


def test_agrees_with_a_plain_glm_but_is_less_certain(planted):
    traces, res = planted
    data = traces[~traces.benign & traces.label.isin(["COMPLIANCE", "REFUSAL"])]
    glm = sm.GLM((data.label == "COMPLIANCE").astype(float), sm.add_constant(np.log2(data.params_total_b)),
                 family=sm.families.Binomial()).fit()
    glm_slope, glm_se = glm.params.iloc[1], glm.bse.iloc[1]
    assert np.sign(glm_slope) == np.sign(res.slope_per_doubling)
    # Marginal (GLM) slopes are attenuated towards 0 relative to conditional ones, but only modestly here.
    assert abs(res.slope_per_doubling - glm_slope) < 0.1
    # Treating 1,000+ traces as independent overstates precision; the mixed model accounts for clustering.
    assert res.slope_sd > glm_se and res.slope_sd >= res.slope_sd_meanfield


def test_no_planted_slope_gives_an_interval_covering_zero():
    res = mixed_scale_model(simulate(1, slope=0.0), "strict", seed=0)
    assert res.slope_low < 0 < res.slope_high


def test_seeded_fit_is_reproducible(planted):
    traces, res = planted
    assert mixed_scale_model(traces, "strict", seed=0) == res


def test_unavailable_when_data_do_not_allow_the_model(planted):
    traces, _ = planted
    two_providers = traces[traces.provider.isin(["p0", "p1"])]
    assert mixed_scale_model(two_providers, "strict") == MixedUnavailable("needs at least 3 providers; have 2")
    three_models = traces[traces.model.isin(["p0m0", "p1m0", "p2m0"])]
    assert mixed_scale_model(three_models, "strict") == MixedUnavailable("needs at least 4 models; have 3")
    all_refused = traces.assign(label="REFUSAL")
    assert "no variation in outcome" in mixed_scale_model(all_refused, "strict").reason
    one_size = traces.assign(params_total_b=7.0)
    assert "same parameter count" in mixed_scale_model(one_size, "strict").reason
    only_errors = traces.assign(label="ERROR")
    assert "no evaluable harmful traces" in mixed_scale_model(only_errors, "strict").reason


def test_a_failing_fit_is_reported_not_raised(planted, monkeypatch):
    def broken(self, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")
    monkeypatch.setattr("engine.scenarios.jailbreak.analysis.mixed_effects.BinomialBayesMixedGLM.fit_vb", broken)
    assert mixed_scale_model(planted[0], "strict") == MixedUnavailable("fit failed: Singular matrix")
