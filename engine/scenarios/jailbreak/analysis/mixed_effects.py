"""Trace-level mixed-effects logistic model: a robustness check on the model-level size slope.

success ~ 1 + log2(params) with random intercepts for provider, model and prompt_id, fitted by
mean-field variational Bayes (statsmodels BinomialBayesMixedGLM.fit_vb). Mean-field SDs ignore the
correlation between the slope and the model/provider intercepts (size is a model-level covariate),
so they run too narrow: 66% and 75% coverage of a nominal 95% interval in two runs of 100 simulations
of 12 providers x 2-3 models x 40 prompts (tests/test_mixed_effects.py's design). The reported slope
SD is instead the Laplace approximation to the joint posterior of fixed and random effects at the VB
means, variance components held at their VB estimates: 93% coverage in both runs. The mean-field SD
is kept alongside for transparency.

A fit is stored in the study database (engine/store/fit_cache.py) under a content hash of the data it
sees, its settings, FIT_VERSION and the library versions, so a report rerendered from unchanged data
reads it instead of refitting.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy
import statsmodels
from scipy import sparse
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from engine.scenarios.jailbreak.analysis.asr import Basis, Tier, evaluable_harmful, model_params, tier_of

if TYPE_CHECKING:
    import duckdb

FACTORS = ("provider", "model", "prompt_id")
FE_PRIOR_SD, VC_PRIOR_SD = 2.0, 1.0  # statsmodels defaults: N(0, 2^2) fixed effects, N(0, 1) log SDs
# Bump when a change to this module changes what a fit returns: stored fits of another version are
# not reused (nor are those made with other versions of the libraries, which are part of the key).
FIT_VERSION = "1"
FIT_KIND = "mixed_scale_model"
FIT_COLUMNS = ["success", "params_b", *FACTORS]  # all the fit reads of its input rows


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


def fit_input(traces: pd.DataFrame, tier: Tier | str, basis: Basis = "total") -> pd.DataFrame:
    """The rows the fit sees: evaluable harmful traces with a usable parameter count (`params_b`)."""
    df = evaluable_harmful(traces, tier_of(tier))
    df = df.assign(params_b=model_params(df, basis))
    return df[np.isfinite(df["params_b"]) & (df["params_b"] > 0)]


def fit_settings(tier: Tier | str, basis: Basis, seed: int) -> dict[str, Any]:
    """Everything besides the data that a fit's result depends on."""
    t = tier_of(tier)
    return {"version": FIT_VERSION, "tier": t.name, "tier_label": t.label, "success_labels": list(t.success_labels),
            "basis": basis, "seed": seed, "fe_prior_sd": FE_PRIOR_SD, "vc_prior_sd": VC_PRIOR_SD,
            "factors": list(FACTORS), "columns": FIT_COLUMNS,
            "libraries": {"statsmodels": statsmodels.__version__, "scipy": scipy.__version__,
                          "numpy": np.__version__, "pandas": pd.__version__}}


def mixed_scale_model(traces: pd.DataFrame, tier: Tier | str, *, basis: Basis = "total", seed: int = 0,
                      con: "duckdb.DuckDBPyConnection | None" = None) -> MixedResult | MixedUnavailable:
    """The fit, or why it is unavailable. With `con`, a fit stored in that study database for the same
    data (as a set of rows) and settings is returned instead of refitting, and a new one is stored
    when the database is writable."""
    t = tier_of(tier)
    df = fit_input(traces, t, basis)
    if con is None:
        return _fit(df, t, basis, seed)
    from engine.store import fit_cache

    key = fit_cache.fit_key(FIT_KIND, fit_cache.frame_digest(df, FIT_COLUMNS), fit_settings(t, basis, seed))
    return fit_cache.cached(con, key, FIT_KIND, lambda: _fit(df, t, basis, seed), result_to_json, result_from_json)


def _fit(df: pd.DataFrame, t: Tier, basis: Basis, seed: int) -> MixedResult | MixedUnavailable:
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


def _number(x: float) -> Any:
    return x if math.isfinite(x) else {"float": repr(x)}  # JSON has no NaN or infinity


def _float(x: Any) -> float:
    return float(x["float"]) if isinstance(x, dict) else float(x)


def result_to_json(result: MixedResult | MixedUnavailable) -> dict[str, Any]:
    """A JSON object that result_from_json turns back into an equal result (floats exact)."""
    if isinstance(result, MixedUnavailable):
        return {"type": "unavailable", "reason": result.reason}
    fields = asdict(result)
    return {"type": "result", **{k: ({f: _number(sd) for f, sd in v.items()} if k == "vc_sd" else
                                     _number(v) if isinstance(v, float) else v) for k, v in fields.items()}}


def result_from_json(data: dict[str, Any]) -> MixedResult | MixedUnavailable:
    if data["type"] == "unavailable":
        return MixedUnavailable(data["reason"])
    fields = {}
    for name, kind in MixedResult.__annotations__.items():  # strings: the module defers annotations
        value = data[name]
        fields[name] = ({f: _float(sd) for f, sd in value.items()} if name == "vc_sd" else
                        _float(value) if kind == "float" else value)
    return MixedResult(**fields)
