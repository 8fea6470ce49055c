"""What a design's precision depends on, measured on a study database when one exists: each
cell's rate (or mean and SD), the intra-cluster correlation of trials that share a randomised unit,
and the correlation of two models' outcomes on the same item. `engine.plan.power` turns these into
half-widths and minimum detectable differences; without data its assumptions are stated instead."""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from engine.analyze.metrics import _used
from engine.kernel.contracts import Metric
from engine.kernel.records import Trial
from engine.plan.comparisons import Unit, cluster_key, main_trials, pair_key


@dataclass(frozen=True)
class CellValue:
    n: int
    mean: float
    sd: float


@dataclass(frozen=True)
class Observed:
    """A metric's values on the finished trials of a plan: per cell, and pooled over the model cells
    (controls, e.g. scripted policies, say nothing about how models behave)."""

    cells: dict[str, CellValue]
    model_cells: frozenset[str]  # the measured cells that are model cells
    pooled_mean: float  # over the measured model cells (NaN: none)
    pooled_sd: float  # within-cell SD pooled over the measured model cells (NaN: none with two values)
    icc: float | None  # trials sharing a cluster key within a model cell (None: no cluster holds two)
    rho: float | None  # models' outcomes on the same item (None: no item seen by two models)
    n: int  # finished trials with a value, in every cell
    n_model: int  # of them in model cells


def anova_icc(values: np.ndarray, groups: np.ndarray) -> float | None:
    """One-way ANOVA estimator of the intra-class correlation, ICC(1) with unequal group sizes
    (n0 = (N - sum n_i^2 / N) / (k - 1)), clipped to [0, 1]; None without a group of two."""
    frame = pd.DataFrame({"v": np.asarray(values, float), "g": groups})
    sizes = frame.groupby("g")["v"].size()
    k, n = len(sizes), len(frame)
    if k < 2 or (sizes < 2).all():
        return None
    means = frame.groupby("g")["v"].transform("mean")
    ss_within = float(((frame["v"] - means) ** 2).sum())
    ss_between = float(((means - frame["v"].mean()) ** 2).sum())
    ms_between, ms_within = ss_between / (k - 1), ss_within / (n - k)
    n0 = (n - float((sizes ** 2).sum()) / n) / (k - 1)
    denominator = ms_between + (n0 - 1) * ms_within
    if denominator <= 0:
        return None
    return float(min(max((ms_between - ms_within) / denominator, 0.0), 1.0))


def _unit_values(con: duckdb.DuckDBPyConnection, metric: Metric, params: dict | None,
                 trial_ids: set[str]) -> pd.DataFrame:
    """Every stored value of the metric for the plan's trials, under any spec version of the
    database that planned them (trial ids are content hashes: the same trial under a changed spec
    keeps its id)."""
    hashes = [h for (h,) in con.execute("SELECT DISTINCT spec_hash FROM plan").fetchall()]
    sql = metric.unit_sql()
    frames = []
    for spec_hash in hashes:
        frames.append(con.execute(f"SELECT u.trial_id, u.value::DOUBLE AS value FROM ({sql}) u"
                                  " WHERE u.value IS NOT NULL",
                                  {"spec_hash": spec_hash, **_used(sql, params)}).df())
    values = pd.concat(frames) if frames else pd.DataFrame(columns=["trial_id", "value"])
    values = values.drop_duplicates("trial_id")
    return values[values["trial_id"].isin(trial_ids)]


def observe(con: duckdb.DuckDBPyConnection, trials: list[Trial], metric: Metric, params: dict | None,
            models_factor: str | None, unit: Unit, factors: dict[str, list],
            model_cells: set[str] | None = None) -> Observed | None:
    """The metric on the plan's finished trials; None when none has a value yet. `model_cells` (all
    cells when None) are the cells whose figures may stand in for other model cells."""
    by_id = {t.trial_id: t for t in trials}
    values = _unit_values(con, metric, params, set(by_id))
    if values.empty:
        return None
    rows = [by_id[t] for t in values["trial_id"]]
    frame = pd.DataFrame({"value": values["value"].to_numpy(float), "cell": [t.cell_id for t in rows],
                          "cluster": [t.cell_id + "|" + cluster_key(t, unit) for t in rows]})
    cells = {cid: CellValue(len(g), float(g.mean()), float(g.std(ddof=1)) if len(g) > 1 else math.nan)
             for cid, g in frame.groupby("cell")["value"]}
    modelled = frame["cell"].isin(set(cells) if model_cells is None else model_cells).to_numpy()
    centred = frame["value"] - frame.groupby("cell")["value"].transform("mean")
    icc = anova_icc(centred.to_numpy()[modelled], frame["cluster"].to_numpy()[modelled]) if modelled.any() else None
    rho = None
    if models_factor is not None:
        # Pairs of models in the crossed design only: control cells are never compared.
        main = {t.trial_id for t in main_trials(trials, factors)}
        keyed = [(i, pair_key(t, models_factor)) for i, t in enumerate(rows) if t.trial_id in main]
        if keyed:
            index, keys = zip(*keyed)
            rho = anova_icc(centred.to_numpy()[list(index)], np.asarray(keys))
    measured = frozenset(c for c in cells if model_cells is None or c in model_cells)
    model_values = frame["value"][modelled]
    dof = sum(cells[c].n - 1 for c in measured if cells[c].n > 1)
    pooled_sd = (math.sqrt(sum((cells[c].n - 1) * cells[c].sd ** 2 for c in measured if cells[c].n > 1) / dof)
                 if dof else math.nan)
    return Observed(cells, measured, float(model_values.mean()) if len(model_values) else math.nan, pooled_sd,
                    icc, rho, len(frame), len(model_values))
