"""Precision and power of a study's design, per headline metric, for the intervals the report
computes (engine/analyze/report_power.py): each design cell's expected 95% half-width at its planned
N, each comparison's minimum detectable difference (80% power, alpha 0.05, two-sided, per
comparison before Holm's correction), and, for a target half-width, the seeds that reach it and what
they cost. Each metric's N is its own denominator (the scenario's `counts_in`: attack success counts
harmful requests only). Every input says where it comes from: the database's own model cells when it
holds finished trials of the plan (never control cells such as scripted policies, for a model),
else the spec's stated assumptions (design.assumed_rate, assumed_sd, assumed_icc), else a stated
default (a rate of 50%, where a difference is hardest to detect; a mean in units of its SD)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from engine.analyze.precision import Observed, observe
from engine.analyze.report_power import (EXACT_MAX_PAIRS, EXACT_MAX_UNITS, REPORT, Layout, Procedure,
                                         mean_cell_halfwidth, mean_mdd, rate_cell_halfwidth, rate_mdd, simulated)
from engine.kernel.contracts import Metric
from engine.kernel.records import Trial
from engine.plan.compile import Plan
from engine.plan.comparisons import (CellSize, Comparison, Unit, cell_sizes, model_factor, planned_comparisons,
                                     randomised_unit)
from engine.plan.power import PER_STUDY_DRAWS, ClusteredRates, cluster_halfwidth

DEFAULT_RATE = 0.5
MAX_SEEDS = 10**6
QUANTILE = 0.9  # the half-width 90% of studies stay within, printed beside the expected one


@dataclass(frozen=True)
class Assumed:
    """The spec's planning assumptions (design.assumed_*)."""

    rate: float | None
    sd: dict[str, float]
    icc: float


@dataclass(frozen=True)
class Basis:
    """A planning figure and where it comes from."""

    value: float | None  # a rate, or an SD (None: unknown, shown in SD units)
    source: str  # "measured", "pooled", "assumed", "default", "SD units"


@dataclass(frozen=True)
class MetricBasis:
    """Where one metric's planning figures come from."""

    metric: Metric
    observed: Observed | None
    assumed: Assumed
    units_note: str = ""  # which planned trials the metric counts, when not all

    @property
    def icc(self) -> float:
        found = self.observed.icc if self.observed else None
        return self.assumed.icc if found is None else found

    @property
    def rho(self) -> float:
        found = self.observed.rho if self.observed else None
        return 0.0 if found is None else found

    def _measured(self) -> bool:
        return bool(self.observed and self.observed.model_cells)

    def cell_basis(self, cell_id: str) -> Basis:
        """The rate (proportions) or SD (means) planning uses for a cell."""
        seen = self.observed.cells.get(cell_id) if self.observed else None
        if self.metric.kind == "proportion":
            if seen is not None:
                return Basis(seen.mean, "measured")
            if self._measured():
                return Basis(self.observed.pooled_mean, "pooled")
            if self.assumed.rate is not None:
                return Basis(self.assumed.rate, "assumed")
            return Basis(DEFAULT_RATE, "default")
        if seen is not None and not math.isnan(seen.sd):
            return Basis(seen.sd, "measured")
        if self._measured() and not math.isnan(self.observed.pooled_sd):
            return Basis(self.observed.pooled_sd, "pooled")
        if self.metric.name in self.assumed.sd:
            return Basis(self.assumed.sd[self.metric.name], "assumed")
        return Basis(None, "SD units")

    def statement(self) -> str:
        m, o = self.metric, self.observed
        what = "base rate" if m.kind == "proportion" else "SD"
        if self._measured():
            pooled = o.pooled_mean if m.kind == "proportion" else o.pooled_sd
            shown = f"{pooled:.0%}" if m.kind == "proportion" else f"{pooled:.3g}"
            base = (f"{what} per cell from the data: {len(o.model_cells)} model "
                    f"{'cell' if len(o.model_cells) == 1 else 'cells'} measured on {o.n_model} finished trials "
                    f"(pooled {shown}, used for model cells without data)")
        elif m.kind == "proportion":
            base = (f"base rate {self.assumed.rate:.0%} assumed for every model cell (design.assumed_rate)"
                    if self.assumed.rate is not None else
                    f"base rate {DEFAULT_RATE:.0%} for every model cell: a stated default, where a difference is "
                    "hardest to detect (no model cell measured yet; set design.assumed_rate)")
        elif m.name in self.assumed.sd:
            base = f"SD {self.assumed.sd[m.name]:g} assumed for every model cell (design.assumed_sd.{m.name})"
        else:
            base = (f"SD unknown before data: half-widths and MDDs in units of the SD (set "
                    f"design.assumed_sd.{m.name})")
        if o is not None and o.n > o.n_model:
            base += f"; control cells measured on {o.n - o.n_model} trials, for themselves only"
        icc = (f"ICC {o.icc:.2f} measured" if o is not None and o.icc is not None
               else f"ICC {self.assumed.icc:g} assumed (design.assumed_icc)")
        rho = (f"paired-outcome correlation {o.rho:.2f} measured" if o is not None and o.rho is not None
               else "no pairing gain assumed (rho 0)")
        units = f" ({self.units_note})" if self.units_note else ""
        return f"{m.label}{units}: {base}; {icc}; {rho}"


# ---------------------------------------------------------------- cells

def cell_precision(sizes: dict[str, list[CellSize]], bases: list[MetricBasis], describe,
                   procedure: Procedure) -> pd.DataFrame:
    """One row per design cell and metric: the metric's planned n and clusters there, the rate or SD
    assumed and its source, the expected half-width."""
    rows = []
    for basis in bases:
        for size in sizes[basis.metric.name]:
            b = basis.cell_basis(size.cell_id)
            rows.append({"cell_id": size.cell_id, "cell": describe(size.cell), "metric": basis.metric.name,
                         "label": basis.metric.label, "kind": basis.metric.kind, "n": size.n,
                         "clusters": size.clusters, "cluster_size": size.cluster_size, "basis": b.value,
                         "source": b.source,
                         "halfwidth": _cell_halfwidth(basis, b, size.n, size.clusters, procedure)})
    return pd.DataFrame(rows)


def _cell_halfwidth(basis: MetricBasis, b: Basis, n: int, clusters: int, procedure: Procedure,
                    quantile: float | None = None) -> float:
    """In the metric's units; a mean of unknown SD in SD units."""
    if basis.metric.kind == "proportion":
        return rate_cell_halfwidth(n, clusters, b.value, icc=basis.icc, procedure=procedure, quantile=quantile)
    return mean_cell_halfwidth(n, clusters, 1.0 if b.value is None else b.value, icc=basis.icc, procedure=procedure,
                               quantile=quantile)


# ---------------------------------------------------------------- comparisons

def _layout(c: Comparison) -> Layout:
    return Layout(c.n, c.clusters or c.n, c.paired)


def _arm(basis: MetricBasis, cells: tuple[str, ...]) -> Basis:
    found = [basis.cell_basis(c) for c in cells]
    known = [b.value for b in found if b.value is not None]
    return Basis(sum(known) / len(known) if known else None, found[0].source if found else "default")


def method_of(basis: MetricBasis, layout: Layout, procedure: Procedure) -> str:
    """How a comparison's power is computed, in a few words."""
    rule = procedure.difference_rule(basis.metric.kind, layout.paired)
    if basis.metric.kind == "mean":
        return f"noncentral t, {rule.name}"
    if not layout.clustered:
        limit = EXACT_MAX_PAIRS if layout.paired else EXACT_MAX_UNITS
        name = procedure.counts_names[0 if layout.paired else 1]
        return f"exact, {name}" if layout.n <= limit else f"normal approximation to {name}"
    if simulated(layout, basis.rho, procedure):
        return f"{rule.draws:,} simulated studies, {rule.name}"
    return f"noncentral t, {rule.name}"


def comparison_mdd(basis: MetricBasis, comparison: Comparison, procedure: Procedure = REPORT,
                   cache: dict | None = None) -> float | None:
    """The comparison's minimum detectable difference (a mean's in SD units when its SD is unknown);
    None when no difference is detected with 80% power (or no interval is given)."""
    layout = _layout(comparison)
    rho = basis.rho if comparison.paired else 0.0
    if basis.metric.kind == "proportion":
        first, second = _arm(basis, comparison.first_cells), _arm(basis, comparison.second_cells)
        key = ("rate", layout, round((first.value + second.value) / 2, 4), basis.icc, rho)
        compute = lambda: rate_mdd(layout, key[2], icc=basis.icc, rho=rho, procedure=procedure)  # noqa: E731
    else:
        sd = _arm(basis, comparison.first_cells + comparison.second_cells).value
        key = ("mean", layout, sd, basis.icc, rho)
        compute = lambda: mean_mdd(layout, 1.0 if sd is None else sd, icc=basis.icc, rho=rho,  # noqa: E731
                                   procedure=procedure)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def why_none(layout: Layout, kind: str, procedure: Procedure) -> str:
    rule = procedure.difference_rule(kind, layout.paired)
    if (layout.clustered or kind == "mean") and not rule.gives_interval(layout.clusters):
        return f"none: {layout.clusters} clusters, no interval below {rule.min_clusters}"
    return "none ≤ 100%"


def comparison_power(comparisons: list[Comparison], basis: MetricBasis, procedure: Procedure,
                     cache: dict) -> list[dict]:
    """One row per comparison family: comparisons, n per arm, clusters, paired, the range of minimum
    detectable differences, how they were computed, why none where none is."""
    families: dict[str, list[Comparison]] = {}
    for c in (c for c in comparisons if c.n > 0):  # an arm without units compares nothing
        # Model pairs are one family across conditions: they share their n and pairing.
        family = "model pairs within each condition" if c.family.startswith("models within") else c.family
        families.setdefault(family, []).append(c)
    rows = []
    for family, members in families.items():
        mdds = [comparison_mdd(basis, c, procedure, cache) for c in members]
        reachable = [d for d in mdds if d is not None]
        smallest = min(members, key=lambda c: (c.n, c.clusters))
        layout = _layout(smallest)
        rows.append({"family": family, "metric": basis.metric.name, "label": basis.metric.label,
                     "kind": basis.metric.kind, "sd_units": basis.metric.kind == "mean" and all(
                         _arm(basis, c.first_cells + c.second_cells).value is None for c in members),
                     "comparisons": len(members), "n": smallest.n, "clusters": layout.clusters,
                     "paired": all(c.paired for c in members),
                     "cluster_size": max(c.cluster_size for c in members),
                     "method": method_of(basis, layout, procedure),
                     "mdd_low": min(reachable) if reachable else math.nan,
                     "mdd_high": max(reachable) if reachable else math.nan,
                     "unreachable": len(mdds) - len(reachable),
                     "why_none": why_none(layout, basis.metric.kind, procedure)})
    return rows


# ---------------------------------------------------------------- target half-width

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

    def at(self, seeds: int) -> tuple[int, int]:
        """(trials, clusters) at `seeds` seeds per cell."""
        n = round(self.per_seed * seeds)
        m = max(self.cluster_per_seed * seeds if self.cluster_per_seed else self.cluster_size, 1.0)
        return n, max(round(n / m), 1)

    def clusters(self) -> float | None:
        """The number of item clusters, which no number of seeds changes (None: they grow with seeds)."""
        return self.per_seed / self.cluster_per_seed if self.cluster_per_seed else None


MANY_SEEDS = 1000  # seeds standing in for infinitely many in `best_halfwidth`'s simulation


def best_halfwidth(p: float, growth: SeedGrowth, icc: float, procedure: Procedure = REPORT) -> float:
    """The expected half-width that infinitely many seeds approach: the cluster interval over k items
    whose means vary with variance p q ICC; 0 when adding seeds adds clusters; NaN when k items are
    too few for an interval."""
    k = growth.clusters()
    if k is None:
        return 0.0
    rule = procedure.cell_rule("proportion")
    if not rule.gives_interval(round(k)):
        return math.nan
    if rule.interval is not None and not rule.normal_theory:  # simulated, at many units per item
        return float(ClusteredRates(round(k), MANY_SEEDS, icc, rule.draws).halfwidths(p, rule).mean())
    return cluster_halfwidth(math.sqrt(p * (1 - p) * icc), round(k), rule)


def _seeds_for(reaches, limit: int = MAX_SEEDS) -> int | None:
    """The fewest seeds s for which `reaches(s)`, which holds from some s on; None up to `limit`."""
    high = 1
    while not reaches(high):
        high *= 2
        if high > limit:
            return None
    low = max(1, high // 2)
    while low < high:
        mid = (low + high) // 2
        if reaches(mid):
            high = mid
        else:
            low = mid + 1
    return low


@dataclass(frozen=True)
class MetricTarget:
    """Seeds per cell that bring one rate's expected half-width to the target in every cell."""

    label: str
    seeds: int | None  # None: no number of seeds reaches it (note says why)
    worst: str = ""  # the cell that needs the most
    halfwidth: float = math.nan  # expected, in that cell at those seeds
    halfwidth_q90: float = math.nan
    note: str = ""


@dataclass(frozen=True)
class TargetSeeds:
    """Seeds per cell that bring every headline rate's expected (mean) 95% half-width to the target."""

    target: float
    seeds_now: int
    metrics: list[MetricTarget] = field(default_factory=list)

    @property
    def reachable(self) -> list[MetricTarget]:
        return [m for m in self.metrics if m.seeds is not None]

    @property
    def seeds(self) -> int | None:
        """The seeds every rate that can reach the target needs (None: none can)."""
        return max((m.seeds for m in self.reachable), default=None)

    @property
    def notes(self) -> list[str]:
        return [m.note for m in self.metrics if m.seeds is None]


def metric_target(basis: MetricBasis, sizes: list[CellSize], seeds_now: int, target: float, describe, unit: Unit,
                  procedure: Procedure) -> MetricTarget:
    label = basis.metric.label
    need, worst, notes = 0, None, []
    for size in sizes:
        p = basis.cell_basis(size.cell_id).value
        growth = SeedGrowth.of(size.n, size.cluster_size, seeds_now, unit)
        where = describe(size.cell)

        def expected(seeds: int, quantile: float | None = None) -> float:
            n, k = growth.at(seeds)
            return rate_cell_halfwidth(n, k, p, icc=basis.icc, procedure=procedure, quantile=quantile)

        best = best_halfwidth(p, growth, basis.icc, procedure)
        k = round(growth.clusters() or 0)
        if math.isnan(best):
            notes.append(f"{label} in {where}: its {k} items give no interval over clusters (fewer than "
                         f"{procedure.cell_rule('proportion').min_clusters}) once they recur under several seeds; add items")
            continue
        if best >= target:
            notes.append(f"{label} in {where}: no number of seeds gets below ±{best:.1%}: its {k} items recur under "
                         f"every seed and share an ICC of {basis.icc:.2f}, so they carry at most {k / basis.icc:.0f} "
                         "independent trials' worth; add items")
            continue
        seeds = _seeds_for(lambda s: expected(s) <= target)
        if seeds is None:
            notes.append(f"{label} in {where}: more than {MAX_SEEDS:,} seeds would be needed (the best any number of "
                         f"seeds can reach is ±{best:.1%}); add items")
            continue
        if seeds > need:
            need, worst = seeds, (where, expected(seeds), expected(seeds, QUANTILE))
    if notes:
        return MetricTarget(label, None, note=notes[0] + (f" (and {len(notes) - 1} more cells)" if len(notes) > 1 else ""))
    if worst is None:
        return MetricTarget(label, None, note=f"{label}: no planned trial counts in it")
    return MetricTarget(label, need, *worst)


def seeds_for_target(sizes: dict[str, list[CellSize]], bases: list[MetricBasis], seeds_now: int, target: float,
                     describe, unit: Unit, procedure: Procedure = REPORT) -> TargetSeeds:
    return TargetSeeds(target, seeds_now, [
        metric_target(b, sizes[b.metric.name], seeds_now, target, describe, unit, procedure)
        for b in bases if b.metric.kind == "proportion"])


@dataclass(frozen=True)
class Budget:
    max_usd: float | None
    max_tokens: int | None


def target_lines(target: TargetSeeds, calls: int, tokens: int, usd: float, budget: Budget) -> list[str]:
    """What reaching a target half-width takes, in lines: the seeds per rate; calls, tokens and cost
    scaled to the seeds (every trial's cost is per seed), flagged when over the study's budget."""
    lines = [f"target: an expected (mean over studies) 95% half-width of at most ±{target.target:.0%} for every "
             "headline rate in every cell"]
    for m in target.metrics:
        if m.seeds is None:
            lines.append(f"  {m.note}")
        else:
            lines.append(f"  {m.label}: {m.seeds} seeds per cell (the most needed by {m.worst}: expected "
                         f"±{m.halfwidth:.1%}, 90% of studies within ±{m.halfwidth_q90:.1%})")
    seeds = target.seeds
    if seeds is None or seeds <= target.seeds_now:
        return lines
    scale = seeds / target.seeds_now
    cost, needed_tokens = usd * scale, tokens * scale
    lines.append(f"  at {seeds} seeds (now {target.seeds_now}): model calls ≤ {calls * scale:,.0f}, tokens ≤ "
                 f"{needed_tokens:,.0f}, cost ≤ ${cost:,.2f}")
    over = []
    if budget.max_usd is not None and cost > budget.max_usd:
        over.append(f"cost ≤ ${cost:,.2f} exceeds the study's budget cap of ${budget.max_usd:g} "
                    "(executor.budget.max_usd)")
    if budget.max_tokens is not None and needed_tokens > budget.max_tokens:
        over.append(f"tokens ≤ {needed_tokens:,.0f} exceed the study's cap of {budget.max_tokens:,} "
                    "(executor.budget.max_tokens)")
    if over:
        lines.append("  OVER BUDGET: " + "; ".join(over) + ": the run would stop at the cap before the target "
                     "is reached; raise the cap or aim lower")
    return lines


# ---------------------------------------------------------------- the plan's precision

@dataclass(frozen=True)
class PlanPrecision:
    bases: list[MetricBasis]
    cells: pd.DataFrame
    comparisons: pd.DataFrame
    target: TargetSeeds | None
    unit: str  # what a cluster is, in prose
    procedure: Procedure = REPORT


# Bookkeeping rates: planned for, but not what a design is powered for.
BOOKKEEPING = ("error_rate", "parse_failure_rate", "judge_error_rate")


def headline_metrics(plan: Plan) -> list[Metric]:
    """The metrics the abstract reports: those its summary section lists, else the scenario's
    headline metrics without the bookkeeping rates."""
    by_name = {m.name: m for m in plan.scenario.metrics()}
    listed = [s.get("metrics") for s in plan.loaded.spec.report.sections if s.get("type") == "summary"]
    names = listed[0] if listed and listed[0] else [n for n in plan.scenario.headline_metrics if n not in BOOKKEEPING]
    return [by_name[name] for name in names if name in by_name]


def _units_note(counted: int, total: int, many: str) -> str:
    return "" if counted == total else f"{counted} of the plan's {total} {many}"


def plan_precision(plan: Plan, con: duckdb.DuckDBPyConnection | None,
                   procedure: Procedure = REPORT) -> PlanPrecision:
    """The design's precision and power for its headline metrics, measured on `con` where it holds
    finished trials of the plan, for the intervals `procedure` computes."""
    spec, scenario = plan.loaded.spec, plan.scenario
    models_factor = model_factor(spec.design.factors, set(spec.models))
    unit = randomised_unit(scenario.randomised_unit, any("item" in t.inputs for t in plan.trials[:1]))
    params = scenario.metric_params(spec)
    model_cells = {t.cell_id for t in plan.trials if not scenario.is_control(t.cell)}
    assumed = Assumed(spec.design.assumed_rate, dict(spec.design.assumed_sd), spec.design.assumed_icc)
    metrics = headline_metrics(plan)
    counted: dict[str, list[Trial]] = {m.name: [t for t in plan.trials if scenario.counts_in(m, t)] for m in metrics}
    many = scenario.unit[1]
    bases = [MetricBasis(m, observe(con, plan.trials, m, params, models_factor, unit, spec.design.factors, model_cells)
                         if con is not None else None, assumed,
                         _units_note(len(counted[m.name]), len(plan.trials), many)) for m in metrics]

    def describe(cell: dict) -> str:
        return ", ".join(f"{k}: {v}" for k, v in scenario.describe_cell(cell, spec).items())

    # Metrics that count the same trials share their cells and comparisons.
    by_units: dict[tuple[str, ...], tuple[list[CellSize], list[Comparison]]] = {}
    sizes: dict[str, list[CellSize]] = {}
    comparisons: dict[str, list[Comparison]] = {}
    for m in metrics:
        ids = tuple(t.trial_id for t in counted[m.name])
        if ids not in by_units:
            trials = counted[m.name]
            by_units[ids] = (cell_sizes(trials, unit), planned_comparisons(trials, spec.design.factors, models_factor,
                                                                           unit))
        sizes[m.name], comparisons[m.name] = by_units[ids]
    cache: dict = {}
    rows = [row for b in bases for row in comparison_power(comparisons[b.metric.name], b, procedure, cache)]
    target = None
    if spec.design.target_halfwidth is not None:
        target = seeds_for_target(sizes, bases, len(spec.design.seed_list), spec.design.target_halfwidth, describe,
                                  unit, procedure)
    return PlanPrecision(bases, cell_precision(sizes, bases, describe, procedure), pd.DataFrame(rows), target,
                         UNIT_PROSE[unit], procedure)


UNIT_PROSE = {"item": "the item (it recurs across seeds and conditions)",
              "seed": "the seed (shared by the cells it runs in)",
              "trial": "the trial (the scenario declares its trials independent)"}


# ---------------------------------------------------------------- display

def precision_preamble(pp: PlanPrecision) -> list[str]:
    """What the statements mean, in sentences (`plan` and the report's methods say the same)."""
    mc = 100 * math.sqrt(0.8 * 0.2 / PER_STUDY_DRAWS)
    return [
        "Half-width: the expected (mean over studies) half-width of the 95% interval the report prints for a "
        "cell (Clopper-Pearson for a rate, Korn-Graubard where an item recurs; a studentized bootstrap for a "
        "mean); the "
        "target below is met in this mean, and 90% of studies stay within the wider half-width it states.",
        "MDD: the smallest difference between two arms centred on the planning rate (50% before data, where a "
        "difference is hardest to detect) whose 95% interval, as the report computes it, excludes 0 in 80% of "
        "studies (two-sided alpha 0.05, each comparison on its own before Holm's correction); 'none' where no "
        "difference within [0, 1] is detected that often, or the report gives no interval (too few clusters). "
        f"Power is exact for intervals on counts, simulated ({PER_STUDY_DRAWS:,} seeded studies, Monte Carlo SE "
        f"±{mc:.1f} points of power) for 0/1 outcomes in clusters, else a noncentral t.",
    ]



def _amount(kind: str, x: float, sd_units: bool = False) -> str:
    if math.isnan(x):
        return "—"
    if kind == "proportion":
        return f"{x:.0%}"
    return f"{x:.2g} SD" if sd_units else f"{x:.3g}"


def cells_display(pp: PlanPrecision) -> pd.DataFrame:
    """Display table: a row per cell, each metric's expected ±half-width (and its n where the metrics'
    n differ)."""
    if pp.cells.empty:
        return pd.DataFrame()
    same_n = pp.cells.groupby("cell_id")["n"].nunique().max() == 1
    rows: dict[str, dict[str, str]] = {}
    for r in pp.cells.itertuples():
        row = rows.setdefault(r.cell_id, {"Cell": r.cell, **({"n": str(r.n)} if same_n else {})})
        sd_units = r.kind == "mean" and r.source == "SD units"
        if math.isnan(r.halfwidth):
            text = f"no interval ({r.clusters} clusters)"
        else:
            text = "±" + _amount(r.kind, r.halfwidth, sd_units)
        row[f"{r.label} ±"] = text + ("" if same_n else f" (n={r.n})")
    return pd.DataFrame(list(rows.values()))


def comparisons_display(pp: PlanPrecision) -> pd.DataFrame:
    """Display table: a row per comparison family and metric (metrics with the same design and answer
    share a row), its minimum detectable difference and how its power was computed."""
    if pp.comparisons.empty:
        return pd.DataFrame()
    rows: dict[tuple, dict[str, str]] = {}
    for r in pp.comparisons.itertuples():
        if r.unreachable == r.comparisons:
            text = r.why_none
        else:
            low, high = _amount(r.kind, r.mdd_low, r.sd_units), _amount(r.kind, r.mdd_high, r.sd_units)
            text = low if low == high else f"{low}–{high}"
            if r.unreachable:
                text += f" ({r.unreachable} unreachable)"
        units = "pairs" if r.paired else "per arm"
        design = f"{r.n} {units}" + (f" in {r.clusters} clusters" if r.clusters < r.n else "")
        method = "no interval" if text.startswith("none:") else r.method
        row = rows.setdefault((r.family, design, text, method), {
            "Comparison": r.family, "Metrics": "", "Pairs": str(r.comparisons), "n": design, "MDD": text,
            "Power from": method})
        row["Metrics"] = ", ".join(x for x in (row["Metrics"], r.label) if x)
    return pd.DataFrame(list(rows.values()))
