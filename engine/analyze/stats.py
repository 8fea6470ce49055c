"""Interval estimates, each a family that can be evaluated at any level (`interval_at(alpha)`, the
two-sided 1 - alpha interval) and a pure function of the units' values and clusters, so a simulation
can call exactly what the report prints (bench/interval_coverage.py, tests/analyze/test_coverage.py).

- A rate: Clopper-Pearson over independent units; over clusters (an item recurring under several
  seeds or attacks), Korn & Graubard's (1998) interval: Clopper-Pearson at the effective sample size
  n* = p(1 - p) / v (v the cluster-robust variance of the ratio estimate, n* at most n), shrunk by
  (z / t_df)^2 for the few clusters the variance rests on (df: Satterthwaite's, `effective_n`). Exact intervals, not Wilson:
  Wilson's coverage dips to 89-91% at 5-15 units for some rates in 0.05-0.95.
- A mean: the studentized (bootstrap-t) cluster bootstrap, resampling clusters (or units) and
  studentizing each resample with its own cluster-robust standard error, each end at least as far
  out as Student's t on clusters - 1 df (at 10 clusters the bare bootstrap-t covered 92.7-93.6% on
  skewed metrics, with the floor 93.5-99%); kept inside the values a unit can take (`bounded`,
  Metric.bounds: clipping, which cannot lose coverage); none over fewer than
  MIN_CLUSTERS clusters or when every cluster has the same mean. A percentile bootstrap covered
  80-92% over 6-10 units of a skewed or discrete metric, the t interval 86-95%.
- A ratio of two independent proportions: the score interval (`ratio_score_interval`).
- `inverted_p`: the two-sided p-value of the test that inverts an interval family, so a p-value
  printed beside an interval never disagrees with it.
Wilson (`wilson`) and the percentile `bootstrap_mean` are kept for the callers that still use them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.proportion import (confint_proportions_2indep, proportion_confint,
                                          test_proportions_2indep)

IntervalAt = Callable[[float], tuple[float, float]]
# A studentized bootstrap over fewer clusters (or units) than this covered less than 93% in simulation
# (8 units of a skewed or discrete metric: 91-93%); no interval is printed then.
MIN_CLUSTERS = 10
BOOTSTRAP_RESAMPLES = 2000
EXACT, KORN_GRAUBARD, STUDENTIZED = "Clopper-Pearson", "Korn-Graubard", "studentized bootstrap"


def interval_text(kind: str, many: str) -> str:
    """How a metric of `kind` gets its interval, for a report's prose (`many`: what its units are)."""
    if kind == "proportion":
        return (f"exact (Clopper-Pearson) over {many}; Korn-Graubard over items where an item recurs in a cell "
                "(Clopper-Pearson at the effective sample size, Satterthwaite df)")
    return (f"seeded studentized bootstrap over {many} (over items where an item recurs in a cell), each end at "
            f"least as far out as Student's t with one degree of freedom fewer than the {many}, and kept inside the "
            f"values a unit can take (e.g. never below 0 for a metric that never is: clipped, which leaves its "
            f"coverage unchanged); none over fewer than {MIN_CLUSTERS} or when every one has the same value")


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval (NaN ends when none is given; `note` says why), its N (units),
    the interval family (`interval_at`) and its method's name."""

    value: float
    low: float
    high: float
    n: int
    interval_at: IntervalAt | None = field(default=None, compare=False, repr=False)
    method: str = field(default="", compare=False)
    note: str = field(default="", compare=False)


def wilson(successes: int, n: int, alpha: float = 0.05) -> Estimate:
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return Estimate(successes / n, float(low), float(high), n)


def exact_rate(successes: float, n: int, alpha: float = 0.05) -> Estimate:
    """A rate over independent units with its Clopper-Pearson interval family (from counts)."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    return _estimate(successes / n, int(n), lambda a: clopper_pearson(successes, n, a), EXACT, "", alpha)


def inverted_p(interval_at: IntervalAt, null: float = 0.0, floor: float = 1e-12) -> float:
    """Two-sided p-value of `null` by inverting the interval family: the alpha at which an end of the
    (1 - alpha) interval reaches `null` (found by bisection on log alpha, so step functions such as
    bootstrap quantiles and exact intervals work too). 1 when even the zero-width interval (alpha = 1)
    holds `null`; `floor` when even the 1 - floor interval excludes it. So the 95% interval excludes
    `null` exactly when p < 0.05 (up to the bisection's relative tolerance of 1e-6)."""

    def excluded(alpha: float) -> bool:
        low, high = interval_at(alpha)
        return not (low <= null <= high)

    if not excluded(1.0):
        return 1.0
    if excluded(floor):
        return floor
    inside, outside = math.log(floor), 0.0
    while outside - inside > 1e-6:
        middle = (inside + outside) / 2
        inside, outside = (inside, middle) if excluded(math.exp(middle)) else (middle, outside)
    return math.exp(outside)


def cluster_totals(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster, the sum of the values and their number (clusters in order of first appearance)."""
    _, first, index = np.unique(clusters, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # relabel clusters by first appearance, for stable seeds
    index = order[index.ravel()]
    sums = np.bincount(index, weights=np.asarray(values, dtype=float))
    counts = np.bincount(index).astype(float)
    return sums, counts


def ratio_variance(sums: np.ndarray, counts: np.ndarray) -> float:
    """Cluster-robust (linearised) variance of the ratio estimate sum(sums) / sum(counts) over k
    clusters: k / (k - 1) * sum((s_i - r n_i)^2) / N^2. With one unit per cluster, s^2 / n."""
    k, total = len(sums), counts.sum()
    ratio = sums.sum() / total
    return float(k / (k - 1) * np.sum((sums - ratio * counts) ** 2) / total ** 2)


def quantile(dist: stats.rv_continuous, q: float, *shapes: float) -> np.float64:
    """`dist.ppf(q, *shapes)` at one point, equal to it (a numpy float too, so a division by a zero
    quantile still gives inf or NaN): inside (0 < q < 1, every shape positive, which is what beta, t and
    norm accept) the distribution's own quantile function `_ppf`, which `ppf` calls there after
    broadcasting and checking its arguments (0.25 ms a call, 10 us without: interval inversions and
    simulations call it millions of times); `ppf` itself elsewhere."""
    if 0 < q < 1 and all(shape > 0 for shape in shapes):
        return np.float64(dist._ppf(q, *shapes))
    return np.float64(dist.ppf(q, *shapes))


def clopper_pearson(successes: float, n: float, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson interval; counts may be fractional (an effective sample size)."""
    low = 0.0 if successes <= 0 else float(quantile(stats.beta, alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes >= n else float(quantile(stats.beta, 1 - alpha / 2, successes + 1, n - successes))
    return low, high


def effective_n(sums: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Korn & Graubard's effective sample size of a clustered rate, p(1 - p) / v (at most the number of
    units), and the degrees of freedom of v: Satterthwaite's (sum e^2)^2 / sum e^4 of the clusters'
    residuals e_i = s_i - p n_i, at most clusters - 1. A rare event seen in a few clusters rests its
    variance on those few: with clusters - 1 df the interval covered 91% at 30-40 prompts x 6 attacks,
    rate 0.05, ICC 0.5 (bench/interval_coverage.py). With no event (or no non-event) the variance is 0:
    the number of clusters is used, as if each were one unit (the most a rate of 0 over k clusters
    can say), with clusters - 1 df."""
    total, k = counts.sum(), len(sums)
    rate = sums.sum() / total
    if rate in (0.0, 1.0):
        return float(k), float(k - 1)
    residuals = sums - rate * counts
    v = ratio_variance(sums, counts)
    if v <= 0:  # every cluster at the overall rate: no spread between clusters, the units count in full
        return float(total), float(k - 1)
    df = min(k - 1.0, float(np.sum(residuals ** 2) ** 2 / np.sum(residuals ** 4)))
    return float(min(total, rate * (1 - rate) / v)), df


def rate_interval_of_totals(sums: np.ndarray, counts: np.ndarray) -> tuple[IntervalAt | None, str, str]:
    """The interval family of a rate from per-cluster successes and units: Clopper-Pearson when every
    cluster holds one unit, else Korn-Graubard (Clopper-Pearson at the effective sample size, shrunk by
    (z / t_df)^2). None (and why) with no unit or a single cluster."""
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    keep = counts > 0
    sums, counts = sums[keep], counts[keep]
    total = counts.sum()
    if total == 0:
        return None, "", "no units"
    if counts.max() == 1:
        x, n = float(sums.sum()), float(total)
        return (lambda alpha: clopper_pearson(x, n, alpha)), EXACT, ""
    if len(sums) < 2:
        return None, KORN_GRAUBARD, "one cluster: no variation between clusters to estimate"
    rate = sums.sum() / total
    n_star, df = effective_n(sums, counts)

    def at(alpha: float) -> tuple[float, float]:
        shrunk = n_star * _z_over_t(alpha, df) ** 2
        return clopper_pearson(rate * shrunk, shrunk, alpha)

    return at, KORN_GRAUBARD, ""


def _z_over_t(alpha: float, df: float) -> float:
    """z(1 - alpha/2) / t_df(1 - alpha/2); as alpha nears 1 both quantiles reach 0 (scipy returns exactly
    0 for integer df from about alpha = 1 - 1e-12), and the ratio tends to the densities' ratio at 0.
    (0/0 there made the narrowest interval NaN, and a p-value read from it 1 beside a 95% interval that
    excluded the bound.)"""
    t = float(quantile(stats.t, 1 - alpha / 2, df)) if alpha < 1 else 0.0
    if t > 1e-6:
        return float(quantile(stats.norm, 1 - alpha / 2)) / t
    return float(stats.t.pdf(0, df) / stats.norm.pdf(0))


def rate_estimate(values: np.ndarray | list[float], clusters: np.ndarray | None = None,
                  alpha: float = 0.05) -> Estimate:
    """A rate of 0/1 `values` with its interval (`rate_interval_of_totals`); `clusters` labels each
    unit's cluster (None: every unit is its own)."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if not np.all((data == 0) | (data == 1)):
        raise ValueError("a rate needs 0/1 values")
    sums, counts = (data, np.ones(len(data))) if clusters is None else cluster_totals(data, np.asarray(clusters))
    return _estimate(float(data.mean()), len(data), *rate_interval_of_totals(sums, counts), alpha=alpha)


def _estimate(value: float, n: int, interval_at: IntervalAt | None, method: str, note: str,
              alpha: float = 0.05) -> Estimate:
    if interval_at is None:
        return Estimate(value, math.nan, math.nan, n, None, method, note)
    low, high = interval_at(alpha)
    return Estimate(value, float(low), float(high), n, interval_at, method, note)


def studentized_draws(sums: np.ndarray, counts: np.ndarray, rng: np.random.Generator,
                      n_resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(estimate, its cluster-robust variance, resampled estimates, their variances) of a ratio of cluster
    sums, resampling whole clusters. Each resample's variance is pulled toward the sample's by one
    cluster's weight, (k v* + v) / (k + 1): a resample that drew one cluster k times (or clusters
    with equal means, common with a discrete metric) would otherwise have no spread and an infinite
    pivot. Measured: without it, 8-12 units of a mostly-constant metric printed no finite interval
    in 5-65% of studies; with it, coverage stays at 93% or more from 10 units (bench/interval_coverage.py)."""
    k = len(sums)
    index = rng.integers(0, k, (n_resamples, k))
    s, n = sums[index], counts[index]
    ratios = s.sum(1) / n.sum(1)
    variance = ratio_variance(sums, counts)
    variances = k / (k - 1) * ((s - ratios[:, None] * n) ** 2).sum(1) / n.sum(1) ** 2
    return float(sums.sum() / counts.sum()), variance, ratios, (k * variances + variance) / (k + 1)


def studentized_interval(estimate: float, se: float, pivots: np.ndarray, df: float | None = None) -> IntervalAt:
    """The bootstrap-t family: estimate - q(1 - alpha/2) se to estimate - q(alpha/2) se, q the quantiles
    of the resampled pivots. With `df` (clusters - 1), each end at least as far out as Student's t
    with df degrees of freedom puts it: the bootstrap's pivot quantiles from few clusters run short
    (at 10 units of a skewed metric the bare bootstrap-t covered 92.7-93.6%, nominal 95%;
    tests/analyze/test_coverage.py), the t interval misses skew; their union keeps both's coverage."""
    pivots = np.sort(pivots)

    def at(alpha: float) -> tuple[float, float]:
        if alpha >= 1:
            return estimate, estimate
        low_q, high_q = np.quantile(pivots, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
        if df is not None:
            t = float(quantile(stats.t, 1 - alpha / 2, df))
            low_q, high_q = min(low_q, -t), max(high_q, t)
        return estimate - high_q * se, estimate - low_q * se

    return at


def mean_interval_of_totals(sums: np.ndarray, counts: np.ndarray, seed: int,
                            n_resamples: int = BOOTSTRAP_RESAMPLES,
                            min_clusters: int = MIN_CLUSTERS) -> tuple[IntervalAt | None, str, str]:
    """The studentized cluster bootstrap of a mean from per-cluster sums and unit counts; None (and why)
    over fewer than `min_clusters` clusters or when every cluster has the same mean."""
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    k = len(sums)
    if k < min_clusters:
        what = "units" if counts.max(initial=0) <= 1 else "clusters"
        return None, STUDENTIZED, f"{k} {what}, fewer than {min_clusters} for an interval"
    estimate, variance, ratios, variances = studentized_draws(sums, counts, np.random.default_rng(seed), n_resamples)
    if variance == 0:
        return None, STUDENTIZED, f"every one of the {k} {'units' if counts.max() <= 1 else 'clusters'} has the same value"
    return (studentized_interval(estimate, math.sqrt(variance), (ratios - estimate) / np.sqrt(variances), k - 1),
            STUDENTIZED, "")


def bounded(est: Estimate, low: float, high: float) -> Estimate:
    """`est` with its interval family kept inside [low, high], the values its quantity can take (a mean
    of units that are never negative cannot be): each end of every level's interval clipped to them.
    The true value lies inside, so an interval covers it exactly when the clipped one does: coverage is
    unchanged, and a p-value against a value inside the bounds (its inversion) too."""
    family = est.interval_at
    if family is None or (low == -math.inf and high == math.inf):
        return est

    def at(alpha: float) -> tuple[float, float]:
        a, b = family(alpha)
        return min(max(a, low), high), max(min(b, high), low)
    ends = at(0.05)
    return replace(est, low=ends[0], high=ends[1], interval_at=at)


def mean_estimate(values: np.ndarray | list[float], seed: int, clusters: np.ndarray | None = None,
                  alpha: float = 0.05, n_resamples: int = BOOTSTRAP_RESAMPLES,
                  min_clusters: int = MIN_CLUSTERS) -> Estimate:
    """A mean with its studentized bootstrap interval over clusters (None: over units)."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    sums, counts = (data, np.ones(len(data))) if clusters is None else cluster_totals(data, np.asarray(clusters))
    family = mean_interval_of_totals(sums, counts, seed, n_resamples, min_clusters)
    return _estimate(float(data.mean()), len(data), *family, alpha=alpha)


def unit_estimate(kind: str, values: np.ndarray | list[float], seed: int, clusters: np.ndarray | None = None,
                  alpha: float = 0.05) -> Estimate:
    """The printed estimate of a metric of `kind` ('proportion' or 'mean') over its units."""
    if kind == "proportion":
        return rate_estimate(values, clusters, alpha)
    return mean_estimate(values, seed, clusters, alpha)


NOT_ESTIMABLE_NO_CONTROL_EVENTS = "not estimable: no events without the instructions"


def _binary_count(values: np.ndarray | list[float], arm: str) -> tuple[int, int]:
    data = np.asarray(values, dtype=float)
    if not np.all((data == 0) | (data == 1)):
        raise ValueError(f"relative_reduction needs 0/1 outcomes; the {arm} arm has other values")
    return int(data.sum()), len(data)


def ratio_score_interval(count_treated: int, n_treated: int, count_control: int, n_control: int,
                         alpha: float = 0.05) -> tuple[float, float]:
    """Score interval for RR = p_treated / p_control of two independent binomial arms (Koopman 1984;
    Miettinen & Nurminen 1985, with their n / (n - 1) variance correction), valid at zero counts.
    Needs count_control > 0. statsmodels' closed form (Nam 1995's cubic,
    `confint_proportions_2indep(..., compare="ratio", method="score")`) is used unless an arm is all
    events: there (statsmodels 0.15) its roots can be complex, NaN or wrong (1/1 vs 1/1 gives
    [1.0, 8.7]), so the same score test (`test_proportions_2indep`, method "score", the
    Miettinen-Nurminen correction) is inverted numerically on the log scale instead. Elsewhere the
    two agree to 1e-5 on every table with both arms up to 12 units."""
    if count_control <= 0 or n_treated <= 0 or n_control <= 0:
        raise ValueError("the ratio needs events in the control arm and units in both arms")
    rr = (count_treated / n_treated) / (count_control / n_control)
    if count_treated == n_treated or count_control == n_control:
        return _invert_ratio_score_test(count_treated, n_treated, count_control, n_control, rr, alpha)
    with np.errstate(all="ignore"):
        low, high = confint_proportions_2indep(count_treated, n_treated, count_control, n_control,
                                               compare="ratio", method="score", alpha=alpha)
    return (0.0 if count_treated == 0 else float(np.real(low))), float(np.real(high))


def _invert_ratio_score_test(x1: int, n1: int, x2: int, n2: int, rr: float, alpha: float) -> tuple[float, float]:
    def excess(log_ratio: float) -> float:  # p-value minus alpha; positive inside the interval
        with np.errstate(all="ignore"):
            p = test_proportions_2indep(x1, n1, x2, n2, value=math.exp(log_ratio), compare="ratio",
                                        method="score", correction=True).pvalue
        return float(p) - alpha

    def bound(start: float, step: float) -> float:
        inner = start
        outer = inner + step
        while excess(outer) > 0:
            inner, outer = outer, outer + step
            step *= 2
        return math.exp(optimize.brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-12))

    # Start a little off the estimate: at it the score test's variance can be 0 (e.g. both arms all events).
    centre = math.log(rr) if rr > 0 else math.log(1e-9)
    low = 0.0 if x1 == 0 else bound(centre - 1e-6, -0.5)
    high = bound(centre + 1e-6, 0.5)
    return low, high


def relative_reduction(baseline: np.ndarray | list[float], treated: np.ndarray | list[float],
                       alpha: float = 0.05) -> Estimate | None:
    """Relative reduction 1 - RR, RR = p_treated / p_baseline, of two independent arms of 0/1
    outcomes, with the score interval for RR (`ratio_score_interval`) mapped to 1 - RR: no
    resampling, and valid when the treated arm has no events (then the estimate is 100% and the
    interval's lower end says how small the reduction could be). None when either arm is empty or the
    baseline has no events: no reduction can be estimated (NOT_ESTIMABLE_NO_CONTROL_EVENTS).
    N is the number of units in both arms. Its family (`interval_at`) is the score interval at any level,
    so a test of "no reduction" inverts it (`inverted_p(est.interval_at)`): 1 when both arms are all
    events, where the score test's own p is NaN (its variance is 0 at the estimate)."""
    k_base, n_base = _binary_count(baseline, "baseline")
    k_treat, n_treat = _binary_count(treated, "treated")
    if n_base == 0 or n_treat == 0 or k_base == 0:
        return None
    rr = (k_treat / n_treat) / (k_base / n_base)

    def at(level: float) -> tuple[float, float]:
        if level >= 1:
            return 1 - rr, 1 - rr
        low, high = ratio_score_interval(k_treat, n_treat, k_base, n_base, level)
        return 1 - high, 1 - low

    return _estimate(1 - rr, n_base + n_treat, at, "score interval of the ratio (Miettinen-Nurminen)", "", alpha)


def bootstrap_mean(values: np.ndarray | list[float], seed: int, n_resamples: int = 2000,
                   alpha: float = 0.05) -> Estimate:
    """Mean with a percentile bootstrap interval, resampling the units given (e.g. trials)."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n == 1 or np.all(data == data[0]):
        # No variation to resample: the interval is the point (shown with its N).
        return Estimate(mean, mean, mean, n) if n > 1 else Estimate(mean, math.nan, math.nan, 1)
    result = stats.bootstrap((data,), np.mean, n_resamples=n_resamples, confidence_level=1 - alpha,
                             method="percentile", rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Estimate(mean, float(ci.low), float(ci.high), n)
