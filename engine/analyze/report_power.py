"""The power and precision of the intervals the report computes, before any data.

A `Procedure` says which interval the report gives in each layout of a comparison or a cell, in the
form power needs (engine/plan/power.py): counts-based intervals (one pair or one unit per cluster)
are evaluated exactly through the report's own interval functions; intervals over clusters through
their `ClusterRule` (the interval's critical value over k clusters and the fewest clusters it is given
for). `REPORT` is the procedure engine/analyze/paired.py and metrics.py run today; `difference` and
`cell_interval` are that code itself, which engine/analyze/power_sim.py runs on simulated designs to
check every statement made here. A difference is "detected" when its 95% interval excludes 0 (the
report's verdicts rest on the interval; no interval, no detection)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from engine.analyze.paired import compare
from engine.analyze.paired_stats import (MIN_CLUSTERS, Difference, mover_independent_counts, mover_paired_counts,
                                         newcombe_independent_interval, newcombe_paired_interval,
                                         rate_difference_of_totals)
from engine.analyze.stats import clopper_pearson, rate_interval_of_totals, wilson
from engine.kernel.contracts import Metric
from engine.plan.power import (ALPHA, PER_STUDY_DRAWS, POWER, ClusteredRates, ClusterRule, centred_arms,
                               cluster_halfwidth, cluster_mean_sd, cluster_power, design_effect, exact_independent_power,
                               exact_paired_power, paired_cells, per_study_decide, per_study_interval,
                               percentile_critical, percentile_decide, percentile_interval, power_two_rates,
                               smallest_detectable, t_critical, t_decide, t_interval, counts_halfwidths)

# Counts-based intervals are evaluated exactly up to this many pairs (units per arm); beyond it the
# normal approximation they approach is used.
EXACT_MAX_PAIRS = 30
EXACT_MAX_UNITS = 40


@dataclass(frozen=True)
class Layout:
    """How a comparison's units lie: n pairs (paired) or n units per arm, in k clusters."""

    n: int
    clusters: int
    paired: bool

    @property
    def per_cluster(self) -> float:
        return self.n / self.clusters

    @property
    def clustered(self) -> bool:
        return self.clusters < self.n


def _report_difference(a: pd.DataFrame, b: pd.DataFrame, metric: Metric, seed: int) -> Difference:
    return compare(a, b, metric, seed)[0]


def _report_wilson(x: int, n: int, alpha: float) -> tuple[float, float]:
    est = wilson(x, n, alpha)
    return est.low, est.high


@dataclass(frozen=True)
class Procedure:
    """The report's intervals, by layout."""

    name: str
    # 0/1 outcomes, one pair per cluster: (n11, n10, n01, n00, alpha) -> interval of p1 - p2.
    paired_counts: Callable[[int, int, int, int, float], tuple[float, float]]
    # 0/1 outcomes, independent arms: (x1, n1, x2, n2, alpha) -> interval of p1 - p2.
    independent_counts: Callable[[int, int, int, int, float], tuple[float, float]]
    differences: ClusterRule  # paired differences over clusters; every paired mean
    unpaired_clusters: ClusterRule  # two arms of clusters; every unpaired mean
    cell: ClusterRule  # a cell's rate where its units share clusters; a cell's mean (units or clusters)
    # A cell's rate over independent units: (x, n, alpha) -> interval.
    cell_counts: Callable[[int, int, float], tuple[float, float]]
    # The report's code on unit frames (key, value, cluster), for simulations of a design.
    difference: Callable[[pd.DataFrame, pd.DataFrame, Metric, int], Difference] = _report_difference
    # Where rates over clusters get another interval than means (None: the same rule as means).
    rate_differences: ClusterRule | None = None  # paired rates in clusters
    rate_unpaired: ClusterRule | None = None  # two arms of rates in clusters
    rate_cell: ClusterRule | None = None  # a cell's rate where its units share clusters
    counts_names: tuple[str, str] = ("Newcombe paired", "Newcombe independent")  # paired_counts, independent_counts
    _decided: dict = field(default_factory=dict, compare=False, repr=False)

    def difference_rule(self, kind: str, paired: bool) -> ClusterRule:
        """The rule of a difference over clusters of a metric of `kind`."""
        rate = self.rate_differences if paired else self.rate_unpaired
        if kind == "proportion" and rate is not None:
            return rate
        return self.differences if paired else self.unpaired_clusters

    def cell_rule(self, kind: str) -> ClusterRule:
        """The rule of a cell's interval over clusters of a metric of `kind`."""
        return self.rate_cell if kind == "proportion" and self.rate_cell is not None else self.cell

    def paired_decider(self, alpha: float) -> Callable[[tuple[int, int, int, int]], bool]:
        """Memoised: does the counts interval of these paired counts exclude 0?"""
        memo = self._decided.setdefault(("paired", alpha), {})

        def excludes_zero(counts: tuple[int, int, int, int]) -> bool:
            if counts not in memo:
                low, high = self.paired_counts(*counts, alpha)
                memo[counts] = bool(low > 0 or high < 0)
            return memo[counts]

        return excludes_zero

    def independent_table(self, n1: int, n2: int, alpha: float) -> np.ndarray:
        """excludes[x1, x2]: whether the independent counts interval excludes 0."""
        key = ("independent", n1, n2, alpha)
        if key not in self._decided:
            table = np.zeros((n1 + 1, n2 + 1))
            for x1 in range(n1 + 1):
                for x2 in range(n2 + 1):
                    low, high = self.independent_counts(x1, n1, x2, n2, alpha)
                    table[x1, x2] = low > 0 or high < 0
            self._decided[key] = table
        return self._decided[key]


def _kg_interval(counts: np.ndarray, m: int, alpha: float) -> tuple[float, float]:
    """One simulated study's cell rate over k clusters of m units: the report's Korn-Graubard interval."""
    family, _, _ = rate_interval_of_totals(counts, np.full(len(counts), float(m)))
    return family(alpha) if family is not None else (math.nan, math.nan)


def _kg_mover(first: np.ndarray, second: np.ndarray, m: int, alpha: float) -> tuple[float, float]:
    """One simulated study's paired rate difference second - first over k clusters of m pairs: the
    report's MOVER of Korn-Graubard limits with the clusters' correlation (`rate_difference`)."""
    units = np.full(len(first), float(m))
    family, _, _ = rate_difference_of_totals(second, units, first, units, paired=True)
    return family(alpha) if family is not None else (math.nan, math.nan)


# The report's intervals (engine/analyze/paired_stats.py, stats.py): rates by MOVER of exact limits
# (Clopper-Pearson over units, Korn-Graubard over clusters, from 2 clusters on), simulated study by
# study; means by the studentized cluster bootstrap, whose critical value is about Student's with
# k - 1 df, from MIN_CLUSTERS clusters on.
REPORT = Procedure(
    "the report's intervals",
    mover_paired_counts, mover_independent_counts,
    differences=ClusterRule("studentized cluster bootstrap", t_critical, MIN_CLUSTERS),
    unpaired_clusters=ClusterRule("two-sample studentized cluster bootstrap", t_critical, MIN_CLUSTERS),
    cell=ClusterRule("studentized (cluster) bootstrap", t_critical, MIN_CLUSTERS),
    cell_counts=clopper_pearson,
    rate_differences=ClusterRule("paired MOVER of Korn-Graubard limits", t_critical, 2, per_study_decide(_kg_mover),
                                 draws=PER_STUDY_DRAWS),
    rate_unpaired=ClusterRule("independent MOVER of Korn-Graubard limits", t_critical, 2),
    rate_cell=ClusterRule("Korn-Graubard", t_critical, 2, interval=per_study_interval(_kg_interval),
                          draws=PER_STUDY_DRAWS, normal_theory=False),
    counts_names=("paired MOVER of Clopper-Pearson limits", "independent MOVER of Clopper-Pearson limits"))

# The intervals the report printed before issue 21 (Wilson, Newcombe, percentile cluster bootstraps),
# kept so power can be stated for them (tests compare).
PERCENTILE = Procedure(
    "percentile bootstraps (before issue 21)",
    newcombe_paired_interval, newcombe_independent_interval,
    differences=ClusterRule("percentile cluster bootstrap", percentile_critical, MIN_CLUSTERS, percentile_decide),
    unpaired_clusters=ClusterRule("two-sample percentile cluster bootstrap", percentile_critical, MIN_CLUSTERS),
    cell=ClusterRule("percentile (cluster) bootstrap", percentile_critical, 2, interval=percentile_interval),
    cell_counts=_report_wilson)

# Intervals built for few clusters (issue 21's suggestion): a t interval on cluster means with
# k - 1 degrees of freedom. Power statements follow it when passed as `procedure`
# (tests/plan/test_power_holds.py checks them against such an interval).
CLUSTER_T = Procedure(
    "cluster-level t",
    newcombe_paired_interval, newcombe_independent_interval,
    differences=ClusterRule("cluster-level t", t_critical, MIN_CLUSTERS, t_decide),
    unpaired_clusters=ClusterRule("two-sample cluster-level t", t_critical, MIN_CLUSTERS),
    cell=ClusterRule("cluster-level t", t_critical, 2, interval=t_interval),
    cell_counts=_report_wilson)


def _rate_power(layout: Layout, p1: float, p2: float, icc: float, rho: float, procedure: Procedure,
                alpha: float) -> float:
    n, k, m = layout.n, layout.clusters, layout.per_cluster
    if layout.paired and not layout.clustered:
        if n <= EXACT_MAX_PAIRS:
            return exact_paired_power(paired_cells(p1, p2, rho), n, procedure.paired_decider(alpha))
        return power_two_rates(p1, p2, n, rho=rho, alpha=alpha)
    if not layout.clustered:
        if n <= EXACT_MAX_UNITS:
            return exact_independent_power(p1, n, p2, n, procedure.independent_table(n, n, alpha))
        return power_two_rates(p1, p2, n, alpha=alpha)
    v1, v2 = p1 * (1 - p1), p2 * (1 - p2)
    inflation = design_effect(m, icc) / m / k
    rule = procedure.difference_rule("proportion", layout.paired)
    if simulated(layout, rho, procedure):
        return ClusteredRates(k, int(m), icc, rule.draws).power(p1, p2, rule, alpha)
    if layout.paired:
        pair_var = max(v1 + v2 - 2 * rho * math.sqrt(v1 * v2), 0.0)
        return cluster_power(p2 - p1, math.sqrt(pair_var * inflation), k, rule, alpha)
    return cluster_power(p2 - p1, math.sqrt((v1 + v2) * inflation), k, rule, alpha, df=2 * k - 2)


def rate_difference_power(layout: Layout, p1: float, p2: float, *, icc: float = 0.0, rho: float = 0.0,
                          procedure: Procedure = REPORT, alpha: float = ALPHA) -> float:
    """Probability that the report's interval of p1 - p2 excludes 0 (rates of the two arms; icc within a
    cluster; rho between the two outcomes of a pair)."""
    return _rate_power(layout, p1, p2, icc, rho if layout.paired else 0.0, procedure, alpha)


def rate_mdd(layout: Layout, p: float, *, icc: float = 0.0, rho: float = 0.0, procedure: Procedure = REPORT,
             alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest difference between two arms centred on p (`centred_arms`) from which the report's
    interval excludes 0 with the given power; None when none within [0, 1] does."""
    return smallest_detectable(lambda d: rate_difference_power(layout, *centred_arms(p, d), icc=icc, rho=rho,
                                                               procedure=procedure, alpha=alpha), 1.0, power,
                               monotone=simulated(layout, rho, procedure))


def simulated(layout: Layout, rho: float, procedure: Procedure) -> bool:
    """Whether a rate comparison's power is simulated at plan time (0/1 outcomes in clusters), not
    exact or analytic."""
    m = layout.per_cluster
    return (layout.paired and layout.clustered and not rho
            and procedure.difference_rule("proportion", True).decide is not None
            and m == int(m))


def _mean_se(layout: Layout, sd: float, icc: float, rho: float) -> float:
    inflation = design_effect(layout.per_cluster, icc) / layout.per_cluster / layout.clusters
    return sd * math.sqrt(2 * (1 - (rho if layout.paired else 0.0)) * inflation)


def _mean_rule(layout: Layout, procedure: Procedure) -> tuple[ClusterRule, int | None]:
    if layout.paired:
        return procedure.differences, None
    return procedure.unpaired_clusters, 2 * layout.clusters - 2


def mean_difference_power(layout: Layout, delta: float, sd: float, *, icc: float = 0.0, rho: float = 0.0,
                          procedure: Procedure = REPORT, alpha: float = ALPHA) -> float:
    """Probability that the report's interval of a mean difference delta excludes 0 (a resampling
    interval over clusters; a pair, or a unit, is its own cluster when none holds two)."""
    rule, df = _mean_rule(layout, procedure)
    return cluster_power(delta, _mean_se(layout, sd, icc, rho), layout.clusters, rule, alpha, df=df)


def mean_mdd(layout: Layout, sd: float, *, icc: float = 0.0, rho: float = 0.0, procedure: Procedure = REPORT,
             alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest mean difference detected with the given power (in the units of sd); None when the
    report gives no interval for this layout."""
    rule, _ = _mean_rule(layout, procedure)
    if not rule.gives_interval(layout.clusters):
        return None
    largest = (rule.critical(layout.clusters, alpha) + 8) * 4 * max(_mean_se(layout, sd, icc, rho), 1e-12)
    return smallest_detectable(lambda d: mean_difference_power(layout, d, sd, icc=icc, rho=rho, procedure=procedure,
                                                               alpha=alpha), largest, power, monotone=True)


def rate_cell_halfwidth(n: int, clusters: int, p: float, *, icc: float = 0.0, procedure: Procedure = REPORT,
                        alpha: float = ALPHA, quantile: float | None = None) -> float:
    """The half-width of the report's interval of a cell's rate (n units in `clusters` clusters):
    its expectation over studies, or its `quantile`; NaN when the report gives none."""
    if n <= 0:
        return math.nan
    if clusters >= n:
        return counts_halfwidths(p, n, procedure.cell_counts, alpha, quantile)
    rule, m = procedure.cell_rule("proportion"), n / clusters
    if not rule.gives_interval(clusters):
        return math.nan
    if (quantile is None and rule.normal_theory) or rule.interval is None or m != int(m):
        return cluster_halfwidth(cluster_mean_sd(p, m, icc), clusters, rule, alpha, quantile)
    # Simulated studies of 0/1 outcomes in clusters (the expectation is exact enough in normal theory).
    widths = ClusteredRates(clusters, int(m), icc, rule.draws).halfwidths(p, rule, alpha)
    return float(widths.mean() if quantile is None else np.quantile(widths, quantile))


def mean_cell_halfwidth(n: int, clusters: int, sd: float, *, icc: float = 0.0, procedure: Procedure = REPORT,
                        alpha: float = ALPHA, quantile: float | None = None) -> float:
    """The same for a cell's mean of values with SD sd (a bootstrap over units or clusters)."""
    if n <= 0:
        return math.nan
    m = n / clusters
    return cluster_halfwidth(sd * math.sqrt(design_effect(m, icc) / m), clusters, procedure.cell, alpha, quantile)
