"""Paired model contrasts: each pair of models compared within each condition and pooled over the
conditions, on the units both saw.

Two trials are a pair when they share the condition (the design cell without the factors that name
the models), the seed and the item (`trials.inputs.item`, e.g. a prompt of a corpus). The cluster a
resampling interval draws is the scenario's `randomised_unit`; by default the item when the trials
have one (an item recurs under every condition and seed), else the seed (its random numbers recur
under every condition). All of it is read from the plan and trials tables: nothing here knows a
scenario."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pandas as pd

from engine.analyze.metrics import unit_values
from engine.analyze.paired_stats import Difference, difference_of, holm, mean_difference, rate_difference
from engine.kernel.contracts import Metric, Scenario
from engine.kernel.hashing import derived_seed
from engine.plan.comparisons import Unit, randomised_unit

Cluster = Unit  # what a resampling interval draws


@dataclass(frozen=True)
class Contrast:
    """Model A minus model B on one metric, in one condition (None: pooled over the conditions).
    Paired rows rest on `n_pairs` matched pairs (of the `n_a` and `n_b` units each model has there:
    units without a partner are left out); unpaired ones on all `n_a` and `n_b` units.
    `a_only`/`b_only` count the pairs where only A (only B) had the event, or, for a mean, where A
    (B) was higher. `clusters` is how many clusters the interval resamples, `clustered` whether one
    of them holds several pairs (or, unpaired, several units of one arm)."""

    model_a: str
    model_b: str
    condition: str | None
    paired: bool
    difference: Difference
    n_pairs: int
    n_a: int
    n_b: int
    a_only: int | None
    b_only: int | None
    clusters: int
    clustered: bool
    holm_p: float = math.nan


@dataclass(frozen=True)
class PairedContrasts:
    metric: Metric
    contrasts: list[Contrast]
    model_factors: tuple[str, ...]   # the factors that name the models in the cells compared
    conditions: list[str]             # condition labels, in plan order
    cluster: Cluster
    item_name: str                    # what an item is called ("item", or its id field's name, e.g. "prompt")
    n_clusters: int                   # distinct clusters over every unit compared
    has_items: bool                   # the trials have items (pairs share one)


def condition_label(condition: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in condition.items()) or "all"


def _item_name(con: duckdb.DuckDBPyConnection, spec_hash: str) -> str:
    """An item's id field names it ('prompt_id' -> 'prompt'); else 'item'."""
    row = con.execute("SELECT json_keys(json_extract(t.inputs, '$.item')) FROM plan p"
                      " JOIN trials t ON t.trial_id = p.trial_id"
                      " WHERE p.spec_hash = $spec_hash AND json_extract(t.inputs, '$.item') IS NOT NULL LIMIT 1",
                      {"spec_hash": spec_hash}).fetchone()
    ids = [k for k in (row[0] if row else []) if k.endswith("_id") and len(k) > 3]
    return ids[0].removesuffix("_id").replace("_", " ") if ids else "item"


def unit_frame(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric,
               params: dict | None = None) -> pd.DataFrame:
    """The metric's units with what pairs and clusters them: trial_id, value, cell (JSON), seed and
    item (a hash of the trial's item; NULL without one)."""
    units = unit_values(con, spec_hash, metric, params)
    meta = con.execute(
        "SELECT p.trial_id, p.cell, p.seed, md5(CAST(json_extract(t.inputs, '$.item') AS VARCHAR)) AS item"
        " FROM plan p JOIN trials t ON t.trial_id = p.trial_id WHERE p.spec_hash = $spec_hash",
        {"spec_hash": spec_hash}).df()
    return units.merge(meta, on="trial_id")


def paired_units(con: duckdb.DuckDBPyConnection, spec_hash: str, scenario: Scenario, metric: Metric,
                 params: dict | None = None, where: dict[str, str] | None = None,
                 models: list[str] | None = None) -> tuple[pd.DataFrame, tuple[str, ...], Cluster]:
    """One row per unit of the metric in a model cell (see `keyed_units`). Control cells, cells
    without a model, and cells `where` leaves out are dropped."""
    frame = unit_frame(con, spec_hash, metric, params)
    rows, factors = [], {}
    for unit in frame.itertuples():
        cell = json.loads(unit.cell)
        if scenario.is_control(cell) or any(str(cell.get(k, "—")) != str(v) for k, v in (where or {}).items()):
            continue
        names = {str(m) for m in scenario.cell_models(cell)}
        model_factors = tuple(k for k, v in cell.items() if str(v) in names)
        if not model_factors:
            continue
        model = " / ".join(str(cell[k]) for k in model_factors)
        if models is not None and not all(str(cell[k]) in models for k in model_factors):
            continue
        factors.update(dict.fromkeys(model_factors))
        condition = {k: v for k, v in cell.items() if k not in model_factors}
        item = unit.item if isinstance(unit.item, str) else ""
        rows.append({"model": model, "condition": condition, "seed": int(unit.seed), "item": item,
                     "value": float(unit.value), "trial_id": unit.trial_id})
    units, cluster = keyed_units(rows, scenario.randomised_unit)
    return units, tuple(factors), cluster


def keyed_units(rows: list[dict], declared: Cluster | None) -> tuple[pd.DataFrame, Cluster]:
    """Units (dicts of model, condition (a dict of factor levels), seed, item ('' without one), value,
    trial_id) as the frame contrasts are drawn from: condition as its label, key (condition, seed
    and item: what a pair shares) and cluster (the randomised unit `declared`, or the default)."""
    # Conditions are named by the factors that vary among the units compared (a level every unit
    # shares, e.g. one fixed by `where`, says nothing about which condition a row is).
    levels: dict[str, set[str]] = {}
    for row in rows:
        for k, v in row["condition"].items():
            levels.setdefault(k, set()).add(json.dumps(v))
    varying = {k for k, seen in levels.items() if len(seen) > 1 or any(k not in r["condition"] for r in rows)}
    for row in rows:
        row["key"] = json.dumps([row["condition"], int(row["seed"]), row["item"]], sort_keys=True)
        row["condition"] = condition_label({k: v for k, v in row["condition"].items() if k in varying})
    out = pd.DataFrame(rows, columns=["model", "condition", "seed", "item", "key", "value", "trial_id"])
    cluster = randomised_unit(declared, bool((out["item"] != "").any()))
    out["cluster"] = {"item": out["item"], "seed": out["seed"].astype(str), "trial": out["key"]}[cluster]
    return out, cluster


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: Metric, seed: int) -> tuple[Difference, dict]:
    """A minus B: paired on the units they share when at least half the smaller arm's units have a
    partner (units without one are left out), else unpaired on all units."""
    va, vb, clusters = shared_units(a, b)
    if len(va) and 2 * len(va) >= min(len(a), len(b)):
        difference, counts = _paired(va, vb, clusters, metric, seed)
        return difference, counts | {"n_a": len(a), "n_b": len(b)}
    return _unpaired(a, b, metric, seed)


def shared_units(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The values of A and of B on the keys both have, in A's order, and A's clusters of them: the inner
    merge on "key". Where both arms' keys are distinct strings (every study's and simulation's), the
    rows are matched by a dictionary instead, which is the same join (pandas keeps the left keys'
    order) at a hundredth of the merge's cost; a simulation calls this once a simulated study."""
    key_a, key_b = a["key"], b["key"]
    if not (pd.api.types.is_string_dtype(key_a) and pd.api.types.is_string_dtype(key_b) and key_a.is_unique
            and key_b.is_unique and not key_a.isna().any() and not key_b.isna().any()):
        merged = a.merge(b, on="key", suffixes=("_a", "_b"))
        return merged["value_a"].to_numpy(), merged["value_b"].to_numpy(), merged["cluster_a"].to_numpy()
    position_b = {key: i for i, key in enumerate(key_b.to_numpy())}
    rows_a, rows_b = [], []
    for i, key in enumerate(key_a.to_numpy()):
        if key in position_b:
            rows_a.append(i)
            rows_b.append(position_b[key])
    return (a["value"].to_numpy()[rows_a], b["value"].to_numpy()[rows_b], a["cluster"].to_numpy()[rows_a])


def _paired(va: np.ndarray, vb: np.ndarray, clusters: np.ndarray, metric: Metric, seed: int
            ) -> tuple[Difference, dict]:
    diff = va - vb
    k = len(np.unique(clusters))
    clustered = k < len(diff)
    counts = {"paired": True, "n_pairs": len(diff), "a_only": int((diff > 0).sum()), "b_only": int((diff < 0).sum()),
              "clusters": k, "clustered": clustered}
    try:
        return paired_difference(va, vb, clusters, metric.kind, seed), counts
    except ValueError as err:
        raise ValueError(f"metric {metric.name}: {err}") from None


def paired_difference(va: np.ndarray, vb: np.ndarray, clusters: np.ndarray, kind: str, seed: int) -> Difference:
    """A - B over pairs (va[i], vb[i]) in `clusters`: a pure function of the units, as the report prints
    it (engine/analyze/paired_stats.py: `rate_difference` for proportions, `mean_difference` for means)."""
    value = float(np.mean(va) - np.mean(vb))
    if kind == "proportion":
        if not np.all(np.isin(np.concatenate([va, vb]), (0, 1))):
            raise ValueError("a proportion has values other than 0 and 1")
        return difference_of(value, *rate_difference(va, vb, clusters))
    return difference_of(value, *mean_difference(va, vb, clusters, seed=seed))


def unpaired_difference(va: np.ndarray, ca: np.ndarray, vb: np.ndarray, cb: np.ndarray, kind: str,
                        seed: int) -> Difference:
    """mean(A) - mean(B) of two independent samples in their own clusters: a pure function of the units."""
    value = float(np.mean(va) - np.mean(vb))
    if kind == "proportion":
        if not np.all(np.isin(np.concatenate([va, vb]), (0, 1))):
            raise ValueError("a proportion has values other than 0 and 1")
        return difference_of(value, *rate_difference(va, vb, ca, cb, paired=False))
    return difference_of(value, *mean_difference(va, vb, ca, cb, paired=False, seed=seed))


def _unpaired(a: pd.DataFrame, b: pd.DataFrame, metric: Metric, seed: int) -> tuple[Difference, dict]:
    va, vb = a["value"].to_numpy(), b["value"].to_numpy()
    ca, cb = a["cluster"].to_numpy(), b["cluster"].to_numpy()
    ka, kb = len(np.unique(ca)), len(np.unique(cb))
    clustered = ka < len(va) or kb < len(vb)
    counts = {"paired": False, "n_pairs": 0, "n_a": len(va), "n_b": len(vb), "a_only": None, "b_only": None,
              "clusters": ka + kb, "clustered": clustered}
    if not len(va) or not len(vb):
        return Difference(math.nan, math.nan, math.nan, math.nan, "—", "—", "no units for one of the models"), counts
    try:
        return unpaired_difference(va, ca, vb, cb, metric.kind, seed), counts
    except ValueError as err:
        raise ValueError(f"metric {metric.name}: {err}") from None


def paired_contrasts(con: duckdb.DuckDBPyConnection, spec_hash: str, scenario: Scenario, metric: Metric,
                     params: dict | None = None, seed: int = 0, where: dict[str, str] | None = None,
                     models: list[str] | None = None, by_condition: bool = True,
                     pooled: bool = True) -> PairedContrasts:
    """The contrasts of the study's own trials (`contrasts_of` their units)."""
    units, model_factors, cluster = paired_units(con, spec_hash, scenario, metric, params, where, models)
    return contrasts_of(units, metric, model_factors, cluster, _item_name(con, spec_hash), seed, by_condition,
                        pooled)


def contrasts_of(units: pd.DataFrame, metric: Metric, model_factors: tuple[str, ...], cluster: Cluster,
                 item_name: str, seed: int = 0, by_condition: bool = True, pooled: bool = True) -> PairedContrasts:
    """Every pair of models (in order of appearance; difference first minus second) within each
    condition (`by_condition`) and pooled over the conditions (`pooled`, when there are several),
    with Holm's correction across every comparison returned. `units` as `keyed_units` makes them."""
    model_keys = list(dict.fromkeys(units["model"]))
    conditions = list(dict.fromkeys(units["condition"]))
    scopes: list[str | None] = list(conditions) if by_condition else []
    if pooled and (len(conditions) > 1 or not by_condition):
        scopes.append(None)
    contrasts = []
    for model_a, model_b in itertools.combinations(model_keys, 2):
        for scope in scopes:
            subset = units if scope is None else units[units["condition"] == scope]
            a, b = subset[subset["model"] == model_a], subset[subset["model"] == model_b]
            if a.empty and b.empty:
                continue
            difference, counts = compare(a, b, metric, derived_seed(seed, "paired", metric.name, model_a, model_b,
                                                                     scope))
            contrasts.append(Contrast(model_a, model_b, scope, difference=difference, **counts))
    adjusted = holm([c.difference.p for c in contrasts])
    contrasts = [replace(c, holm_p=p) for c, p in zip(contrasts, adjusted)]
    return PairedContrasts(metric, contrasts, model_factors, conditions, cluster, item_name,
                           int(units["cluster"].nunique()), bool((units["item"] != "").any()))
