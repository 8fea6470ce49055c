"""Metrics: one definition each, as a query over the study database that yields one value per
unit (a trial). Aggregation per design cell adds N and a 95% interval."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd

from engine.analyze.stats import Estimate, bounded, exact_rate, unit_estimate
from engine.kernel.contracts import Metric, view_sql
from engine.kernel.hashing import derived_seed

def _used(sql: str, params: dict | None) -> dict:
    """Only the parameters the SQL names: DuckDB rejects unused ones."""
    return {k: v for k, v in (params or {}).items() if f"${k}" in sql}


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
        " min(coalesce(p.position, p.rowid)) AS ord"
        " FROM plan p LEFT JOIN trials t ON t.trial_id = p.trial_id"
        " WHERE p.spec_hash = $spec_hash GROUP BY p.cell_id ORDER BY ord",
        {"spec_hash": spec_hash}).df()
    df["cell"] = df["cell"].map(json.loads)
    return df.drop(columns="ord")


def plan_cell_ids(con: duckdb.DuckDBPyConnection, spec_hash: str) -> list[str]:
    """The spec's cell ids in plan order (plan_cells' order, without its counts)."""
    return [c for (c,) in con.execute("SELECT cell_id FROM plan WHERE spec_hash = $spec_hash GROUP BY cell_id"
                                      " ORDER BY min(coalesce(position, rowid))", {"spec_hash": spec_hash}).fetchall()]


def unit_values(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric,
                params: dict | None = None, with_items: bool = False) -> pd.DataFrame:
    """cell_id, trial_id, value (and, `with_items`, each trial's item) of the metric's units, in the
    design's order."""
    sql = metric.unit_sql()
    item = (", CAST(json_extract(t.inputs, '$.item') AS VARCHAR) AS item" if with_items else "")
    trials = " JOIN trials t ON t.trial_id = u.trial_id" if with_items else ""
    return con.execute(
        f"SELECT p.cell_id, u.trial_id, u.value{item} FROM ({sql}) u"
        f" JOIN plan p ON p.trial_id = u.trial_id AND p.spec_hash = $spec_hash{trials}"
        " WHERE u.value IS NOT NULL ORDER BY coalesce(p.position, p.rowid), u.trial_id",  # the design order
        {"spec_hash": spec_hash, **_used(sql, params)}).df()


def unit_counts(con: duckdb.DuckDBPyConnection, spec_hash: str, metrics: list[Metric], params: dict | None = None,
                views: dict[str, str] | None = None) -> list[dict[str, tuple[int, float]]]:
    """Per metric, cell_id -> (units, sum of their values): all a proportion's interval needs,
    counted in the database over the same units as `unit_values`, in one query for all the metrics
    (so the plan is joined once)."""
    if not metrics:
        return []
    branches, used = [], {"spec_hash": spec_hash}
    for i, metric in enumerate(metrics):
        sql = metric.unit_sql(views)
        used |= _used(sql, params)
        branches.append(f"SELECT {i} AS metric, u.trial_id, u.value::DOUBLE AS value FROM ({sql}) u"
                        " WHERE u.value IS NOT NULL")
    rows = con.execute(
        "SELECT u.metric, p.cell_id, count(*), sum(u.value) FROM (" + " UNION ALL ".join(branches) + ") u"
        " JOIN plan p ON p.trial_id = u.trial_id AND p.spec_hash = $spec_hash GROUP BY u.metric, p.cell_id",
        used).fetchall()
    out: list[dict[str, tuple[int, float]]] = [{} for _ in metrics]
    for i, cell_id, n, total in rows:
        out[i][cell_id] = (n, total)
    return out


@contextmanager
def shared_views(con: duckdb.DuckDBPyConnection, spec_hash: str, metrics: list[Metric],
                 params: dict | None = None) -> Iterator[dict[str, str]]:
    """Each view the metrics share, computed once into a temporary table (the connection may be
    read-only): {name: table}. Dropped on exit. A view only one metric reads stays inline."""
    readers: dict[tuple[str, str], int] = {}
    for metric in metrics:
        for view in dict(metric.views).items():
            readers[view] = readers.get(view, 0) + 1
    if len({name for name, _ in readers}) < len(readers):
        raise ValueError("two metrics define different views under one name")
    tables: dict[str, str] = {}
    try:
        for (name, sql), count in readers.items():
            if count < 2:
                continue
            table = f"_view_{name}_{uuid.uuid4().hex[:8]}"
            body = view_sql(sql)
            try:
                con.execute(f"CREATE TEMP TABLE {table} AS {body}",
                            _used(body, {"spec_hash": spec_hash, **(params or {})}))
            except duckdb.Error:
                continue  # read inline instead
            tables[name] = table
        yield tables
    finally:
        for table in tables.values():
            con.execute(f"DROP TABLE IF EXISTS {table}")


def cell_estimate(metric: Metric, values: np.ndarray, seed: int, cell_id: str,
                  clusters: np.ndarray | None = None) -> Estimate:
    """The printed estimate of a metric over one cell's (or group of cells') units: a pure function of
    their values and clusters (None: independent units), seeded by the cell (engine/analyze/stats.py
    says which interval each kind gets)."""
    est = unit_estimate(metric.kind, np.asarray(values, dtype=float), derived_seed(seed, metric.name, cell_id),
                        clusters)
    return bounded(est, *metric.value_bounds) if metric.kind == "mean" else est


def aggregate(metric: Metric, values: pd.Series, seed: int, cell_id: str) -> Estimate:
    """`cell_estimate` of independent units."""
    return cell_estimate(metric, values.to_numpy(dtype=float), seed, cell_id)


def estimates_of_units(units: pd.DataFrame, metric: Metric, cell_ids: list[str], seed: int) -> list[Estimate]:
    """Per cell (in `cell_ids` order), the estimate of `units` (columns cell_id, value, and cluster: the
    cluster of each unit, None where a cell's units are independent): what `cell_estimates` prints,
    without a database."""
    by_cell = dict(tuple(units.groupby("cell_id")))
    out = []
    for cell_id in cell_ids:
        cell = by_cell.get(cell_id)
        if cell is None:
            out.append(cell_estimate(metric, np.array([]), seed, cell_id))
            continue
        clusters = cell["cluster"].to_numpy() if "cluster" in cell and cell["cluster"].notna().all() else None
        out.append(cell_estimate(metric, cell["value"].to_numpy(float), seed, cell_id, clusters))
    return out


def clustered_cells(con: duckdb.DuckDBPyConnection, spec_hash: str) -> set[str]:
    """Cells in which an item recurs (under several seeds): their units are not independent."""
    return {c for (c,) in con.execute(
        "SELECT p.cell_id FROM plan p JOIN trials t ON t.trial_id = p.trial_id"
        " WHERE p.spec_hash = $spec_hash AND json_extract(t.inputs, '$.item') IS NOT NULL"
        " GROUP BY p.cell_id HAVING count(*) > count(DISTINCT CAST(json_extract(t.inputs, '$.item') AS VARCHAR))",
        {"spec_hash": spec_hash}).fetchall()}


def _item_units(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric, params: dict | None) -> pd.DataFrame:
    return unit_values(con, spec_hash, metric, params, with_items=True)


def cell_estimates(con: duckdb.DuckDBPyConnection, spec_hash: str, metrics: list[Metric],
                   seed: int = 0, params: dict | None = None, clustered_on_items: bool = True) -> pd.DataFrame:
    """Long table: one row per cell and metric with value, 95% interval, N (units), the interval's
    method, a note when there is none, and its family (`interval_at`, for tests that invert it).

    The database reading around `estimates_of_units`. A proportion over independent units needs only
    each cell's count and sum, which the database computes (from the views its metrics share, each
    computed once). Where an item recurs within a cell (several seeds), its units are not independent:
    the item is the cluster (`clustered_on_items`; a scenario declaring independent trials turns it off)."""
    cell_ids = plan_cell_ids(con, spec_hash)
    proportions = [m for m in metrics if m.kind == "proportion"]
    with shared_views(con, spec_hash, proportions, params) as views:
        counts = iter(unit_counts(con, spec_hash, proportions, params, views))
    clustered = clustered_cells(con, spec_hash) if clustered_on_items else set()
    rows = []
    for metric in metrics:
        if metric.kind == "proportion":
            by_cell = next(counts)
            estimates = [exact_rate(total, n) for n, total in (by_cell.get(c, (0, 0.0)) for c in cell_ids)]
            if clustered:
                recounted = dict(zip(cell_ids, estimates_of_units(
                    _units(con, spec_hash, metric, params, clustered), metric, cell_ids, seed)))
                estimates = [recounted[c] if c in clustered else e for c, e in zip(cell_ids, estimates)]
        else:
            estimates = estimates_of_units(_units(con, spec_hash, metric, params, clustered), metric, cell_ids, seed)
        rows += [{"cell_id": cell_id, "metric": metric.name, "value": est.value, "low": est.low,
                  "high": est.high, "n": est.n, "method": est.method, "note": est.note, "interval_at": est.interval_at}
                 for cell_id, est in zip(cell_ids, estimates)]
    return pd.DataFrame(rows)


def _units(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric, params: dict | None,
           clustered: set[str]) -> pd.DataFrame:
    """The metric's units with their cluster: the item in `clustered` cells, None elsewhere."""
    if not clustered:
        return unit_values(con, spec_hash, metric, params).assign(cluster=None)
    units = _item_units(con, spec_hash, metric, params)
    return units.assign(cluster=units["item"].where(units["cell_id"].isin(clustered), None))


def pooled_estimate(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric, cell_ids: list[str],
                    seed: int = 0, params: dict | None = None, clustered_on_items: bool = True) -> Estimate:
    """One estimate over the units of several cells (the unit stays the trial), clustered on the item
    when an item recurs among them, as `cell_estimates` does within a cell."""
    units = _item_units(con, spec_hash, metric, params)
    units = units[units["cell_id"].isin(set(cell_ids))]
    items = units["item"]
    recurs = clustered_on_items and items.notna().all() and items.nunique() < len(items)
    return cell_estimate(metric, units["value"].to_numpy(float), seed, "pooled:" + ",".join(sorted(set(cell_ids))),
                         items.to_numpy() if recurs else None)
