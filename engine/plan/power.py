"""Precision and power of a planned design, before any call: the expected 95% interval half-width
of a rate at the planned N, the minimum detectable difference (MDD) of a comparison at 80% power
and alpha 0.05, and the N that reaches a target half-width.

The math here is procedure-agnostic; `engine.analyze.report_power` says which interval the report
computes in each design and feeds it in:
- clustering: n trials in clusters of m (an item repeated across seeds, the games of one seed
  under common random numbers) carry the information of n / deff trials, deff = 1 + (m - 1) ICC
  (Kish's design effect): the variance of a cluster mean is p q deff / m;
- pairing: two arms seen on the same items with outcome correlation rho have
  Var(p1 - p2) = (p1 q1 + p2 q2 - 2 rho sqrt(p1 q1 p2 q2)) / n;
- an interval over k clusters (`ClusterRule`) excludes 0 when |mean| > c(k) s / sqrt(k), s the
  clusters' SD: its power is a noncentral t's tail (k - 1 degrees of freedom) and its expected
  half-width c(k) c4(k) sigma / sqrt(k) (c4: the bias of the sample SD);
- an interval on counts (one pair or one unit per cluster) is evaluated exactly: its power is the
  probability of the counts for which it excludes 0 (`exact_paired_power`,
  `exact_independent_power`, `counts_halfwidths`);
- otherwise, 0/1 outcomes in clusters are simulated (`ClusteredRates`), with common random numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from scipy import special, stats

ALPHA = 0.05
POWER = 0.80


def design_effect(cluster_size: float, icc: float) -> float:
    """Kish's design effect 1 + (m - 1) ICC of clusters of m units (m <= 1: no clustering)."""
    if not 0 <= icc <= 1:
        raise ValueError(f"an intra-cluster correlation lies in [0, 1], not {icc}")
    return 1 + max(cluster_size - 1, 0) * icc


def rate_halfwidth(p: float, n: int, deff: float = 1.0, alpha: float = ALPHA) -> float:
    """Half-width of the Wilson interval at rate p and effective sample size n / deff."""
    if n <= 0:
        return math.nan
    n_eff = n / deff
    z = stats.norm.ppf(1 - alpha / 2)
    return z / (1 + z * z / n_eff) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff))


def trials_for_halfwidth(p: float, target: float, deff: float = 1.0, alpha: float = ALPHA,
                         limit: int = 10**9) -> int:
    """The smallest N whose expected half-width at rate p is at most `target`."""
    if not 0 < target < 0.5:
        raise ValueError(f"a target half-width lies in (0, 0.5), not {target}")
    low, high = 1, 1
    while rate_halfwidth(p, high, deff, alpha) > target:
        low, high = high, high * 2
        if high > limit:
            raise ValueError(f"no N up to {limit} reaches a half-width of {target}")
    while low < high:  # the half-width falls as N grows
        mid = (low + high) // 2
        if rate_halfwidth(p, mid, deff, alpha) <= target:
            high = mid
        else:
            low = mid + 1
    return low


def _diff_sd(p1: float, p2: float, rho: float) -> float:
    v1, v2 = p1 * (1 - p1), p2 * (1 - p2)
    return math.sqrt(max(v1 + v2 - 2 * rho * math.sqrt(v1 * v2), 0.0))


def power_two_rates(p1: float, p2: float, n: float, *, deff: float = 1.0, rho: float = 0.0,
                    alpha: float = ALPHA) -> float:
    """Power of the two-sided z-test of p1 = p2 with n units per arm (paired with correlation rho
    when rho > 0; rho = 0 is two independent arms of n each). Under the null both arms have the
    mean rate; `deff` inflates both variances."""
    n_eff = n / deff
    null_sd = _diff_sd((p1 + p2) / 2, (p1 + p2) / 2, rho) / math.sqrt(n_eff)
    alt_sd = _diff_sd(p1, p2, rho) / math.sqrt(n_eff)
    if alt_sd == 0:
        return 1.0 if p1 != p2 else alpha
    z = stats.norm.ppf(1 - alpha / 2)
    delta = abs(p1 - p2)
    return float(stats.norm.cdf((delta - z * null_sd) / alt_sd) + stats.norm.cdf((-delta - z * null_sd) / alt_sd))


def centred_arms(p: float, d: float) -> tuple[float, float]:
    """Two rates d apart whose mean is p, shifted as little as needed to stay within [0, 1]: before
    data p is 1/2, where a difference is hardest to detect."""
    low = min(max(p - d / 2, 0.0), 1.0 - d)
    return low, low + d


def smallest_detectable(power_at: Callable[[float], float], largest: float, power: float = POWER,
                        steps: int = 100, monotone: bool = False) -> float | None:
    """The smallest difference d in (0, largest] from which `power_at(d)` stays at least `power`;
    None when not even `largest` reaches it. An exact test's power is a step function, not always
    monotone in d: it is scanned on a grid of `steps` first, unless `monotone` (a simulation with
    common random numbers, where each evaluation is costly), then bisected (to 1e-4; 2e-3 when
    monotone, well inside a simulation's own error)."""
    if power_at(largest) < power:
        return None
    low, high = 0.0, largest
    if not monotone:
        grid = np.linspace(largest / steps, largest, steps)
        reached = np.array([power_at(float(d)) >= power for d in grid])
        failing = np.flatnonzero(~reached)
        if len(failing):
            low, high = float(grid[failing[-1]]), float(grid[failing[-1] + 1])
        else:
            high = float(grid[0])
    while high - low > (2e-3 if monotone else 1e-4):
        mid = (low + high) / 2
        if power_at(mid) >= power:
            high = mid
        else:
            low = mid
    return high


def mdd_rates(p: float, n: float, *, deff: float = 1.0, rho: float = 0.0, alpha: float = ALPHA,
              power: float = POWER) -> float | None:
    """The smallest difference between two arms of n units centred on rate p (`centred_arms`) that the
    two-sided z-test detects with the given power; None when no difference within [0, 1] does. The
    normal approximation the report's exact intervals approach for large n."""
    return smallest_detectable(lambda d: power_two_rates(*centred_arms(p, d), n, deff=deff, rho=rho, alpha=alpha),
                               1.0, power)


def mdd_means(sd: float, n: float, *, deff: float = 1.0, rho: float = 0.0, alpha: float = ALPHA,
              power: float = POWER) -> float:
    """Minimum detectable difference of two means with common SD, n units per arm (paired with
    correlation rho): (z_{1-alpha/2} + z_power) * SD * sqrt(2 (1 - rho) deff / n)."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sd * math.sqrt(2 * (1 - rho) * deff / n))


# ---------------------------------------------------------------- intervals over clusters

def percentile_critical(k: int, alpha: float = ALPHA) -> float:
    """A percentile bootstrap over k clusters: its quantiles sit about z sqrt((k - 1) / k) standard
    errors from the mean (the bootstrap's variance of a mean of k draws is (k - 1) / k of s^2 / k)."""
    return float(stats.norm.ppf(1 - alpha / 2) * math.sqrt((k - 1) / k))


def t_critical(k: int, alpha: float = ALPHA) -> float:
    """A t interval on k cluster means: Student's quantile with k - 1 degrees of freedom."""
    return float(stats.t.ppf(1 - alpha / 2, k - 1))


# On simulated studies, each a row of k clusters' event counts (m units a cluster), an interval over
# clusters is a function of those counts: `decide(first, second, m, alpha)` says, per study, whether
# the interval of the second arm's rate minus the first's excludes 0; `interval(counts, m, alpha)`
# gives one arm's rate interval per study. Counts are floats holding whole numbers: sums of them are
# exact, so a resampled difference of exactly 0 stays 0, as in the report's own intervals.

def t_interval(counts: np.ndarray, m: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per simulated study: the t interval on its k cluster means."""
    k = counts.shape[1]
    means = counts / m
    centre, half = means.mean(axis=1), t_critical(k, alpha) * means.std(axis=1, ddof=1) / math.sqrt(k)
    return centre - half, centre + half


def t_decide(first: np.ndarray, second: np.ndarray, m: int, alpha: float) -> np.ndarray:
    """Per simulated study: does the t interval on the k paired cluster differences exclude 0?"""
    low, high = t_interval(second - first, m, alpha)
    return (low > 0) | (high < 0)


BOOTSTRAP_RESAMPLES = 1000


@lru_cache(maxsize=32)
def _resample_counts(k: int) -> np.ndarray:
    """k x resamples: how often each of k clusters is drawn in each bootstrap resample."""
    picks = np.random.default_rng([k, BOOTSTRAP_RESAMPLES]).integers(0, k, size=(BOOTSTRAP_RESAMPLES, k))
    counts = np.zeros((BOOTSTRAP_RESAMPLES, k))
    np.add.at(counts, (np.arange(BOOTSTRAP_RESAMPLES)[:, None], picks), 1.0)
    return counts.T


def percentile_decide(first: np.ndarray, second: np.ndarray, m: int, alpha: float) -> np.ndarray:
    """Per simulated study: does the percentile bootstrap over its clusters (of equal size) exclude 0?
    The interval engine.analyze.paired_stats.cluster_bootstrap_interval computes for one study, for
    many at once: a resample's sum is its clusters' draw counts times their totals, so all studies
    share one matrix product."""
    resampled = (second - first) @ _resample_counts(first.shape[1])  # draws x resamples, in counts
    return _quantile_above_zero(resampled, alpha / 2) | _quantile_above_zero(-resampled, alpha / 2)


def percentile_interval(counts: np.ndarray, m: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per simulated study: the percentile bootstrap interval of the rate over its clusters."""
    k = counts.shape[1]
    low, high = np.quantile(counts @ _resample_counts(k) / (k * m), [alpha / 2, 1 - alpha / 2], axis=1)
    return low, high


def _quantile_above_zero(values: np.ndarray, q: float) -> np.ndarray:
    """Per row, whether np.quantile(row, q) (linear interpolation) is above 0, from counts: the
    order statistics j and j + 1 around position q (B - 1) are found only where they straddle 0."""
    b = values.shape[1]
    j = int(math.floor(q * (b - 1)))
    g = q * (b - 1) - j
    at_most_zero = (values <= 0).sum(axis=1)
    above = at_most_zero <= j  # the j-th and (j+1)-th smallest are both above 0
    straddle = np.flatnonzero(at_most_zero == j + 1)
    if len(straddle):
        rows = values[straddle]
        below = np.where(rows <= 0, rows, -np.inf).max(axis=1)  # the j-th smallest
        next_up = np.where(rows > 0, rows, np.inf).min(axis=1)  # the (j+1)-th
        above[straddle] = (1 - g) * below + g * next_up > 0
    return above


StudyDifference = Callable[[np.ndarray, np.ndarray, int, float], tuple[float, float]]
StudyInterval = Callable[[np.ndarray, int, float], tuple[float, float]]


def per_study_decide(difference: StudyDifference) -> Callable[[np.ndarray, np.ndarray, int, float], np.ndarray]:
    """`decide` from an interval computed one study at a time, difference(first counts, second counts,
    m, alpha) -> (low, high) of second - first (e.g. one the report computes on cluster totals)."""
    def decide(first: np.ndarray, second: np.ndarray, m: int, alpha: float) -> np.ndarray:
        ends = [difference(a, b, m, alpha) for a, b in zip(first, second)]
        return np.array([low > 0 or high < 0 for low, high in ends], dtype=bool)

    return decide


def per_study_interval(interval: StudyInterval) -> Callable[[np.ndarray, int, float], tuple[np.ndarray, np.ndarray]]:
    """`interval` from a rate interval computed one study at a time: interval(counts, m, alpha)."""
    def intervals(counts: np.ndarray, m: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        ends = np.array([interval(row, m, alpha) for row in counts], dtype=float)
        return ends[:, 0], ends[:, 1]

    return intervals


# Simulated studies behind a plan-time power of 0/1 outcomes in clusters (MC SE 0.009 at 80%), and
# behind one whose interval is computed a study at a time (`per_study_decide`; MC SE 0.02).
PLAN_DRAWS = 2000
PER_STUDY_DRAWS = 400


@dataclass(frozen=True)
class ClusterRule:
    """An interval over k clusters as power needs it: given from `min_clusters` clusters on; for a mean
    (analytically), it excludes 0 when |mean| > critical(k, alpha) s / sqrt(k), s the SD of the cluster
    means (ddof 1); for 0/1 outcomes, whose cluster means are far from normal, `decide` and `interval`
    are its answers on simulated studies (`draws` of them)."""

    name: str
    critical: Callable[[int, float], float]
    min_clusters: int
    decide: Callable[[np.ndarray, np.ndarray, int, float], np.ndarray] | None = None
    interval: Callable[[np.ndarray, int, float], tuple[np.ndarray, np.ndarray]] | None = None
    draws: int = PLAN_DRAWS
    # Its expected half-width is critical(k) c4(k) SD / sqrt(k) (checked by simulation for the
    # percentile bootstrap and the t interval); else it is simulated too.
    normal_theory: bool = True

    def gives_interval(self, k: int) -> bool:
        return k >= max(self.min_clusters, 2)


def c4(k: int) -> float:
    """E[s] / sigma for the SD s of k normal values."""
    if k < 2:
        return math.nan
    return float(math.sqrt(2 / (k - 1)) * math.exp(special.gammaln(k / 2) - special.gammaln((k - 1) / 2)))


def cluster_power(delta: float, se: float, k: int, rule: ClusterRule, alpha: float = ALPHA,
                  df: int | None = None) -> float:
    """Power of `rule` to exclude 0 from a mean whose true value is delta and standard error se, over
    k clusters (df: k - 1 unless given): P(|T| > c) with T noncentral t, noncentrality delta / se.
    0 when the rule gives no interval over k clusters."""
    if not rule.gives_interval(k):
        return 0.0
    if se == 0:
        return 1.0 if delta != 0 else 0.0
    c, dof = rule.critical(k, alpha), k - 1 if df is None else df
    nc = delta / se
    power = float(stats.nct.sf(c, dof, nc) + stats.nct.cdf(-c, dof, nc))
    if not math.isfinite(power):  # scipy's noncentral t fails far in its tail
        power = float(stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc))
    return min(max(power, 0.0), 1.0)


@dataclass(frozen=True)
class ClusteredRates:
    """Simulated studies of paired 0/1 outcomes in k clusters of m pairs, the arms independent, each
    cluster's rate drawn from a Beta with the arm's mean and intra-cluster correlation icc: a cluster's
    count of events is beta-binomial. One uniform per cluster and arm, drawn once and turned into a
    count by the count's inverse distribution function (common random numbers): power is smooth and
    monotone in the rates, and cheap to evaluate again."""

    k: int
    m: int
    icc: float
    draws: int = PLAN_DRAWS
    seed: int = 0

    def counts_cdf(self, rate: float) -> np.ndarray:
        x = np.arange(self.m + 1)
        if self.icc <= 0 or rate <= 0 or rate >= 1:
            pmf = stats.binom.pmf(x, self.m, rate)
        elif self.icc >= 1:
            pmf = np.where(x == self.m, rate, np.where(x == 0, 1 - rate, 0.0))
        else:
            scale = 1 / self.icc - 1
            pmf = stats.betabinom.pmf(x, self.m, rate * scale, (1 - rate) * scale)
        return np.cumsum(pmf)

    def cluster_counts(self, rate: float, uniforms: np.ndarray) -> np.ndarray:
        """Events per cluster, as floats holding whole numbers."""
        cdf = self.counts_cdf(rate)
        return np.minimum(np.searchsorted(cdf, uniforms * cdf[-1], side="right"), self.m).astype(float)

    def halfwidths(self, rate: float, rule: ClusterRule, alpha: float = ALPHA) -> np.ndarray:
        """One arm's interval half-width (`rule.interval`) in each simulated study."""
        low, high = rule.interval(self.cluster_counts(rate, _uniforms(self.seed, self.draws, self.k)[0]), self.m, alpha)
        return (high - low) / 2

    def power(self, p1: float, p2: float, rule: ClusterRule, alpha: float = ALPHA) -> float:
        """Share of the simulated studies whose interval of p2 - p1 (by `rule.decide`) excludes 0."""
        if not rule.gives_interval(self.k):
            return 0.0
        first, second = _uniforms(self.seed, self.draws, self.k)
        return float(rule.decide(self.cluster_counts(p1, first), self.cluster_counts(p2, second), self.m,
                                 alpha).mean())


@lru_cache(maxsize=16)
def _uniforms(seed: int, draws: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, draws, k])
    return rng.random((draws, k)), rng.random((draws, k))


def cluster_halfwidth(sd: float, k: int, rule: ClusterRule, alpha: float = ALPHA,
                      quantile: float | None = None) -> float:
    """The half-width of `rule`'s interval over k clusters whose means have SD sd: its expectation, or
    its `quantile` (s^2 ~ sd^2 chi2(k - 1) / (k - 1)); NaN when it gives none."""
    if not rule.gives_interval(k):
        return math.nan
    spread = c4(k) if quantile is None else math.sqrt(stats.chi2.ppf(quantile, k - 1) / (k - 1))
    return rule.critical(k, alpha) * spread * sd / math.sqrt(k)


def cluster_mean_sd(p: float, m: float, icc: float) -> float:
    """SD of the mean of m 0/1 outcomes of rate p sharing a cluster with intra-cluster correlation icc."""
    return math.sqrt(p * (1 - p) * design_effect(m, icc) / m)


# ---------------------------------------------------------------- intervals on counts, exactly

# Counts less likely than this are left out of an exact power or half-width (their total is at most
# this times the number of outcomes).
NEGLIGIBLE = 1e-10


def counts_halfwidths(p: float, n: int, interval: Callable[[int, int, float], tuple[float, float]],
                      alpha: float = ALPHA, quantile: float | None = None) -> float:
    """The half-width of a rate's interval on counts, `interval(x, n, alpha)`, over the binomial(n, p)
    outcomes x (those likelier than NEGLIGIBLE): its expectation, or its `quantile`."""
    if n <= 0:
        return math.nan
    x = np.arange(n + 1)
    weights = stats.binom.pmf(x, n, p)
    likely = weights > NEGLIGIBLE
    x, weights = x[likely], weights[likely] / weights[likely].sum()
    widths = np.array([_halfwidth(interval, int(v), n, alpha) for v in x])
    if quantile is None:
        return float(weights @ widths)
    order = np.argsort(widths)
    return float(widths[order][min(np.searchsorted(np.cumsum(weights[order]), quantile), len(x) - 1)])


@lru_cache(maxsize=65536)
def _halfwidth(interval: Callable[[int, int, float], tuple[float, float]], x: int, n: int, alpha: float) -> float:
    low, high = interval(x, n, alpha)
    return (high - low) / 2


def wilson_interval(x: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson's score interval of x events in n."""
    z = stats.norm.ppf(1 - alpha / 2)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def wilson_halfwidths(p: float, n: int, alpha: float = ALPHA, quantile: float | None = None) -> float:
    """The Wilson interval's half-width over the binomial(n, p) outcomes: its expectation, or its
    `quantile`."""
    return counts_halfwidths(p, n, wilson_interval, alpha, quantile)


def paired_cells(p1: float, p2: float, rho: float) -> tuple[float, float, float, float]:
    """(p11, p10, p01, p00): two 0/1 outcomes with marginals p1, p2 and correlation rho, the joint
    probability held within its Fréchet bounds."""
    p11 = p1 * p2 + rho * math.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    p11 = min(max(p11, max(0.0, p1 + p2 - 1)), min(p1, p2))
    return p11, max(p1 - p11, 0.0), max(p2 - p11, 0.0), max(1 - p1 - p2 + p11, 0.0)


@lru_cache(maxsize=64)
def paired_tables(n: int) -> np.ndarray:
    """Every (n11, n10, n01, n00) of n pairs, one row each."""
    rows = [(a, b, c, n - a - b - c) for a, b in itertools.product(range(n + 1), repeat=2) if a + b <= n
            for c in range(n - a - b + 1)]
    return np.array(rows, dtype=int)


def exact_paired_power(cells: tuple[float, float, float, float], n: int,
                       excludes_zero: Callable[[tuple[int, int, int, int]], bool]) -> float:
    """The probability that n pairs drawn with joint probabilities `cells` give counts for which the
    interval excludes 0 (`excludes_zero(n11, n10, n01, n00)`, memoised by the caller)."""
    tables = paired_tables(n)
    probs = np.asarray(cells, float)
    logp = (special.gammaln(n + 1) - special.gammaln(tables + 1).sum(axis=1)
            + tables @ np.log(np.where(probs > 0, probs, 1.0)))
    pmf = np.where((tables[:, probs == 0] > 0).any(axis=1), 0.0, np.exp(logp))
    likely = np.flatnonzero(pmf > NEGLIGIBLE)
    return float(sum(pmf[i] for i in likely if excludes_zero(tuple(int(v) for v in tables[i]))))


def exact_independent_power(p1: float, n1: int, p2: float, n2: int, excludes: np.ndarray) -> float:
    """Probability that two independent binomial arms give counts (x1, x2) for which the interval
    excludes 0; `excludes[x1, x2]` holds the interval's answer for every pair of counts."""
    return float(stats.binom.pmf(np.arange(n1 + 1), n1, p1) @ excludes @ stats.binom.pmf(np.arange(n2 + 1), n2, p2))


@dataclass(frozen=True)
class Dependence:
    """What the precision of an arm depends on beyond its N: its clusters and their correlation,
    and (for a comparison) the correlation of paired outcomes. `source` says whether the figures
    were measured on a database or assumed."""

    cluster_size: float = 1.0
    icc: float = 0.0
    rho: float = 0.0
    source: str = "assumed"

    @property
    def deff(self) -> float:
        return design_effect(self.cluster_size, self.icc)
