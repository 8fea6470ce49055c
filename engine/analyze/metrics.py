"""Metrics: one definition each, as a query over the study database that yields one value per
unit (a trial). Aggregation per design cell adds N and a 95% interval."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import duckdb
import pandas as pd

from engine.analyze.stats import Estimate, bootstrap_mean, wilson
from engine.hashing import derived_seed

# Placeholders a metric's SQL may use: the spec's finished trials, or all its attempted trials.
FINISHED = ("(SELECT t.* FROM trials t JOIN plan p ON p.trial_id = t.trial_id"
            " WHERE p.spec_hash = $spec_hash AND t.status = 'done')")
ATTEMPTED = ("(SELECT t.* FROM trials t JOIN plan p ON p.trial_id = t.trial_id"
             " WHERE p.spec_hash = $spec_hash)")


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    kind: Literal["proportion", "mean"]
    sql: str  # SELECT trial_id, value ...; may use {finished} and {attempted}
    description: str
    percent: bool = False
    prose_name: str | None = None  # how prose names it, if not by its table label

    @property
    def prose(self) -> str:
        return self.prose_name or self.label

    def unit_sql(self) -> str:
        return self.sql.format(finished=FINISHED, attempted=ATTEMPTED)


def trial_error_rate(many: str) -> Metric:
    """Share of attempted trials that ended in an error: the same definition for every scenario."""
    return Metric("error_rate", "Errors", "proportion",
                  "SELECT t.trial_id, (t.status = 'error')::INT AS value FROM {attempted} t",
                  f"Share of attempted {many} that ended in an error (provider failure or unparseable replies); "
                  f"errored {many} are excluded from every other metric.", percent=True)


def plan_cells(con: duckdb.DuckDBPyConnection, spec_hash: str) -> pd.DataFrame:
    """Cells of a spec with planned and finished trial counts, in plan order."""
    df = con.execute(
        "SELECT p.cell_id, any_value(p.cell) AS cell, count(*) AS planned,"
        " count(t.trial_id) FILTER (WHERE t.status = 'done') AS done,"
        " count(t.trial_id) FILTER (WHERE t.status = 'error') AS errors,"
        " min(p.rowid) AS ord"
        " FROM plan p LEFT JOIN trials t ON t.trial_id = p.trial_id"
        " WHERE p.spec_hash = $spec_hash GROUP BY p.cell_id ORDER BY ord",
        {"spec_hash": spec_hash}).df()
    df["cell"] = df["cell"].map(json.loads)
    return df.drop(columns="ord")


def unit_values(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric,
                params: dict | None = None) -> pd.DataFrame:
    sql = metric.unit_sql()
    # Only the scenario parameters this metric's SQL names: DuckDB rejects unused ones.
    used = {k: v for k, v in (params or {}).items() if f"${k}" in sql}
    return con.execute(
        f"SELECT p.cell_id, u.trial_id, u.value FROM ({sql}) u"
        " JOIN plan p ON p.trial_id = u.trial_id AND p.spec_hash = $spec_hash"
        " WHERE u.value IS NOT NULL",
        {"spec_hash": spec_hash, **used}).df()


def aggregate(metric: Metric, values: pd.Series, seed: int, cell_id: str) -> Estimate:
    if metric.kind == "proportion":
        return wilson(int(values.astype(float).sum()), len(values))
    return bootstrap_mean(values.to_numpy(dtype=float), seed=derived_seed(seed, metric.name, cell_id))


def cell_estimates(con: duckdb.DuckDBPyConnection, spec_hash: str, metrics: list[Metric],
                   seed: int = 0, params: dict | None = None) -> pd.DataFrame:
    """Long table: one row per cell and metric with value, 95% interval and N (units)."""
    cells = plan_cells(con, spec_hash)
    rows = []
    for metric in metrics:
        units = unit_values(con, spec_hash, metric, params)
        by_cell = dict(tuple(units.groupby("cell_id")["value"]))
        for cell_id in cells["cell_id"]:
            est = aggregate(metric, by_cell.get(cell_id, pd.Series(dtype=float)), seed, cell_id)
            rows.append({"cell_id": cell_id, "metric": metric.name, "value": est.value,
                         "low": est.low, "high": est.high, "n": est.n})
    return pd.DataFrame(rows)
