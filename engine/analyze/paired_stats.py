"""Differences between two models measured on the same units (paired) or on different ones
(unpaired), with 95% intervals and p-values.

What the report prints (`rate_difference`, `mean_difference`): for proportions, the MOVER
difference (Newcombe's hybrid, 1998, method 10; Zou & Donner 2008) of the two arms' own rate
intervals (engine/analyze/stats.py: Clopper-Pearson over independent units, Korn-Graubard over
clusters), combined with the correlation of the two rates (Newcombe's phi for one pair per cluster,
the cluster-level correlation of the arms' totals otherwise, 0 unpaired); for means, the studentized
bootstrap over clusters of the paired differences, or of the two arms' clusters resampled apart.
Each carries its family (`Difference.interval_at`) and its p is that family's inversion
(`inverted_p`), so a row's p and interval never disagree. In simulation over 4-30 clusters the
percentile bootstrap used before covered 64-93%; these cover at least 93% (bench/interval_coverage.py; tests/analyze/test_coverage.py).

The earlier methods stay available under their names (no printed interval uses them now). Paired,
one pair per cluster: Newcombe's interval for a difference of paired proportions (1998,
method 10) and the exact McNemar test. Paired, clusters holding several pairs (a prompt seen under
several attacks, a seed whose random numbers every condition shares): a seeded percentile bootstrap
over clusters and a sign-flip permutation test over clusters, which is the exact McNemar test again
when each cluster holds one pair of 0/1 outcomes. Means use the bootstrap and the sign-flip test in
both cases (a cluster of one pair is a pair). Unpaired: Newcombe's interval for independent
proportions and Fisher's exact test, or a two-sample cluster bootstrap and a permutation test that
moves whole clusters between the arms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from engine.analyze.inference import holm_steps
from engine.analyze.stats import (MIN_CLUSTERS, IntervalAt,
                                  cluster_totals, inverted_p, mean_interval_of_totals, rate_interval_of_totals,
                                  ratio_variance, studentized_draws, studentized_interval)

BOOTSTRAP_RESAMPLES = 2000
# Sign-flip and permutation tests are exact (every arrangement) up to this many arrangements.
PERMUTATION_RESAMPLES = 9999


@dataclass(frozen=True)
class Difference:
    """A difference A - B with its 95% interval (NaN, and `note` saying why, when none can be
    given), a two-sided p-value, and the names of the interval's method and of the test.
    `interval_at(alpha)` is the interval family at any level (None with no interval); `low`/`high`
    are its 95% ends and `p` its inversion against 0 (`difference_of`)."""

    value: float
    low: float
    high: float
    p: float
    interval: str
    test: str
    note: str = ""
    interval_at: IntervalAt | None = field(default=None, compare=False, repr=False)


INVERTED = "inverting the interval"



def methods_prose() -> str:
    """How every difference's interval and p-value are computed, for a report's prose."""
    return ("Proportions: the MOVER interval (Newcombe's hybrid, method 10) built from each side's own exact "
            "interval (Clopper-Pearson, or Korn-Graubard over clusters when a cluster holds several pairs) and the "
            "correlation of the two rates (Newcombe's phi, the correlation of the clusters' totals, or 0 unpaired). "
            "Means: a seeded studentized bootstrap over whole clusters of the paired differences (or of each "
            "side's clusters, unpaired), each end at least as far out as Student's t over the clusters (Welch's "
            f"degrees of freedom, unpaired) puts it; none over fewer than {MIN_CLUSTERS} clusters, and the table says so where "
            "it applies. Each p-value inverts its row's own interval (the level at which the interval's end reaches "
            "0), so p < 0.05 exactly when the 95% interval excludes 0.")


def difference_of(value: float, interval_at: IntervalAt | None, interval: str, note: str = "") -> Difference:
    """A difference from its interval family: 95% ends, and the p of inverting the family at 0. With no
    interval, p is 1 where the difference is exactly 0 (no test of it could reject: e.g. every pair
    agrees), else none."""
    if interval_at is None:
        return Difference(value, math.nan, math.nan, 1.0 if value == 0 else math.nan, interval, INVERTED, note)
    low, high = interval_at(0.05)
    return Difference(value, float(low), float(high), inverted_p(interval_at), interval, INVERTED, note,
                      interval_at)


def mover(p1: float, family1: IntervalAt, p2: float, family2: IntervalAt, correlation: float) -> IntervalAt:
    """MOVER (method of variance estimates recovery; Newcombe 1998 method 10, Zou & Donner 2008): the
    interval of p1 - p2 from each rate's own interval and the correlation of the two estimates."""

    def at(alpha: float) -> tuple[float, float]:
        (l1, u1), (l2, u2) = family1(alpha), family2(alpha)
        down = (p1 - l1) ** 2 - 2 * correlation * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
        up = (u1 - p1) ** 2 - 2 * correlation * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
        return max(-1.0, p1 - p2 - math.sqrt(max(down, 0.0))), min(1.0, p1 - p2 + math.sqrt(max(up, 0.0)))

    return at


def newcombe_phi(n11: int, n10: int, n01: int, n00: int) -> float:
    """Newcombe's (1998) continuity-corrected correlation of paired 0/1 outcomes' margins."""
    n = n11 + n10 + n01 + n00
    x1, x2 = n11 + n10, n11 + n01
    margins = x1 * (n - x1) * x2 * (n - x2)
    excess = n11 * n00 - n10 * n01
    if margins == 0:
        return 0.0
    return (excess - n / 2 if excess > n / 2 else 0.0 if excess >= 0 else excess) / math.sqrt(margins)


def rate_difference(a: np.ndarray, b: np.ndarray, clusters_a: np.ndarray, clusters_b: np.ndarray | None = None,
                    paired: bool = True) -> tuple[IntervalAt | None, str, str]:
    """The interval family of rate(a) - rate(b) of 0/1 outcomes (paired: a[i] and b[i] are a pair in
    cluster clusters_a[i]; unpaired: each arm in its own clusters), its method's name, and why there is
    none when there is none."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    clusters_b = clusters_a if clusters_b is None else clusters_b
    sa, na = cluster_totals(a, clusters_a)
    sb, nb = cluster_totals(b, clusters_b)
    phi = None
    if paired and na.max() == 1:
        n11, n00 = int(((a == 1) & (b == 1)).sum()), int(((a == 0) & (b == 0)).sum())
        phi = newcombe_phi(n11, int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()), n00)
    return rate_difference_of_totals(sa, na, sb, nb, paired, phi)


def rate_difference_of_totals(sa: np.ndarray, na: np.ndarray, sb: np.ndarray, nb: np.ndarray, paired: bool,
                              phi: float | None = None) -> tuple[IntervalAt | None, str, str]:
    """`rate_difference` from per-cluster events and units of each arm (paired: the same clusters in the
    same order, na == nb). The correlation of the two rates: `phi` when given (one pair per cluster),
    else, paired, the correlation of the clusters' totals, else 0."""
    sa, na, sb, nb = (np.asarray(x, float) for x in (sa, na, sb, nb))
    family_a, method_a, note_a = rate_interval_of_totals(sa, na)
    family_b, method_b, note_b = rate_interval_of_totals(sb, nb)
    if family_a is None or family_b is None:
        return None, f"MOVER of {method_a or method_b} limits", note_a or note_b
    p1, p2 = float(sa.sum() / na.sum()), float(sb.sum() / nb.sum())
    correlation = 0.0 if phi is None else phi
    if paired and phi is None:
        va, vb = ratio_variance(sa, na), ratio_variance(sb, na)
        if va > 0 and vb > 0:
            k, total = len(sa), na.sum()
            covariance = k / (k - 1) * np.sum((sa - p1 * na) * (sb - p2 * na)) / total ** 2
            correlation = float(np.clip(covariance / math.sqrt(va * vb), -1.0, 1.0))
    name = (f"{'paired' if paired else 'independent'} MOVER of "
            f"{method_a if method_a == method_b else method_a + ' / ' + method_b} limits")
    return mover(p1, family_a, p2, family_b, correlation), name, ""


def mover_paired_counts(n11: int, n10: int, n01: int, n00: int, alpha: float = 0.05) -> tuple[float, float]:
    """The report's interval of p1 - p2 from the counts of n independent pairs (one pair per cluster):
    what `rate_difference` gives those pairs (MOVER of Clopper-Pearson limits, Newcombe's phi)."""
    a = np.repeat([1.0, 1.0, 0.0, 0.0], [n11, n10, n01, n00])
    b = np.repeat([1.0, 0.0, 1.0, 0.0], [n11, n10, n01, n00])
    family, _, _ = rate_difference_of_totals(a, np.ones(len(a)), b, np.ones(len(b)), paired=True,
                                             phi=newcombe_phi(n11, n10, n01, n00))
    return family(alpha) if family is not None else (math.nan, math.nan)


def mover_independent_counts(x1: int, n1: int, x2: int, n2: int, alpha: float = 0.05) -> tuple[float, float]:
    """The report's interval of p1 - p2 of two independent arms of units: MOVER of their Clopper-Pearson
    limits, correlation 0."""
    a, b = np.repeat([1.0, 0.0], [x1, n1 - x1]), np.repeat([1.0, 0.0], [x2, n2 - x2])
    family, _, _ = rate_difference_of_totals(a, np.ones(n1), b, np.ones(n2), paired=False, phi=0.0)
    return family(alpha) if family is not None else (math.nan, math.nan)


def mean_difference(a: np.ndarray, b: np.ndarray, clusters_a: np.ndarray, clusters_b: np.ndarray | None = None,
                    paired: bool = True, seed: int = 0, n_resamples: int = BOOTSTRAP_RESAMPLES,
                    min_clusters: int = MIN_CLUSTERS) -> tuple[IntervalAt | None, str, str]:
    """The interval family of mean(a) - mean(b): paired, the studentized cluster bootstrap of the
    differences a[i] - b[i]; unpaired, the two-sample studentized bootstrap resampling each arm's
    clusters apart (the pivot is the difference over the root of the two cluster-robust variances)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        sums, counts = cluster_totals(a - b, clusters_a)
        family, _, note = mean_interval_of_totals(sums, counts, seed, n_resamples, min_clusters)
        return family, "studentized cluster bootstrap of the paired differences", note
    name = "two-sample studentized cluster bootstrap"
    sa, na = cluster_totals(a, clusters_a)
    sb, nb = cluster_totals(b, clusters_b)
    if min(len(sa), len(sb)) < min_clusters:
        return None, name, f"{min(len(sa), len(sb))} clusters in one arm, fewer than {min_clusters} for an interval"
    estimate = float(sa.sum() / na.sum() - sb.sum() / nb.sum())
    var_a, var_b = ratio_variance(sa, na), ratio_variance(sb, nb)
    se = math.sqrt(var_a + var_b)
    if se == 0:
        return None, name, "no variation between clusters in either arm"
    rng = np.random.default_rng(seed)
    _, _, ra, va = studentized_draws(sa, na, rng, n_resamples)
    _, _, rb, vb = studentized_draws(sb, nb, rng, n_resamples)
    # Welch-Satterthwaite degrees of freedom over the arms' clusters: the floor under each end, as for
    # one mean (studentized_interval): the bare two-sample bootstrap-t covered 91-93% at 10-16 clusters
    # an arm of a skewed metric (tests/analyze/test_coverage.py).
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(sa) - 1) + var_b ** 2 / (len(sb) - 1))
    return studentized_interval(estimate, se, (ra - rb - estimate) / np.sqrt(va + vb), df), name, ""


def newcombe_paired_interval(n11: int, n10: int, n01: int, n00: int, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe (1998, Stat Med 17:2635, method 10) for p1 - p2 of paired 0/1 outcomes, p1 = (n11 +
    n10) / n, p2 = (n11 + n01) / n: Wilson limits of each margin combined with their estimated
    correlation phi (continuity-corrected as in the paper: 0 while n11 n00 - n10 n01 lies in
    [0, n/2], reduced by n/2 above it)."""
    n = n11 + n10 + n01 + n00
    if n <= 0:
        raise ValueError("no pairs")
    x1, x2 = n11 + n10, n11 + n01
    p1, p2 = x1 / n, x2 / n
    l1, u1 = proportion_confint(x1, n, alpha=alpha, method="wilson")
    l2, u2 = proportion_confint(x2, n, alpha=alpha, method="wilson")
    margins = x1 * (n - x1) * x2 * (n - x2)
    excess = n11 * n00 - n10 * n01
    if margins == 0:
        phi = 0.0
    else:
        phi = (excess - n / 2 if excess > n / 2 else 0.0 if excess >= 0 else excess) / math.sqrt(margins)
    lower = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    upper = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return max(-1.0, p1 - p2 - lower), min(1.0, p1 - p2 + upper)


def mcnemar_exact_p(n10: int, n01: int) -> float:
    """Exact (conditional, binomial) McNemar p-value from the discordant pairs; 1 when there are none."""
    if n10 + n01 == 0:
        return 1.0
    return float(mcnemar([[0, n10], [n01, 0]], exact=True).pvalue)


def _ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def cluster_bootstrap_interval(values: np.ndarray, clusters: np.ndarray, seed: int, alpha: float = 0.05,
                               n_resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (e.g. paired differences) resampling
    whole clusters: the estimate is a ratio of the resampled clusters' sums to their sizes."""
    sums, counts = cluster_totals(values, clusters)
    means = sums / counts
    if np.all(means == means[0]):
        mean = float(means[0])
        return mean, mean  # every resample gives the same mean
    result = stats.bootstrap((sums, counts), _ratio, paired=True, vectorized=True, n_resamples=n_resamples,
                             confidence_level=1 - alpha, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def sign_flip_p(values: np.ndarray, clusters: np.ndarray, seed: int,
                n_resamples: int = PERMUTATION_RESAMPLES) -> float:
    """Two-sided p-value of the sign-flip test of a zero mean difference: under the null each
    cluster's pairs could have had the two models' labels swapped, which flips the sign of the
    cluster's total. Exact when 2^clusters <= n_resamples, else Monte Carlo with a seeded stream."""
    sums, _ = cluster_totals(values, clusters)
    if np.all(sums == 0):
        return 1.0
    result = stats.permutation_test((sums,), lambda x, axis=-1: x.sum(axis=axis), permutation_type="samples",
                                    vectorized=True, n_resamples=n_resamples, alternative="two-sided",
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)


def two_sample_cluster_interval(values_a: np.ndarray, clusters_a: np.ndarray, values_b: np.ndarray,
                                clusters_b: np.ndarray, seed: int, alpha: float = 0.05,
                                n_resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(A) - mean(B) for two independent samples, resampling
    each arm's clusters on its own."""
    sa, na = cluster_totals(values_a, clusters_a)
    sb, nb = cluster_totals(values_b, clusters_b)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(sa), size=(n_resamples, len(sa)))
    ib = rng.integers(0, len(sb), size=(n_resamples, len(sb)))
    resampled = _ratio(sa[ia], na[ia]) - _ratio(sb[ib], nb[ib])
    low, high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def cluster_permutation_p(values_a: np.ndarray, clusters_a: np.ndarray, values_b: np.ndarray,
                          clusters_b: np.ndarray, seed: int, n_resamples: int = PERMUTATION_RESAMPLES) -> float:
    """Two-sided p-value of mean(A) = mean(B) by permuting whole clusters between the two arms."""
    sa, na = cluster_totals(values_a, clusters_a)
    sb, nb = cluster_totals(values_b, clusters_b)
    sums, counts = np.concatenate([sa, sb]), np.concatenate([na, nb])

    def statistic(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
        ia, ib = ia.astype(int), ib.astype(int)
        return _ratio(sums[ia], counts[ia], axis) - _ratio(sums[ib], counts[ib], axis)

    if np.all(sums / counts == sums[0] / counts[0]):
        return 1.0
    result = stats.permutation_test((np.arange(len(sa)), np.arange(len(sa), len(sums))), statistic,
                                    permutation_type="independent", vectorized=True, n_resamples=n_resamples,
                                    alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


def newcombe_independent_interval(x1: int, n1: int, x2: int, n2: int, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, Stat Med 17:873, method 10) for p1 - p2 of two
    independent binomial samples."""
    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff", alpha=alpha)
    return float(low), float(high)


def fisher_p(x1: int, n1: int, x2: int, n2: int) -> float:
    return float(stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values across the family given; a NaN (no test) stays NaN and is not counted.
    The claims' own step-down procedure (inference.holm_steps), not statsmodels' `multipletests`: its Holm
    branch runs a full `gc.collect()` on every call, which was 3/4 of the main job's calibration."""
    return [math.nan if step is None else step.adjusted for step in holm_steps(pvalues)]
