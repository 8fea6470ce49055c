"""Precision and power of a study's design, per headline metric: each design cell's expected 95%
half-width at its planned N, each comparison's minimum detectable difference (80% power, alpha
0.05), and, for a target half-width, the seeds that reach it. Base rates, SDs and correlations
come from the database when it holds finished trials of the plan, otherwise from stated
assumptions (a rate of 50%, the spec's assumed ICC, no pairing gain)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

import duckdb

from engine.analyze.precision import Observed, observe
from engine.kernel.contracts import Metric
from engine.kernel.records import Trial
from engine.plan.compile import Plan
from engine.plan.comparisons import Comparison, Unit, cell_sizes, model_factor, planned_comparisons, randomised_unit
from engine.plan.power import ALPHA, design_effect, mdd_means, mdd_rates, rate_halfwidth

ASSUMED_RATE = 0.5
MAX_SEEDS = 10**6


@dataclass(frozen=True)
class MetricBasis:
    """Where one metric's planning figures come from."""

    metric: Metric
    observed: Observed | None
    assumed_icc: float

    @property
    def icc(self) -> float:
        found = self.observed.icc if self.observed else None
        return self.assumed_icc if found is None else found

    @property
    def rho(self) -> float:
        found = self.observed.rho if self.observed else None
        return 0.0 if found is None else found

    def cell_rate(self, cell_id: str) -> float | None:
        """The rate (proportions) or SD (means) planning uses for a cell."""
        seen = self.observed.cells.get(cell_id) if self.observed else None
        if self.metric.kind == "proportion":
            if seen is not None:
                return seen.mean
            return self.observed.pooled_mean if self.observed else ASSUMED_RATE
        if seen is not None and not math.isnan(seen.sd):
            return seen.sd
        return self.observed.pooled_sd if self.observed and not math.isnan(self.observed.pooled_sd) else None

    def statement(self) -> str:
        m = self.metric
        if self.observed is None:
            base = (f"base rate {ASSUMED_RATE:.0%} assumed (no finished trial yet)" if m.kind == "proportion"
                    else "SD unknown until trials finish")
            return (f"{m.label}: {base}; ICC {self.assumed_icc:g} assumed (design.assumed_icc); "
                    "no pairing gain assumed (rho 0)")
        o = self.observed
        base = (f"base rate per cell from the data (pooled {o.pooled_mean:.0%})" if m.kind == "proportion"
                else f"SD per cell from the data (pooled {o.pooled_sd:.3g})")
        icc = f"ICC {o.icc:.2f} measured" if o.icc is not None else f"ICC {self.assumed_icc:g} assumed"
        rho = (f"paired-outcome correlation {o.rho:.2f} measured" if o.rho is not None
               else "no pairing gain assumed (rho 0)")
        return f"{m.label}: {base} on {o.n} finished {('trial' if o.n == 1 else 'trials')}; {icc}; {rho}"


def halfwidth(basis: MetricBasis, value: float | None, n: int, cluster_size: float) -> float:
    deff = design_effect(cluster_size, basis.icc)
    if value is None:
        return math.nan
    if basis.metric.kind == "proportion":
        return rate_halfwidth(value, n, deff)
    return float(stats.norm.ppf(1 - ALPHA / 2) * value * math.sqrt(deff / n)) if n > 0 else math.nan


def cell_precision(trials: list[Trial], bases: list[MetricBasis], describe, unit: Unit) -> pd.DataFrame:
    """One row per design cell and metric: planned n, the rate or SD assumed, the half-width."""
    rows = []
    for size in cell_sizes(trials, unit):
        for basis in bases:
            value = basis.cell_rate(size.cell_id)
            rows.append({"cell_id": size.cell_id, "cell": describe(size.cell), "metric": basis.metric.name,
                         "label": basis.metric.label, "kind": basis.metric.kind, "n": size.n,
                         "cluster_size": size.cluster_size, "basis": value,
                         "halfwidth": halfwidth(basis, value, size.n, size.cluster_size)})
    return pd.DataFrame(rows)


def _arm_value(basis: MetricBasis, cells: tuple[str, ...]) -> float | None:
    values = [basis.cell_rate(c) for c in cells]
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def comparison_mdd(basis: MetricBasis, comparison: Comparison) -> float | None:
    """The comparison's minimum detectable difference for the metric (None: none reachable or SD
    unknown)."""
    rho = basis.rho if comparison.paired else 0.0
    deff = design_effect(comparison.cluster_size, basis.icc)
    if basis.metric.kind == "proportion":
        first, second = _arm_value(basis, comparison.first_cells), _arm_value(basis, comparison.second_cells)
        return mdd_rates((first + second) / 2, comparison.n, deff=deff, rho=rho)
    sd = _arm_value(basis, comparison.first_cells + comparison.second_cells)
    return None if sd is None else mdd_means(sd, comparison.n, deff=deff, rho=rho)


def comparison_power(comparisons: list[Comparison], bases: list[MetricBasis]) -> pd.DataFrame:
    """One row per comparison family and metric: comparisons, n per arm, paired, cluster size and
    the range of minimum detectable differences."""
    rows = []
    families: dict[str, list[Comparison]] = {}
    for c in comparisons:
        # Model pairs are one family across conditions: they share their n and pairing.
        family = "model pairs within each condition" if c.family.startswith("models within") else c.family
        families.setdefault(family, []).append(c)
    for family, members in families.items():
        for basis in bases:
            mdds = [comparison_mdd(basis, c) for c in members]
            reachable = [d for d in mdds if d is not None]
            rows.append({"family": family, "metric": basis.metric.name, "label": basis.metric.label,
                         "kind": basis.metric.kind, "comparisons": len(members),
                         "n": min(c.n for c in members), "paired": all(c.paired for c in members),
                         "cluster_size": max(c.cluster_size for c in members),
                         "mdd_low": min(reachable) if reachable else math.nan,
                         "mdd_high": max(reachable) if reachable else math.nan,
                         "unreachable": len(mdds) - len(reachable)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class TargetSeeds:
    """Seeds per cell that bring every cell's half-width of every proportion to the target."""

    target: float
    seeds_now: int
    seeds: int | None  # None: more seeds cannot reach it (clustered items: add items)
    worst: str = ""  # the cell and metric that need the most
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeedGrowth:
    """How a cell grows with its seeds: n trials and clusters of m at s seeds. Trials that share an
    item recur under every seed, so more seeds make the item clusters larger, not more numerous:
    with k items the information can never exceed k / ICC independent trials (Kish: n / (1 + (m - 1)
    ICC) with n = k m). Seed clusters and independent trials keep their size as seeds are added."""

    per_seed: float  # trials per seed
    cluster_per_seed: float  # item clusters: a cluster's trials per seed; else 0 (clusters keep their size)
    cluster_size: float  # the clusters' size when they do not grow

    @classmethod
    def of(cls, n_now: int, cluster_now: float, seeds_now: int, unit: Unit) -> "SeedGrowth":
        # Items recur across seeds (each item once per seed at one seed; more often at several).
        items_recur = unit == "item" and (seeds_now == 1 or cluster_now > 1)
        return cls(n_now / seeds_now, cluster_now / seeds_now if items_recur else 0.0, cluster_now)

    def at(self, seeds: int) -> tuple[int, float]:
        """(trials, cluster size) at `seeds` seeds per cell."""
        m = self.cluster_per_seed * seeds if self.cluster_per_seed else self.cluster_size
        return round(self.per_seed * seeds), max(m, 1.0)

    def clusters(self) -> float | None:
        """The number of item clusters, which no number of seeds changes (None: they grow with seeds)."""
        return self.per_seed / self.cluster_per_seed if self.cluster_per_seed else None


def best_halfwidth(p: float, growth: SeedGrowth, icc: float) -> float:
    """The half-width that infinitely many seeds approach: Wilson's at k / ICC trials for k items
    repeated across seeds; 0 when adding seeds adds clusters."""
    k = growth.clusters()
    if k is None or icc == 0:
        return 0.0
    return rate_halfwidth(p, round(k), deff=icc)


def _seeds_for(basis: MetricBasis, p: float, growth: SeedGrowth, target: float) -> int | None:
    """The fewest seeds whose expected half-width at rate p is at most `target`; None when none up to
    MAX_SEEDS does."""
    def reaches(seeds: int) -> bool:
        n, m = growth.at(seeds)
        return rate_halfwidth(p, n, design_effect(m, basis.icc)) <= target

    high = 1
    while not reaches(high):
        high *= 2
        if high > MAX_SEEDS:
            return None
    low = max(1, high // 2)
    while low < high:
        mid = (low + high) // 2
        if reaches(mid):
            high = mid
        else:
            low = mid + 1
    return low


def seeds_for_target(trials: list[Trial], bases: list[MetricBasis], seeds_now: int, target: float,
                     describe, unit: Unit) -> TargetSeeds:
    worst, need, notes = "", 0, []
    for size in cell_sizes(trials, unit):
        growth = SeedGrowth.of(size.n, size.cluster_size, seeds_now, unit)
        for basis in bases:
            if basis.metric.kind != "proportion":
                continue
            p = basis.cell_rate(size.cell_id)
            where = f"{basis.metric.label} in {describe(size.cell)}"
            best = best_halfwidth(p, growth, basis.icc)
            if best >= target:
                k = round(growth.clusters() or 0)
                notes.append(f"{where}: no number of seeds gets below ±{best:.1%}: its {k} items recur under every "
                             f"seed and share an ICC of {basis.icc:.2f}, so they carry at most {k / basis.icc:.0f} "
                             f"independent trials' worth; add items")
                continue
            seeds = _seeds_for(basis, p, growth, target)
            if seeds is None:
                notes.append(f"{where}: more than {MAX_SEEDS:,} seeds would be needed (the best any number of seeds "
                             f"can reach is ±{best:.1%}); add items")
                continue
            if seeds > need:
                need, worst = seeds, where
    if notes:
        return TargetSeeds(target, seeds_now, None, worst, notes)
    return TargetSeeds(target, seeds_now, need, worst, notes)


@dataclass(frozen=True)
class PlanPrecision:
    bases: list[MetricBasis]
    cells: pd.DataFrame
    comparisons: pd.DataFrame
    target: TargetSeeds | None
    unit: str  # what a cluster is, in prose


# Bookkeeping rates: planned for, but not what a design is powered for.
BOOKKEEPING = ("error_rate", "parse_failure_rate", "judge_error_rate")


def headline_metrics(plan: Plan) -> list[Metric]:
    """The metrics the abstract reports: those its summary section lists, else the scenario's
    headline metrics without the bookkeeping rates."""
    by_name = {m.name: m for m in plan.scenario.metrics()}
    listed = [s.get("metrics") for s in plan.loaded.spec.report.sections if s.get("type") == "summary"]
    names = listed[0] if listed and listed[0] else [n for n in plan.scenario.headline_metrics if n not in BOOKKEEPING]
    return [by_name[name] for name in names if name in by_name]


def plan_precision(plan: Plan, con: duckdb.DuckDBPyConnection | None) -> PlanPrecision:
    """The design's precision and power for its headline metrics, measured on `con` where it holds
    finished trials of the plan."""
    spec, scenario = plan.loaded.spec, plan.scenario
    models_factor = model_factor(spec.design.factors, set(spec.models))
    unit = randomised_unit(scenario.randomised_unit, any("item" in t.inputs for t in plan.trials[:1]))
    params = scenario.metric_params(spec)
    bases = [MetricBasis(m, observe(con, plan.trials, m, params, models_factor, unit, spec.design.factors) if con is not None else None,
                         spec.design.assumed_icc) for m in headline_metrics(plan)]

    def describe(cell: dict) -> str:
        return ", ".join(f"{k}: {v}" for k, v in scenario.describe_cell(cell, spec).items())

    comparisons = planned_comparisons(plan.trials, spec.design.factors, models_factor, unit)
    target = None
    if spec.design.target_halfwidth is not None:
        target = seeds_for_target(plan.trials, bases, len(spec.design.seed_list), spec.design.target_halfwidth,
                                  describe, unit)
    return PlanPrecision(bases, cell_precision(plan.trials, bases, describe, unit),
                         comparison_power(comparisons, bases), target, UNIT_PROSE[unit])


UNIT_PROSE = {"item": "the item (it recurs across seeds and conditions)",
              "seed": "the seed (shared by the cells it runs in)",
              "trial": "the trial (the scenario declares its trials independent)"}


def _amount(kind: str, x: float) -> str:
    return "—" if math.isnan(x) else (f"{x:.0%}" if kind == "proportion" else f"{x:.3g}")


def cells_display(pp: PlanPrecision) -> pd.DataFrame:
    """Display table: a row per cell, the planned n and each metric's expected ±half-width."""
    if pp.cells.empty:
        return pd.DataFrame()
    rows: dict[str, dict[str, str]] = {}
    for r in pp.cells.itertuples():
        row = rows.setdefault(r.cell_id, {"Cell": r.cell, "n": str(r.n)})
        row[f"{r.label} ±"] = ("SD unknown" if math.isnan(r.halfwidth) and r.kind == "mean"
                               else "±" + _amount(r.kind, r.halfwidth))
    return pd.DataFrame(list(rows.values()))


def comparisons_display(pp: PlanPrecision) -> pd.DataFrame:
    """Display table: a row per comparison family, each metric's minimum detectable difference."""
    if pp.comparisons.empty:
        return pd.DataFrame()
    rows: dict[str, dict[str, str]] = {}
    for r in pp.comparisons.itertuples():
        row = rows.setdefault(r.family, {
            "Comparison": r.family, "Pairs": str(r.comparisons), "n per arm": str(r.n),
            "Design": ("paired" if r.paired else "unpaired") + (f", {r.cluster_size:g} per cluster"
                                                               if r.cluster_size > 1 else "")})
        if r.unreachable == r.comparisons:
            text = "SD unknown" if r.kind == "mean" else "none ≤ 100%"
        else:
            low, high = _amount(r.kind, r.mdd_low), _amount(r.kind, r.mdd_high)
            text = low if low == high else f"{low}–{high}"
            if r.unreachable:
                text += f" ({r.unreachable} unreachable)"
        row[f"MDD {r.label}"] = text
    return pd.DataFrame(list(rows.values()))
