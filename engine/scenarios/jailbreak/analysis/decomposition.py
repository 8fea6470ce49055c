"""Model-level statistics for provider-versus-size questions (issue 4's analysis core).

Units are models: each has an attack success rate (ASR), a parameter count and a provider.
- `scale_regression`: OLS of ASR on log2(parameters): slope per doubling with a 95% CI, R^2, p.
- `one_way`: provider eta-squared and omega-squared, the F-test p, a permutation p, a confidence
  interval for eta-squared by inverting the noncentral F distribution (Steiger 2004), and the
  eta-squared expected with no provider effect, (k-1)/(N-1). A within-group bootstrap was tried
  and dropped: with providers of one or two models it is biased upward, and its interval could
  exclude the estimate itself.
- `group_residuals`: mean residual from the scale regression per provider (each model weighted
  equally), with bootstrap intervals.
- `risk_ratio`: ratio of two pooled rates with the Katz log interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy import optimize, stats


@dataclass(frozen=True)
class ScaleFit:
    slope_per_doubling: float
    slope_low: float
    slope_high: float
    intercept: float
    r2: float
    p_value: float
    n: int


def scale_regression(asr: np.ndarray, params_b: np.ndarray) -> ScaleFit:
    y, x = np.asarray(asr, float), np.log2(np.asarray(params_b, float))
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    low, high = fit.conf_int(0.05)[1]
    return ScaleFit(float(fit.params[1]), float(low), float(high), float(fit.params[0]), float(fit.rsquared),
                    float(fit.pvalues[1]), len(y))


def fitted(fit: ScaleFit, params_b: np.ndarray) -> np.ndarray:
    return fit.intercept + fit.slope_per_doubling * np.log2(np.asarray(params_b, float))


@dataclass(frozen=True)
class OneWay:
    eta2: float
    omega2: float
    f_stat: float
    p_f: float
    p_permutation: float
    eta2_low: float  # 95% interval from the noncentral F distribution
    eta2_high: float
    null_eta2: float  # expected eta-squared with no group effect: (k - 1) / (N - 1)
    k: int
    n: int


def _eta2_omega2_f(y: np.ndarray, codes: np.ndarray, k: int) -> tuple[float, float, float]:
    n = len(y)
    grand = y.mean()
    counts = np.bincount(codes, minlength=k)
    means = np.bincount(codes, weights=y, minlength=k) / np.maximum(counts, 1)
    ss_between = float(np.sum(counts * (means - grand) ** 2))
    ss_total = float(np.sum((y - grand) ** 2))
    ss_within = ss_total - ss_between
    df_b, df_w = k - 1, n - k
    ms_within = ss_within / df_w if df_w > 0 else math.nan
    eta2 = ss_between / ss_total if ss_total > 0 else math.nan
    omega2 = (ss_between - df_b * ms_within) / (ss_total + ms_within) if ss_total > 0 else math.nan
    f = (ss_between / df_b) / ms_within if df_b > 0 and ms_within > 0 else math.nan
    return eta2, omega2, f


def eta2_interval(f: float, df_between: int, df_within: int, alpha: float = 0.05) -> tuple[float, float]:
    """Confidence interval for eta-squared: invert the noncentral F for its noncentrality lambda,
    then eta^2 = lambda / (lambda + N) with N = df_between + df_within + 1."""
    if math.isnan(f):
        return math.nan, math.nan
    n = df_between + df_within + 1

    def lam_for(prob: float) -> float:
        # cdf(F; lambda) falls as lambda grows; lambda = 0 when even the central F is past `prob`.
        if stats.f.cdf(f, df_between, df_within) <= prob:
            return 0.0
        high = max(10.0, 2 * f * df_between)
        while stats.ncf.cdf(f, df_between, df_within, high) > prob:
            high *= 2
        return optimize.brentq(lambda lam: stats.ncf.cdf(f, df_between, df_within, lam) - prob, 0.0, high)

    low, high = lam_for(1 - alpha / 2), lam_for(alpha / 2)
    return low / (low + n), high / (high + n)


def one_way(values: np.ndarray, groups: list[str] | np.ndarray, *, seed: int,
            n_permutations: int = 5000) -> OneWay:
    y = np.asarray(values, float)
    labels, codes = np.unique(np.asarray(groups), return_inverse=True)
    k, n = len(labels), len(y)
    if k < 2 or n <= k:
        raise ValueError(f"one-way analysis needs at least 2 groups and more units than groups (k={k}, N={n})")
    eta2, omega2, f = _eta2_omega2_f(y, codes, k)
    p_f = float(stats.f.sf(f, k - 1, n - k)) if not math.isnan(f) else math.nan
    rng = np.random.default_rng(seed)
    perm = np.array([_eta2_omega2_f(y, rng.permutation(codes), k)[0] for _ in range(n_permutations)])
    p_perm = float((1 + np.sum(perm >= eta2 - 1e-12)) / (1 + n_permutations))
    low, high = eta2_interval(f, k - 1, n - k)
    return OneWay(eta2, omega2, f, p_f, p_perm, float(low), float(high), (k - 1) / (n - 1), k, n)


@dataclass(frozen=True)
class GroupResidual:
    group: str
    mean: float
    low: float
    high: float
    n: int


def group_residuals(asr: np.ndarray, params_b: np.ndarray, groups: list[str] | np.ndarray, *,
                    seed: int, n_bootstrap: int = 2000) -> list[GroupResidual]:
    """Mean residual of each group's models from the scale regression (models weighted equally)."""
    y = np.asarray(asr, float)
    residuals = y - fitted(scale_regression(y, params_b), params_b)
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    out = []
    for g in dict.fromkeys(groups.tolist()):
        r = residuals[groups == g]
        if len(r) > 1:
            boots = rng.choice(r, size=(n_bootstrap, len(r)), replace=True).mean(axis=1)
            low, high = np.percentile(boots, [2.5, 97.5])
        else:
            low = high = math.nan
        out.append(GroupResidual(str(g), float(r.mean()), float(low), float(high), len(r)))
    return out


@dataclass(frozen=True)
class RiskRatio:
    ratio: float
    low: float
    high: float


def risk_ratio(k1: int, n1: int, k2: int, n2: int, alpha: float = 0.05) -> RiskRatio:
    """(k1/n1) / (k2/n2) with the Katz log interval; undefined when either count is zero."""
    if min(k1, k2) == 0 or min(n1, n2) == 0:
        return RiskRatio(math.nan, math.nan, math.nan)
    ratio = (k1 / n1) / (k2 / n2)
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    z = stats.norm.ppf(1 - alpha / 2)
    return RiskRatio(ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se))
