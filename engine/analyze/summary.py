"""The per-cell headline table (e.g. Model, Params, Nuclear, Divergence, Welfare, Velocity, N)."""

from __future__ import annotations

import math

import duckdb
import pandas as pd

from engine.kernel.contracts import Metric
from engine.analyze.metrics import cell_estimates, plan_cells
from engine.kernel.contracts import Scenario
from engine.spec.schema import StudySpec


def format_estimate(value: float, low: float, high: float, percent: bool) -> str:
    if value is None or math.isnan(value):
        return "—"
    if percent:
        body = f"{value:.0%}"
        return body if math.isnan(low) else f"{body} [{low:.0%}, {high:.0%}]"
    digits = 1 if abs(value) >= 100 else 3 if abs(value) < 10 else 2
    body = f"{value:.{digits}f}"
    return body if math.isnan(low) else f"{body} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_frame(con: duckdb.DuckDBPyConnection, spec_hash: str, spec: StudySpec, scenario: Scenario,
                  seed: int = 0) -> pd.DataFrame:
    """One row per design cell: descriptive columns, headline metrics with 95% intervals, N."""
    metrics: list[Metric] = [m for name in scenario.headline_metrics for m in scenario.metrics() if m.name == name]
    cells = plan_cells(con, spec_hash)
    if cells.empty:
        return pd.DataFrame()  # analysis-only studies have no design cells
    estimates = cell_estimates(con, spec_hash, metrics, seed, scenario.metric_params(spec))
    estimates = estimates.set_index(["cell_id", "metric"])
    rows = []
    for cell in cells.itertuples():
        row = dict(scenario.describe_cell(cell.cell, spec))
        for metric in metrics:
            est = estimates.loc[(cell.cell_id, metric.name)]
            row[metric.label] = format_estimate(est["value"], est["low"], est["high"], metric.percent)
        row["N"] = f"{cell.done}/{cell.planned}"
        rows.append(row)
    # Cells differ in their columns (controls lack some factors): a missing value reads '—', not nan.
    return pd.DataFrame(rows).fillna("—")
