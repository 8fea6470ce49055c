"""B minus A per matched cell and metric, and pooled over the matched cells: the paired contrast
machinery of engine/analyze/paired.py (a pair is a trial of A and one of B in the same cell with the
same seed and item; paired when at least half the smaller arm's units have a partner, else
unpaired), with Holm's correction across every comparison of every metric shown."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import duckdb
import pandas as pd

from engine.analyze.metrics import cell_estimates
from engine.analyze.paired import Cluster, Contrast, contrasts_of, keyed_units, unit_frame
from engine.analyze.paired_stats import holm
from engine.analyze.stats import Estimate
from engine.compare.cells import CellMatch, Matching
from engine.compare.sides import Side
from engine.kernel.contracts import Metric

ARMS = ("B", "A")  # contrasts_of takes the first model minus the second: B - A


@dataclass(frozen=True)
class Row:
    """One metric in one matched cell (cell None: pooled over the matched cells): each side's
    estimate with its interval and n, and the difference B - A (None: no units on either side)."""

    metric: Metric
    cell: CellMatch | None
    a: Estimate
    b: Estimate
    contrast: Contrast | None


@dataclass(frozen=True)
class MetricDifferences:
    metric: Metric
    rows: list[Row]
    cluster: Cluster  # what a resampling interval draws: the item, the seed or the trial
    has_items: bool


def _pooled(values: pd.Series) -> Estimate:
    """A side's mean over the matched cells, with its n; its interval is the pooled difference's job."""
    return Estimate(float(values.mean()) if len(values) else math.nan, math.nan, math.nan, len(values))


def metric_differences(cons: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection], sides: tuple[Side, Side],
                       matching: Matching, metric: Metric, seed: int = 0) -> MetricDifferences:
    """`cons` and `sides` in the order A, B."""
    by_cell = {side.label: {} for side in sides}
    frames, estimates = {}, {}
    for con, side in zip(cons, sides):
        frames[side.label] = unit_frame(con, side.spec_hash, metric, side.scenario.metric_params(side.spec))
        est = cell_estimates(con, side.spec_hash, [metric], seed, side.scenario.metric_params(side.spec),
                             clustered_on_items=side.scenario.randomised_unit != "trial")
        estimates[side.label] = {r.cell_id: Estimate(r.value, r.low, r.high, int(r.n)) for r in est.itertuples()}
    for match in matching.cells:
        by_cell["A"][match.a_cell_id] = match
        by_cell["B"][match.b_cell_id] = match
    rows = []
    for arm in ARMS:
        frame = frames[arm]
        for unit in frame[frame["cell_id"].isin(list(by_cell[arm]))].itertuples():
            rows.append({"model": arm, "condition": by_cell[arm][unit.cell_id].cell, "seed": int(unit.seed),
                         "item": unit.item if isinstance(unit.item, str) else "", "value": float(unit.value),
                         "trial_id": unit.trial_id})
    units, cluster = keyed_units(rows, sides[0].scenario.randomised_unit)
    result = contrasts_of(units, metric, ("study",), cluster, "item", seed)
    # contrasts_of names a condition by the factors that vary among the matched cells: back to the cell.
    cell_of_label = {label: json.dumps(json.loads(key)[0], sort_keys=True)
                     for label, key in zip(units["condition"], units["key"])}
    match_of_cell = {json.dumps(m.cell, sort_keys=True): m for m in matching.cells}
    contrast_of = {c.condition and match_of_cell[cell_of_label[c.condition]].b_cell_id: c for c in result.contrasts}
    out = [Row(metric, m, estimates["A"].get(m.a_cell_id, Estimate(math.nan, math.nan, math.nan, 0)),
               estimates["B"].get(m.b_cell_id, Estimate(math.nan, math.nan, math.nan, 0)),
               contrast_of.get(m.b_cell_id)) for m in matching.cells]
    if len(matching.cells) > 1:
        arm_values = lambda arm: units.loc[units["model"] == arm, "value"]  # noqa: E731
        out.append(Row(metric, None, _pooled(arm_values("A")), _pooled(arm_values("B")), contrast_of.get(None)))
    return MetricDifferences(metric, out, cluster, bool((units["item"] != "").any()))


def with_holm(results: list[MetricDifferences]) -> tuple[list[MetricDifferences], int]:
    """Holm's adjustment across every comparison of every metric (the family a reader scans for a
    change), in place of the per-metric one; with the family's size (comparisons with a p-value)."""
    contrasts = [row.contrast for r in results for row in r.rows if row.contrast is not None]
    adjusted = iter(holm([c.difference.p for c in contrasts]))
    out = []
    for r in results:
        rows = [replace(row, contrast=replace(row.contrast, holm_p=next(adjusted))) if row.contrast is not None
                else row for row in r.rows]
        out.append(replace(r, rows=rows))
    return out, sum(not math.isnan(c.difference.p) for c in contrasts)
