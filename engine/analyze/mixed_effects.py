"""Trace-level mixed-effects logistic model: a robustness check on the model-level size slope.

success ~ 1 + log2(params) with random intercepts for provider, model and prompt_id, fitted by
mean-field variational Bayes (statsmodels BinomialBayesMixedGLM.fit_vb). Mean-field SDs ignore the
correlation between the slope and the model/provider intercepts (size is a model-level covariate),
so they run too narrow: 66% and 75% coverage of a nominal 95% interval in two runs of 100 simulations
of 12 providers x 2-3 models x 40 prompts (tests/test_mixed_effects.py's design). The reported slope
SD is instead the Laplace approximation to the joint posterior of fixed and random effects at the VB
means, variance components held at their VB estimates: 93% coverage in both runs. The mean-field SD
is kept alongside for transparency.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from engine.analyze.asr import Basis, Tier, evaluable_harmful, model_params, tier_of

FACTORS = ("provider", "model", "prompt_id")
FE_PRIOR_SD, VC_PRIOR_SD = 2.0, 1.0  # statsmodels defaults: N(0, 2^2) fixed effects, N(0, 1) log SDs


@dataclass(frozen=True)
class MixedResult:
    slope_per_doubling: float  # log-odds of success per doubling of parameters
    slope_sd: float  # Laplace posterior SD (see module docstring)
    slope_low: float  # slope -/+ 1.96 * slope_sd
    slope_high: float
    odds_ratio_per_doubling: float
    slope_sd_meanfield: float  # the raw fit_vb posterior SD, too narrow
    vc_sd: dict[str, float]  # random-intercept SD per grouping factor (exp of posterior mean log SD)
    n_traces: int
    n_models: int
    n_providers: int
    n_prompts: int
    method: str


@dataclass(frozen=True)
class MixedUnavailable:
    reason: str


def _blocker(df: pd.DataFrame) -> str | None:
    n_prov, n_models = df["provider"].nunique(), df["model"].nunique()
    if n_prov < 3:
        return f"needs at least 3 providers; have {n_prov}"
    if n_models < 4:
        return f"needs at least 4 models; have {n_models}"
    if df["success"].nunique() < 2:
        outcome = "successes" if df["success"].iloc[0] else "failures"
        return f"no variation in outcome: all {len(df)} evaluable traces are {outcome}"
    if df["params_b"].nunique() < 2:
        return "all models have the same parameter count; no size variation"
    return None


def _indicators(codes: np.ndarray, k: int) -> sparse.csr_array:
    n = len(codes)
    return sparse.csr_array((np.ones(n), (np.arange(n), codes)), shape=(n, k))


def _laplace_sd(model: BinomialBayesMixedGLM, fit) -> np.ndarray:
    """Fixed-effect SDs from the Hessian of the log posterior in (fixed, random effects) at the VB means."""
    x = sparse.hstack([sparse.csr_array(model.exog), model.exog_vc], format="csr")
    mu = 1 / (1 + np.exp(-(x @ np.concatenate([fit.fe_mean, fit.vc_mean]))))
    prior_precision = np.concatenate([np.full(model.k_fep, model.fe_p ** -2.0),
                                      np.exp(-2 * fit.vcp_mean[model.ident])])
    hessian = (x.T @ x.multiply((mu * (1 - mu))[:, None])).toarray() + np.diag(prior_precision)
    return np.sqrt(np.diag(np.linalg.inv(hessian))[: model.k_fep])


def mixed_scale_model(traces: pd.DataFrame, tier: Tier | str, *, basis: Basis = "total",
                      seed: int = 0) -> MixedResult | MixedUnavailable:
    t = tier_of(tier)
    df = evaluable_harmful(traces, t)
    df = df.assign(params_b=model_params(df, basis))
    df = df[np.isfinite(df["params_b"]) & (df["params_b"] > 0)]
    if df.empty:
        return MixedUnavailable("no evaluable harmful traces with a usable parameter count")
    if (reason := _blocker(df)) is not None:
        return MixedUnavailable(reason)

    # Centre log2(params) so the intercept's prior sits at a typical model, not at 1B parameters.
    x = np.log2(df["params_b"].to_numpy(float))
    exog = np.column_stack([np.ones(len(df)), x - x.mean()])
    factors = [f for f in FACTORS if df[f].nunique() > 1]  # a one-level factor is just the intercept
    coded = [pd.factorize(df[f]) for f in factors]
    exog_vc = sparse.hstack([_indicators(c, len(u)) for c, u in coded], format="csr")
    ident = np.concatenate([np.full(len(u), j) for j, (_, u) in enumerate(coded)])
    model = BinomialBayesMixedGLM(df["success"].to_numpy(float), exog, exog_vc, ident, vcp_p=VC_PRIOR_SD,
                                  fe_p=FE_PRIOR_SD, fep_names=["Intercept", "log2_params"],
                                  vcp_names=factors)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence is checked on the optimiser result below
            fit = model.fit_vb(rng=seed)
        sd = float(_laplace_sd(model, fit)[1])
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:
        return MixedUnavailable(f"fit failed: {err}")
    slope = float(fit.fe_mean[1])
    if not fit.optim_retvals.success or not (math.isfinite(slope) and math.isfinite(sd)):
        return MixedUnavailable(f"variational fit did not converge: {fit.optim_retvals.message}")

    method = (f"Bayesian mixed logistic regression on {len(df)} evaluable harmful traces: "
              f"success ({t.label}: {', '.join(t.success_labels)}) ~ 1 + log2({basis} params, centred) "
              f"+ random intercepts for {', '.join(factors)}; statsmodels BinomialBayesMixedGLM.fit_vb "
              f"(mean-field variational Bayes, seed {seed}); priors N(0, {FE_PRIOR_SD:g}^2) on fixed effects "
              f"and N(0, {VC_PRIOR_SD:g}^2) on each log random-intercept SD. Slope interval: mean +/- 1.96 SD "
              "with the SD from a Laplace approximation at the VB means (variance components fixed), since "
              "mean-field SDs understate uncertainty for a model-level covariate.")
    return MixedResult(slope, sd, slope - 1.96 * sd, slope + 1.96 * sd, math.exp(slope),
                       float(fit.fe_sd[1]), {f: float(np.exp(v)) for f, v in zip(factors, fit.vcp_mean)},
                       len(df), df["model"].nunique(), df["provider"].nunique(), df["prompt_id"].nunique(), method)
