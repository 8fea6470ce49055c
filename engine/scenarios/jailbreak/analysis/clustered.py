"""Intervals clustered on the randomised unit, the prompt (prompt_id), and the selection-aware risk ratio.

Every prompt is played under every attack (and every sample), so a model's traces are not independent
draws: a hard prompt is refused under all its attacks. Wilson over traces treats them as independent
and understates the uncertainty about the rate over the population of prompts the corpus stands for
(issue 13: 86% coverage in simulation where a bootstrap over prompts gives 93.6%).

- `clustered_rates`: each group's rate (sum of successes over sum of evaluable traces) with a 95%
  interval: Wilson over traces when no prompt appears twice in the group (the traces are the prompts);
  otherwise a BCa bootstrap resampling prompts (scipy.stats.bootstrap, the prompt's successes and
  evaluable traces resampled together) when there are at least MIN_PROMPTS prompts whose rates differ;
  otherwise Wilson with n = the number of prompts, conservative (a mean of prompt-level rates in [0, 1]
  has variance at most p(1 - p) / prompts).
- `selected_risk_ratio`: the ratio of the highest to the lowest provider's pooled ASR, picked after
  looking. Each resample draws prompts, then models within each provider, re-selects the extreme pair
  in the resample and records how far that pair's resampled log ratio overshoots its observed one
  (the selection bias, as the bootstrap world sees it); the interval is the observed log ratio minus
  the 97.5% and 2.5% points of that overshoot (a basic bootstrap for the selected pair). A percentile
  interval of the re-selected ratio is not used: the maximum over minimum is at least 1 in every
  resample, so it cannot cover a ratio of 1 when all providers are equal. In simulation (12 providers of
  one or two models, 40 prompts x 6 attacks, no provider effect; tests/scenarios/jailbreak/test_clustered.py)
  it covers the true ratio 1 in 99% of runs when a provider's models are alike (Katz on the selected pair:
  41%); when they differ (model log-odds SD 0.5) it covers the providers' population ratio in about 69%
  (Katz: 0%) and the ratio of these very models in about 87%: resampling one or two models cannot show how
  much a provider's models differ, so the interval is then too narrow.

Both are stored in the study database (engine/store/fit_cache.py) when given a connection, keyed by
the data they read, their settings, FIT_VERSION and the library versions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from engine.kernel.hashing import derived_seed

if TYPE_CHECKING:
    import duckdb

FIT_VERSION = "1"
N_BOOTSTRAP = 2000
MIN_PROMPTS = 10  # fewer prompts: BCa coverage falls below 90% in simulation, so the conservative bound
CLUSTER = "prompt_id"
WILSON, BOOTSTRAP, CONSERVATIVE = "wilson_traces", "cluster_bca", "wilson_prompts"
METHOD_TEXT = {
    WILSON: "Wilson over traces (no prompt appears twice)",
    BOOTSTRAP: f"BCa bootstrap over prompts ({N_BOOTSTRAP} resamples, seeded)",
    CONSERVATIVE: f"Wilson with n = number of prompts (conservative; fewer than {MIN_PROMPTS} prompts or no "
                  "variation between prompts to resample)",
}


def _ratio(successes: np.ndarray, evaluable: np.ndarray, axis: int = -1) -> np.ndarray:
    return successes.sum(axis=axis) / evaluable.sum(axis=axis)


def cluster_interval(successes: np.ndarray, evaluable: np.ndarray, seed: int,
                     n_bootstrap: int = N_BOOTSTRAP) -> tuple[float, float, float, str]:
    """(rate, low, high, method) from per-prompt successes and evaluable traces (one entry per prompt)."""
    k, n = np.asarray(successes, float), np.asarray(evaluable, float)
    keep = n > 0
    k, n = k[keep], n[keep]
    total = n.sum()
    if total == 0:
        return math.nan, math.nan, math.nan, WILSON
    rate = float(k.sum() / total)
    if n.max() == 1:
        low, high = proportion_confint(int(k.sum()), int(total), method="wilson")
        return rate, float(low), float(high), WILSON
    if len(n) < MIN_PROMPTS or np.ptp(k / n) == 0:
        low, high = proportion_confint(rate * len(n), len(n), method="wilson")
        return rate, float(low), float(high), CONSERVATIVE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate BCa returns NaN, handled below
        ci = stats.bootstrap((k, n), _ratio, paired=True, vectorized=True, n_resamples=n_bootstrap,
                             method="BCa", rng=np.random.default_rng(seed)).confidence_interval
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        low, high = proportion_confint(rate * len(n), len(n), method="wilson")
        return rate, float(low), float(high), CONSERVATIVE
    return rate, float(ci.low), float(ci.high), BOOTSTRAP


def _rates(rows: pd.DataFrame, by: str, seed: int, n_bootstrap: int) -> pd.DataFrame:
    per_prompt = rows.groupby([by, CLUSTER], sort=True, observed=True)["success"].agg(["sum", "size"])
    out = []
    for group, counts in per_prompt.groupby(level=0, sort=True):
        rate, low, high, method = cluster_interval(counts["sum"].to_numpy(), counts["size"].to_numpy(),
                                                   derived_seed(seed, str(group)), n_bootstrap)
        out.append((str(group), int(counts["sum"].sum()), int(counts["size"].sum()), len(counts), rate, low,
                    high, method))
    return pd.DataFrame(out, columns=[by, "successes", "evaluable", "prompts", "value", "low", "high", "method"])


def clustered_rates(rows: pd.DataFrame, by: str, seed: int, *, con: "duckdb.DuckDBPyConnection | None" = None,
                    n_bootstrap: int = N_BOOTSTRAP) -> pd.DataFrame:
    """One row per value of `by`: successes, evaluable, prompts, value, low, high, method (METHOD_TEXT).
    `rows` are evaluable traces with columns `by`, prompt_id and a boolean `success`; a group's seed is
    derived from `seed` and its name, so it does not depend on which other groups are present."""
    columns = [by, CLUSTER, "success"]
    frame = rows[columns]
    if con is None or frame.empty:
        return _rates(frame, by, seed, n_bootstrap)
    from engine.store import fit_cache

    settings = {"version": FIT_VERSION, "by": by, "seed": seed, "n_bootstrap": n_bootstrap,
                "min_prompts": MIN_PROMPTS, "libraries": _libraries()}
    key = fit_cache.fit_key("clustered_rates", fit_cache.frame_digest(frame, columns), settings)
    return fit_cache.cached(con, key, "clustered_rates", lambda: _rates(frame, by, seed, n_bootstrap),
                            lambda df: df.to_dict(orient="split"),
                            lambda d: pd.DataFrame(**d).astype({"successes": int, "evaluable": int, "prompts": int}))


def _libraries() -> dict[str, str]:
    return {"scipy": scipy.__version__, "numpy": np.__version__, "pandas": pd.__version__}


def methods_text(methods: pd.Series | list[str]) -> str:
    """Which interval methods a table used, for its caption."""
    used = [m for m in METHOD_TEXT if m in set(methods)]
    return "; ".join(METHOD_TEXT[m] for m in used) if used else "none (nothing evaluable)"


@dataclass(frozen=True)
class SelectedRiskRatio:
    ratio: float  # observed: highest over lowest pooled ASR among the ranked providers
    low: float  # selection-aware 95% interval (see the module docstring)
    high: float
    high_provider: str
    low_provider: str
    providers: int  # providers ranked (the selection is among these)
    models: int
    prompts: int
    n_bootstrap: int
    same_pair: float  # share of resamples that re-selected the observed pair
    zero_low: int  # resamples whose lowest provider had no success (overshoot infinite: the low bound is 0)
    dropped: int  # resamples where every provider had no success (ratio undefined), left out and counted


def _model_weights(providers: np.ndarray, rng: np.random.Generator, n_bootstrap: int) -> np.ndarray:
    """How often each model is drawn when each provider's models are resampled with replacement (B x M)."""
    weights = np.zeros((n_bootstrap, len(providers)))
    for p in np.unique(providers):
        idx = np.flatnonzero(providers == p)
        draws = rng.integers(0, len(idx), (n_bootstrap, len(idx)))
        weights[:, idx] = (draws[:, :, None] == np.arange(len(idx))).sum(axis=1)
    return weights


def _selected(successes: np.ndarray, evaluable: np.ndarray, model_provider: np.ndarray, names: list[str],
              hi: int, lo: int, seed: int, n_bootstrap: int) -> SelectedRiskRatio:
    """successes, evaluable: models x prompts; model_provider: provider index of each model; hi, lo: the
    observed pair (the caller's ranking decides ties)."""
    n_models, n_prompts = successes.shape
    onehot = np.eye(len(names))[model_provider]  # models x providers
    observed = (successes.sum(1) @ onehot) / (evaluable.sum(1) @ onehot)
    rng = np.random.default_rng(seed)
    prompt_w = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=n_bootstrap)
    model_w = _model_weights(model_provider, rng, n_bootstrap)
    boot = ((model_w * (prompt_w @ successes.T)) @ onehot) / ((model_w * (prompt_w @ evaluable.T)) @ onehot)
    b_hi, b_lo = np.argmax(boot, 1), np.argmin(boot, 1)
    rows = np.arange(n_bootstrap)
    with np.errstate(divide="ignore", invalid="ignore"):
        overshoot = (np.log(boot[rows, b_hi] / boot[rows, b_lo])
                     - np.log(observed[b_hi] / observed[b_lo]))
    defined = ~np.isnan(overshoot)
    log_ratio = math.log(observed[hi] / observed[lo])
    # inverted_cdf picks observed overshoots (no interpolation), so an infinite one is a bound of 0.
    q_low, q_high = (np.quantile(overshoot[defined], [0.025, 0.975], method="inverted_cdf") if defined.any()
                     else (math.nan, math.nan))
    return SelectedRiskRatio(float(observed[hi] / observed[lo]), float(math.exp(log_ratio - q_high)),
                             float(math.exp(log_ratio - q_low)), names[hi], names[lo], len(names), n_models,
                             n_prompts, n_bootstrap, float(np.mean((b_hi == hi) & (b_lo == lo))),
                             int(np.isinf(overshoot).sum()), int((~defined).sum()))


def prompt_matrix(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Successes and evaluable traces per model (rows) and prompt (columns), zeros where a model lacks one."""
    counts = rows.groupby(["model", CLUSTER], sort=True, observed=True)["success"].agg(["sum", "size"])
    return (counts["sum"].unstack(fill_value=0).astype(float), counts["size"].unstack(fill_value=0).astype(float))


def selected_risk_ratio(rows: pd.DataFrame, providers: list[str], high: str, low: str, seed: int, *,
                        con: "duckdb.DuckDBPyConnection | None" = None,
                        n_bootstrap: int = N_BOOTSTRAP) -> SelectedRiskRatio:
    """The selection-aware interval for the pooled-ASR ratio of `high` over `low`, the highest and lowest
    of `providers` (at least 2, each with a success), from evaluable harmful traces `rows` (columns
    model, provider, prompt_id, success)."""
    frame = rows.loc[rows["provider"].isin(providers), ["model", "provider", CLUSTER, "success"]]
    names = sorted(providers)

    def compute() -> SelectedRiskRatio:
        k, n = prompt_matrix(frame)
        provider_of = frame.drop_duplicates("model").set_index("model")["provider"].loc[k.index]
        codes = np.array([names.index(p) for p in provider_of])
        return _selected(k.to_numpy(), n.to_numpy(), codes, names, names.index(high), names.index(low), seed,
                         n_bootstrap)

    if con is None:
        return compute()
    from engine.store import fit_cache

    settings = {"version": FIT_VERSION, "providers": names, "pair": [high, low], "seed": seed,
                "n_bootstrap": n_bootstrap,
                "libraries": _libraries()}
    key = fit_cache.fit_key("selected_risk_ratio", fit_cache.frame_digest(frame, list(frame.columns)), settings)
    return fit_cache.cached(con, key, "selected_risk_ratio", compute, _risk_to_json,
                            _risk_from_json)


def _risk_to_json(r: SelectedRiskRatio) -> dict[str, Any]:
    # JSON has no NaN or infinity (an all-undefined bootstrap): such floats are stored as their repr.
    return {k: {"float": repr(v)} if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in asdict(r).items()}


def _risk_from_json(d: dict[str, Any]) -> SelectedRiskRatio:
    return SelectedRiskRatio(**{k: float(v["float"]) if isinstance(v, dict) else v for k, v in d.items()})
