"""Model-level statistics for provider-versus-size questions (issue 4's analysis core).

Units are models: each has an attack success rate (ASR), a parameter count and a provider.
- `scale_regression`: OLS of ASR on log2(parameters): slope per doubling with a 95% CI, R^2, p.
- `one_way`: provider eta-squared and omega-squared, the F-test p, a permutation p, a confidence
  interval for eta-squared by inverting the noncentral F distribution (Steiger 2004), and the
  eta-squared expected with no provider effect, (k-1)/(N-1). A within-group bootstrap was tried
  and dropped: with providers of one or two models it is biased upward, and its interval could
  exclude the estimate itself.
- `group_residuals`: mean residual from the scale regression per provider (each model weighted
  equally), with a t interval from the regression with the provider's own intercept added.
- `risk_ratio`: ratio of two pooled rates with the Katz log interval.
- `variance_shares`: size R^2 and provider eta^2 of the same models, each with a noncentral-F
  interval and its no-effect value, and their difference with the inverted permutation test.
  Deliberately no ratio eta^2 / R^2: it grows without bound as R^2 approaches 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import statsmodels.api as sm
from scipy import stats

from engine.analyze.inference import IntervalAt, share_family, shift_family


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
    return share_family(f, df_between, df_within, df_between + df_within + 1)(alpha)


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
    low: float  # 95% interval for the group's expected mean residual; NaN when none can be given
    high: float
    n: int
    df: int  # residual degrees of freedom of the interval's t quantile (0: no interval)


def group_residuals(asr: np.ndarray, params_b: np.ndarray, groups: list[str] | np.ndarray) -> list[GroupResidual]:
    """Mean residual of each group's models from the scale regression (models weighted equally), with a
    95% interval that carries the regression's uncertainty and the between-model variation.

    With e = (I - H) y the OLS residuals and 1_g the group's indicator, the mean residual 1_g'e / m has
    variance sigma^2 c / m^2, c = 1_g'(I - H) 1_g. sigma^2 is estimated from the regression with an
    intercept for the group added (y ~ 1 + log2 params + 1_g, N - 3 df): its coefficient is m * mean / c
    and its t interval, scaled by c / m, is an exact 95% interval for the expected mean residual under
    normal, equal-variance model errors (a bootstrap over a provider's two or three models covered 52%
    and 75%). One-model providers get one too (their model's externally studentized residual); none
    when the group's intercept is not identified or no degree of freedom is left."""
    y, x = np.asarray(asr, float), np.log2(np.asarray(params_b, float))
    base = sm.add_constant(x, has_constant="add")
    residuals = y - base @ sm.OLS(y, base).fit().params
    hat = base @ np.linalg.pinv(base)
    groups = np.asarray(groups)
    out = []
    for g in dict.fromkeys(groups.tolist()):
        member = (groups == g).astype(float)
        m = int(member.sum())
        mean = float(residuals[member == 1].mean())
        design = np.column_stack([base, member])
        df = len(y) - 3
        c = float(member @ (member - hat @ member))
        if df < 1 or np.linalg.matrix_rank(design) < 3 or c <= 1e-12:
            out.append(GroupResidual(str(g), mean, math.nan, math.nan, m, 0))
            continue
        low, high = sm.OLS(y, design).fit().conf_int(0.05)[2] * c / m
        out.append(GroupResidual(str(g), mean, float(low), float(high), m, df))
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


@dataclass(frozen=True)
class VarianceShares:
    """The shares of model-level ASR variance that size and provider account for, each with a 95%
    interval and its value expected with no effect, and their difference with a 95% interval. No
    ratio: eta^2 / R^2 grows without bound as R^2 approaches 0, so it says more about a small R^2 than
    about the provider."""

    r2: float  # size: R^2 of ASR on log2(parameters)
    r2_low: float  # population R^2, noncentral F inverted (sizes taken as fixed)
    r2_high: float
    null_r2: float  # expected R^2 with no size effect: 1 / (N - 1)
    eta2: float  # provider: eta^2
    eta2_low: float
    eta2_high: float
    null_eta2: float  # (k - 1) / (N - 1)
    difference: float  # eta2 - r2
    difference_low: float  # the permutation test inverted (see variance_shares)
    difference_high: float
    null_difference: float  # (k - 2) / (N - 1): eta2 - r2 expected when neither provider nor size matters
    n_permutations: int  # arrangements of ASR over the models drawn (the observed one added)
    k: int
    n: int
    difference_at: IntervalAt | None = field(default=None, compare=False)  # its interval at any level


def _differences(ys: np.ndarray, xs: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """eta^2 - R^2 of each row (arrangements x models) of ASR `ys`, log sizes `xs` and group codes."""
    centred = ys - ys.mean(axis=1, keepdims=True)
    total = np.sum(centred ** 2, axis=1)
    member = groups[:, :, None] == np.arange(k)
    counts, sums = member.sum(axis=1), np.einsum("bnk,bn->bk", member, centred)
    between = np.sum(np.where(counts > 0, sums ** 2 / np.maximum(counts, 1), 0.0), axis=1)
    dx = xs - xs.mean(axis=1, keepdims=True)
    r2 = np.minimum(np.sum(dx * centred, axis=1) ** 2 / (np.sum(dx ** 2, axis=1) * total), 1.0)
    return between / total - r2


def _r2(y: np.ndarray, x: np.ndarray) -> float:
    """R^2 of a simple regression; NaN without variation in x or y."""
    sx, sy = float(np.sum((x - x.mean()) ** 2)), float(np.sum((y - y.mean()) ** 2))
    if sx <= 0 or sy <= 0:
        return math.nan
    return min(float(np.sum((x - x.mean()) * (y - y.mean()))) ** 2 / (sx * sy), 1.0)


def variance_shares(asr: np.ndarray, params_b: np.ndarray, groups: list[str] | np.ndarray, *, seed: int,
                    n_permutations: int = 2000, alpha: float = 0.05) -> VarianceShares:
    """Provider eta^2 and size R^2 of the same models, and eta^2 - R^2.

    Each share's interval inverts the noncentral F (Steiger 2004; for R^2 the F of the slope with 1
    and N - 2 degrees of freedom, sizes fixed). Under no effect the sample eta^2 and R^2 average
    (k-1)/(N-1) and 1/(N-1) (their null Beta distributions; also their exact means over all
    permutations of ASR across models), so eta^2 - R^2 averages (k-2)/(N-1), not 0.

    The difference's interval inverts the permutation test of "neither provider nor size matters"
    (ASR permuted over the models, sizes and providers kept; the observed arrangement counted among
    the draws) under a shift of eta^2 - R^2: the estimate minus the permutation quantiles taken
    about (k-2)/(N-1). Its lower end clears the no-effect value exactly when the permutation p-value
    is below 2.5%. Chosen by simulation (21 models of 12 providers, neither effect;
    tests/scenarios/jailbreak/test_variance_claim.py): the lower end cleared the no-effect value in
    2.5% of studies and the upper end fell below it in 2.1% (3000 studies), where a percentile bootstrap
    over models cleared it in 7.8% (a duplicated model shrinks its provider's spread, so resampled
    eta^2 runs high), a BCa bootstrap fell below it in 14% and a bootstrap-t in 7%."""
    y, x = np.asarray(asr, float), np.log2(np.asarray(params_b, float))
    labels, codes = np.unique(np.asarray(groups), return_inverse=True)
    k, n = len(labels), len(y)
    if k < 2 or n <= k or n < 3:
        raise ValueError(f"variance shares need at least 2 groups, more units than groups and 3 units "
                         f"(k={k}, N={n})")
    eta2, _, f_provider = _eta2_omega2_f(y, codes, k)
    r2 = _r2(y, x)
    if math.isnan(r2) or math.isnan(eta2):
        raise ValueError("variance shares need variation in both ASR and size")
    eta2_low, eta2_high = eta2_interval(f_provider, k - 1, n - k, alpha)
    f_size = r2 * (n - 2) / (1 - r2) if r2 < 1 else math.nan
    r2_low, r2_high = eta2_interval(f_size, 1, n - 2, alpha)

    order = np.argsort(np.random.default_rng(seed).random((n_permutations, n)), axis=1)
    permuted = _differences(y[order], np.broadcast_to(x, order.shape), np.broadcast_to(codes, order.shape), k)
    null_difference = (k - 2) / (n - 1)
    family = shift_family(eta2 - r2, np.append(permuted, eta2 - r2), null_difference)
    d_low, d_high = family(alpha)
    return VarianceShares(float(r2), float(r2_low), float(r2_high), 1 / (n - 1), float(eta2), float(eta2_low),
                          float(eta2_high), (k - 1) / (n - 1), float(eta2 - r2), float(d_low), float(d_high),
                          null_difference, n_permutations, k, n, family)
