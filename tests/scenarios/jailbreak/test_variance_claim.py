"""The jailbreak claim tests. `variance_share` on imported traces with a planted provider effect: the
estimate is eta² - R² above its no-effect value, recomputed from first principles, and the claim
"provider explains more than size" is supported; under no effect it is falsely supported at most at
the nominal rate (simulation). The provider risk ratio wraps the analysis's interval family; the
provider ranking is every provider contrast at the same size. A claim test of this scenario is a
spec error in another scenario's study."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_jailbreak import independent_statistics, synthetic_traces

from engine import load_study
from engine.analyze.claim_stats import decide_claims
from engine.analyze.inference import log_normal_family
from engine.kernel.contracts import Claimed, ClaimOptions
from engine.kernel.errors import SpecError
from engine.report.sections.claims import evaluate_claims
from engine.report.context import ReportContext
from engine.scenarios.jailbreak.claims import provider_contrasts, risk_ratio_estimate, share_difference
from engine.store.db import StudyStore
from engine.study import run_study

CLAIM = "+report.claims=[{claim: 'Provider explains more than size', test: variance_share, direction: positive}]"


def test_provider_share_claim_is_recomputed_and_supported(tmp_path):
    df = synthetic_traces()
    path, db = tmp_path / "traces.csv", tmp_path / "imported.duckdb"
    df.to_csv(path, index=False)
    overrides = [f"scenario.traces_file.path={path}", f"store.path={db}", "report.sections=[{type: claims}]", CLAIM]
    run_study("provider_vs_size_import", overrides, show_progress=False)
    loaded = load_study("provider_vs_size_import", overrides)
    store = StudyStore(db, read_only=True)
    try:
        (result,) = evaluate_claims(ReportContext(loaded, store.con, loaded.scenario, str(db)))
    finally:
        store.close(checkpoint=False)
    eta2, r2 = independent_statistics(df)
    k, n = 12, 21
    assert result.estimate.value == pytest.approx(eta2 - r2 - (k - 2) / (n - 1))
    assert result.estimate.low < result.estimate.value < result.estimate.high
    assert result.decision.verdict == "supported"


def test_the_claim_test_belongs_to_the_jailbreak_scenario():
    with pytest.raises(SpecError) as info:
        load_study("model_size", ["+report.claims=[{claim: x, test: variance_share, direction: positive}]"])
    assert info.value.key == "report.claims.0.test"


# ------------------------------------------------------------------ operating characteristics

def null_models(rng: np.random.Generator, provider_sd: float = 0.0, prompts: int = 40,
                model_sd: float = 0.12) -> pd.DataFrame:
    """The write-up's design: 21 models of 12 providers (nine with two models, three with one), sizes
    2-512B; each model's ASR over `prompts` prompts, its rate drawn around 30% (provider effect SD
    `provider_sd`, none of size)."""
    provider = np.arange(21) % 12
    effect = rng.normal(0, provider_sd, 12)[provider] if provider_sd else 0.0
    rate = np.clip(0.3 + effect + rng.normal(0, model_sd, 21), 0.01, 0.99)
    return pd.DataFrame({"model": [f"m{i}" for i in range(21)], "provider": [f"P{p}" for p in provider],
                         "params_b": 2 ** rng.uniform(1, 9, 21), "asr": rng.binomial(prompts, rate) / prompts})


def supported_rate(draws: int, seed: int, provider_sd: float = 0.0) -> float:
    rng = np.random.default_rng(seed)
    claim = ClaimOptions(claim="Provider explains more of the ASR variance than parameter count",
                         test="variance_share", direction="positive")
    hits = 0
    for i in range(draws):
        est = share_difference(null_models(rng, provider_sd), seed=i, n_permutations=1000)
        (d,) = decide_claims([(claim, est)])
        # The p-value is the inversion of the printed interval: p < 2.5% one-sided <=> lower end > 0.
        assert (d.p < 0.025) == (est.low > 0)
        hits += d.verdict == "supported"
    return hits / draws


def test_provider_share_claim_is_not_falsely_supported_under_no_effect():
    # Neither provider nor size matters. Its p-value came from a normal approximation to a skewed
    # bootstrap: falsely supported in 5.0% of such studies (nominal 2.5%), "supported" at p = 0.049
    # beside an interval [-0.005, 0.476] that held 0. Now the interval inverts the permutation test and
    # the p is that interval's own inversion (the permutation p-value).
    draws = 1000
    rate = supported_rate(draws, seed=1)
    assert rate <= 0.025 + 2 * math.sqrt(0.025 * 0.975 / draws), rate
    # A real provider effect (provider SD 0.15 against model SD 0.12) is still found, if not often.
    assert supported_rate(40, seed=2, provider_sd=0.15) > 0.1


def test_the_provider_risk_ratio_claim_wraps_the_analysis_family():
    quantity = "ratio of the highest provider's pooled ASR to the lowest's"
    ratio = SimpleNamespace(ratio=4.3, high_provider="Nvidia", low_provider="Anthropic", providers=12, models=21,
                            prompts=40)
    # Given at 95% only (no family), a claim on it cannot be decided at Holm's levels: said so.
    unresolved = risk_ratio_estimate(ratio, None, quantity)
    assert unresolved.reason is not None and "95% only" in unresolved.reason
    # With a family, read against 1 (its no-effect value) and against the claimed "at least 4".
    ratio.family = log_normal_family(4.3, 0.3)
    est = risk_ratio_estimate(ratio, None, quantity)
    assert est.null == 1.0 and est.p == pytest.approx(2 * stats.norm.sf(math.log(4.3) / 0.3), rel=1e-6)
    doubled, fourfold = decide_claims([(ClaimOptions(claim="x", test="provider_risk_ratio", at_least=2), est),
                                       (ClaimOptions(claim="y", test="provider_risk_ratio", at_least=4), est)])
    assert doubled.verdict == "supported" and fourfold.verdict == "not resolvable with this design"


def test_provider_best_is_every_contrast_at_the_same_size():
    rng = np.random.default_rng(3)
    models = null_models(rng, 0.0, prompts=400, model_sd=0.03)
    models.loc[models["provider"] == "P0", "asr"] -= 0.25  # P0's two models far below everyone else
    est = provider_contrasts(models, "P0", lowest=True)
    assert len(est.parts) == 11 and all(p.claimed == Claimed("direction", high=0.0) for p in est.parts)
    # Each part is the provider contrast of the OLS fit with a slope and one intercept per provider.
    import statsmodels.formula.api as smf
    fit = smf.ols("asr ~ np.log2(params_b) + C(provider, Treatment('P0'))", models).fit()
    first = est.parts[0]
    other = first.label.split(" − ")[1].split(" ")[0]
    term = f"C(provider, Treatment('P0'))[T.{other}]"
    assert first.estimate.value == pytest.approx(-fit.params[term])
    assert (first.estimate.low, first.estimate.high) == pytest.approx(tuple(-fit.conf_int().loc[term])[::-1])
    (d,) = decide_claims([(ClaimOptions(claim="P0 does best for its size", test="provider_best",
                                        direction="negative"), est)])
    assert d.verdict == "supported" and d.binding is not None
    missing = provider_contrasts(models, "Google", lowest=True)
    assert missing.reason is not None and "no analysable model of provider 'Google'" in missing.reason
