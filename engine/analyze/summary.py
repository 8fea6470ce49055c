"""The per-cell headline table (e.g. Model, Params, Nuclear, Divergence, Welfare, Velocity, N)."""

from __future__ import annotations

import math

import duckdb
import pandas as pd

from engine.kernel.contracts import Metric
from engine.analyze.metrics import cell_estimates, plan_cells
from engine.kernel.contracts import Scenario
from engine.spec.schema import StudySpec


# An estimate resting on fewer units than this is flagged "low n" wherever it is printed.
LOW_N = 5


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def low_n(n: int, low: float | None = None) -> bool:
    """True when an estimate rests on too few units to be read alone: fewer than LOW_N units, or no
    interval could be given."""
    return int(n) < LOW_N or _missing(low)


def n_note(n: int, low: float | None = None) -> str:
    """What is printed beside an estimate: its own N (the units behind it), and a flag when it is
    low: "n=50", "n=3, low n", "n=1, no interval"."""
    n = int(n)
    if n == 0:
        return "n=0"
    if _missing(low):
        return f"n={n}, no interval"
    return f"n={n}, low n" if n < LOW_N else f"n={n}"


def format_estimate(value: float, low: float, high: float, percent: bool, n: int | None = None) -> str:
    """An estimate and its 95% interval; with `n`, followed by its own N and any low-n flag,
    e.g. "5.500 (n=1, no interval)"."""
    if _missing(value):
        return "—"
    if percent:
        body = f"{value:.0%}"
        body = body if math.isnan(low) else f"{body} [{low:.0%}, {high:.0%}]"
    else:
        digits = 1 if abs(value) >= 100 else 3 if abs(value) < 10 else 2
        body = f"{value:.{digits}f}"
        body = body if math.isnan(low) else f"{body} [{low:.{digits}f}, {high:.{digits}f}]"
    return body if n is None else f"{body} ({n_note(n, low)})"


def summary_frame(con: duckdb.DuckDBPyConnection, spec_hash: str, spec: StudySpec, scenario: Scenario,
                  seed: int = 0) -> pd.DataFrame:
    """One row per design cell: descriptive columns, each headline metric with its 95% interval and
    its own N (column "<label> n": the units behind that estimate, flagged when low), and N, the
    cell's finished/planned trials."""
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
            row[f"{metric.label} n"] = n_note(est["n"], est["low"]).removeprefix("n=")
        row["N"] = f"{cell.done}/{cell.planned}"
        rows.append(row)
    # Cells differ in their columns (controls lack some factors): a missing value reads '—', not nan.
    return pd.DataFrame(rows).fillna("—")
