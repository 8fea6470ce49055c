"""Intervals clustered on the randomised unit, the prompt (prompt_id), and the selection-aware risk ratio.

Every prompt is played under every attack (and every sample), so a model's traces are not independent
draws: a hard prompt is refused under all its attacks. Wilson over traces treats them as independent
and understates the uncertainty about the rate over the population of prompts the corpus stands for
(issue 13: 86% coverage in simulation).

- `clustered_rates`: each group's rate (sum of successes over sum of evaluable traces) with a 95%
  interval: Clopper-Pearson over traces when no prompt appears twice in the group (the traces are the
  prompts); otherwise Korn & Graubard's interval over prompts (engine/analyze/stats.py: Clopper-Pearson
  at the effective number of traces the prompts' spread implies, with Satterthwaite's degrees of
  freedom). The BCa bootstrap over prompts used before covered 89-91% in simulation at 10-40 prompts x 6
  attacks when success depends strongly on the prompt (beta-binomial, intraclass correlation 0.5; 1,000
  studies each); Korn-Graubard covers at least 93% over 4-60 prompts (issue 21,
  bench/interval_coverage.py).
- `selected_risk_ratio`: the ratio of the highest to the lowest provider's pooled ASR, picked after
  looking. A provider's models are a sample of the models it makes: each model's log ASR is its
  provider's mean plus a model effect (random, one variance shared by every provider, estimated from
  the providers with two or more models: models - providers degrees of freedom). The interval is
  Tukey-Kramer's simultaneous interval for the ratio of two providers' mean model ASRs (geometric
  means on the log scale; with a shared model variance, the ratio of the providers' population rates
  too): it holds for every pair of providers at once, so for the pair picked as the extremes. The
  bootstrap used before resampled a provider's one or two models and could not see how much they
  differ: it covered the providers' ratio in 61-62% of simulated studies whose models differ (model
  log-odds SD 0.5 or 1). This one covers 95-99% (tests/scenarios/jailbreak/test_clustered.py) and is
  wide when models differ, as it must be: a ranking of providers from one or two models each says
  little about the providers.

Both are stored in the study database (engine/store/fit_cache.py) when given a connection, keyed by
the data they read, their settings, FIT_VERSION and the library versions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy
from scipy import stats

from engine.analyze.inference import InvertedFamily
from engine.analyze.stats import KORN_GRAUBARD, rate_interval_of_totals

if TYPE_CHECKING:
    import duckdb

FIT_VERSION = "2"
N_BOOTSTRAP = 2000  # kept for callers' signatures: no interval here resamples any more
CLUSTER = "prompt_id"
EXACT, CLUSTERED, NO_INTERVAL = "exact_traces", "korn_graubard_prompts", "none"
METHOD_TEXT = {
    EXACT: "Clopper-Pearson over traces (no prompt appears twice)",
    CLUSTERED: f"{KORN_GRAUBARD} over prompts (Clopper-Pearson at the effective number of traces, Satterthwaite df)",
    NO_INTERVAL: "none (one prompt: no spread between prompts to estimate)",
}


def cluster_interval(successes: np.ndarray, evaluable: np.ndarray, seed: int = 0,
                     n_bootstrap: int = N_BOOTSTRAP) -> tuple[float, float, float, str]:
    """(rate, low, high, method) from per-prompt successes and evaluable traces (one entry per prompt).
    `seed` and `n_bootstrap` are unused (the interval does not resample) and kept for callers."""
    k, n = np.asarray(successes, float), np.asarray(evaluable, float)
    keep = n > 0
    k, n = k[keep], n[keep]
    total = n.sum()
    if total == 0:
        return math.nan, math.nan, math.nan, EXACT
    rate = float(k.sum() / total)
    family, _, _ = rate_interval_of_totals(k, n)
    method = EXACT if n.max() == 1 else CLUSTERED if family is not None else NO_INTERVAL
    if family is None:
        return rate, math.nan, math.nan, method
    low, high = family(0.05)
    return rate, float(low), float(high), method


def _cell_counts(rows: pd.DataFrame, by: str) -> tuple[pd.Index, pd.Index, np.ndarray, np.ndarray]:
    """Successes and traces per `by` group (rows, sorted as groupby sorts) and prompt (columns, sorted),
    groups and prompts without a trace left out, as groupby(..., observed=True) leaves them: counted
    with numpy (a simulated study calls this hundreds of times; pandas' groupby took most of its time)."""
    group, groups = pd.factorize(rows[by], sort=True)
    prompt, prompts = pd.factorize(rows[CLUSTER], sort=True)
    keep = (group >= 0) & (prompt >= 0)  # a missing key is no group, as in groupby
    cell = group[keep] * len(prompts) + prompt[keep]
    size = len(groups) * len(prompts)
    sums = np.bincount(cell, rows["success"].to_numpy(float)[keep], size).reshape(len(groups), len(prompts))
    sizes = np.bincount(cell, minlength=size).reshape(len(groups), len(prompts)).astype(float)
    seen_groups, seen_prompts = sizes.any(1), sizes.any(0)
    return (groups[seen_groups], prompts[seen_prompts], sums[np.ix_(seen_groups, seen_prompts)],
            sizes[np.ix_(seen_groups, seen_prompts)])


def _rates(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    groups, _, sums, sizes = _cell_counts(rows, by)
    out = []
    for i, name in enumerate(groups):
        seen = sizes[i] > 0  # the group's prompts
        k, n = sums[i][seen], sizes[i][seen]
        rate, low, high, method = cluster_interval(k, n)
        out.append((str(name), int(k.sum()), int(n.sum()), int(seen.sum()), rate, low, high, method))
    return pd.DataFrame(out, columns=[by, "successes", "evaluable", "prompts", "value", "low", "high", "method"])


def clustered_rates(rows: pd.DataFrame, by: str, seed: int, *, con: "duckdb.DuckDBPyConnection | None" = None,
                    n_bootstrap: int = N_BOOTSTRAP) -> pd.DataFrame:
    """One row per value of `by`: successes, evaluable, prompts, value, low, high, method (METHOD_TEXT).
    `rows` are evaluable traces with columns `by`, prompt_id and a boolean `success`: a pure function of
    them (`seed` and `n_bootstrap` are unused, kept for callers; nothing is resampled)."""
    columns = [by, CLUSTER, "success"]
    frame = rows[columns]
    if con is None or frame.empty:
        return _rates(frame, by)
    from engine.store import fit_cache

    settings = {"version": FIT_VERSION, "by": by, "libraries": _libraries()}
    key = fit_cache.fit_key("clustered_rates", fit_cache.frame_digest(frame, columns), settings)
    # JSON has no NaN (a group with no interval): stored as null, read back as NaN.
    return fit_cache.cached(con, key, "clustered_rates", lambda: _rates(frame, by),
                            lambda df: df.astype(object).where(df.notna(), None).to_dict(orient="split"),
                            lambda d: pd.DataFrame(**d).astype({"successes": int, "evaluable": int, "prompts": int,
                                                                "value": float, "low": float, "high": float}))


def _libraries() -> dict[str, str]:
    return {"scipy": scipy.__version__, "numpy": np.__version__, "pandas": pd.__version__}


def methods_text(methods: pd.Series | list[str]) -> str:
    """Which interval methods a table used, for its caption."""
    used = [m for m in METHOD_TEXT if m in set(methods)]
    return "; ".join(METHOD_TEXT[m] for m in used) if used else "none (nothing evaluable)"


@dataclass(frozen=True)
class SelectedRiskRatio:
    ratio: float  # observed: highest over lowest pooled ASR among the ranked providers
    low: float  # selection-aware 95% interval (see the module docstring); NaN when none can be given
    high: float
    high_provider: str
    low_provider: str
    providers: int  # providers ranked (the selection is among these)
    models: int
    prompts: int
    centre: float  # the interval's centre: the ratio of the two providers' geometric-mean model ASRs
    log_se: float  # its standard error on the log scale (model variance / each provider's models)
    df: int  # degrees of freedom of the model variance: models - providers
    model_sd: float  # SD of a model's log ASR around its provider's mean, pooled over providers
    reason: str = ""  # why there is no interval

    @property
    def family(self) -> InvertedFamily:
        """`interval_at` with its exact inversion (one studentized-range tail per p-value)."""
        return InvertedFamily(self.interval_at, self.p_above)

    def p_above(self, bound: float) -> float:
        """One-sided p of "the ratio is above `bound`", the inversion of `interval_at`: the lower end
        of the (1 - 2 beta) interval, centre * exp(-q(1 - 2 beta) / sqrt 2 * log_se), reaches the bound
        at beta = P(Q > sqrt 2 * log(centre / bound) / log_se) / 2 (Q the studentized range)."""
        if not math.isfinite(self.log_se) or self.df < 1 or not bound > 0:
            return math.nan
        x = math.sqrt(2) * (math.log(self.centre) - math.log(bound)) / self.log_se
        tail = float(stats.studentized_range.sf(abs(x), self.providers, self.df)) / 2 if x != 0 else 0.5
        return tail if x > 0 else 1 - tail

    def interval_at(self, alpha: float) -> tuple[float, float]:
        """The (1 - alpha) simultaneous (Tukey-Kramer) interval for the pair's ratio."""
        if not math.isfinite(self.log_se) or self.df < 1:
            return math.nan, math.nan
        if alpha >= 1:
            return self.centre, self.centre
        half = _studentized_range(1 - alpha, self.providers, self.df) / math.sqrt(2) * self.log_se
        return self.centre * math.exp(-half), self.centre * math.exp(half)


@lru_cache(maxsize=4096)
def _studentized_range(q: float, k: int, df: int) -> float:
    return float(stats.studentized_range.ppf(q, k, df))


def model_log_asr(successes: np.ndarray, evaluable: np.ndarray) -> np.ndarray:
    """Each model's log ASR, with half a success added (and one trace) so a model with none has one."""
    return np.log((np.asarray(successes, float) + 0.5) / (np.asarray(evaluable, float) + 1))


def _selected(successes: np.ndarray, evaluable: np.ndarray, model_provider: np.ndarray, names: list[str],
              hi: int, lo: int, alpha: float = 0.05) -> SelectedRiskRatio:
    """successes, evaluable: models x prompts; model_provider: provider index of each model; hi, lo: the
    observed pair (the caller's ranking decides ties)."""
    n_models, n_prompts = successes.shape
    k_providers = len(names)
    observed = (np.bincount(model_provider, successes.sum(1), k_providers)
                / np.bincount(model_provider, evaluable.sum(1), k_providers))
    logs = model_log_asr(successes.sum(1), evaluable.sum(1))
    size = np.bincount(model_provider, minlength=k_providers).astype(float)
    means = np.bincount(model_provider, logs, k_providers) / np.maximum(size, 1)
    df = int(n_models - np.count_nonzero(size))
    ratio = float(observed[hi] / observed[lo])
    centre = float(math.exp(means[hi] - means[lo]))
    base = dict(ratio=ratio, high_provider=names[hi], low_provider=names[lo], providers=k_providers,
                models=n_models, prompts=n_prompts, centre=centre, df=df)
    if df < 1:
        return SelectedRiskRatio(low=math.nan, high=math.nan, log_se=math.nan, model_sd=math.nan,
                                 reason="every provider has one model, so how much a provider's models differ "
                                        "cannot be estimated", **base)
    model_sd = math.sqrt(float(np.sum((logs - means[model_provider]) ** 2)) / df)
    if model_sd == 0:
        return SelectedRiskRatio(low=math.nan, high=math.nan, log_se=math.nan, model_sd=0.0,
                                 reason="every provider's models have the same ASR: no spread to estimate", **base)
    result = SelectedRiskRatio(low=math.nan, high=math.nan, model_sd=model_sd,
                               log_se=model_sd * math.sqrt(1 / size[hi] + 1 / size[lo]), **base)
    low, high = result.interval_at(alpha)
    return replace(result, low=low, high=high)


def prompt_matrix(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Successes and evaluable traces per model (rows) and prompt (columns), zeros where a model lacks one."""
    models, prompts, sums, sizes = _cell_counts(rows, "model")
    models, prompts = models.rename("model"), prompts.rename(CLUSTER)
    return pd.DataFrame(sums, models, prompts), pd.DataFrame(sizes, models, prompts)


def selected_risk_ratio(rows: pd.DataFrame, providers: list[str], high: str, low: str, seed: int = 0, *,
                        con: "duckdb.DuckDBPyConnection | None" = None,
                        n_bootstrap: int = N_BOOTSTRAP) -> SelectedRiskRatio:
    """The selection-aware interval for the ratio of `high` over `low`, the highest and lowest of
    `providers` (at least 2, each with a success), from evaluable harmful traces `rows` (columns model,
    provider, prompt_id, success): a pure function of those rows. `seed` and `n_bootstrap` are unused
    (nothing is resampled) and kept for callers."""
    frame = rows.loc[rows["provider"].isin(providers), ["model", "provider", CLUSTER, "success"]]
    names = sorted(providers)

    def compute() -> SelectedRiskRatio:
        k, n = prompt_matrix(frame)
        provider_of = frame.drop_duplicates("model").set_index("model")["provider"].loc[k.index]
        codes = np.array([names.index(p) for p in provider_of])
        return _selected(k.to_numpy(), n.to_numpy(), codes, names, names.index(high), names.index(low))

    if con is None:
        return compute()
    from engine.store import fit_cache

    settings = {"version": FIT_VERSION, "providers": names, "pair": [high, low], "libraries": _libraries()}
    key = fit_cache.fit_key("selected_risk_ratio", fit_cache.frame_digest(frame, list(frame.columns)), settings)
    return fit_cache.cached(con, key, "selected_risk_ratio", compute, _risk_to_json,
                            _risk_from_json)


def _risk_to_json(r: SelectedRiskRatio) -> dict[str, Any]:
    # JSON has no NaN or infinity: such floats are stored as their repr.
    return {k: {"float": repr(v)} if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in asdict(r).items()}


def _risk_from_json(d: dict[str, Any]) -> SelectedRiskRatio:
    return SelectedRiskRatio(**{k: float(v["float"]) if isinstance(v, dict) else v for k, v in d.items()})
