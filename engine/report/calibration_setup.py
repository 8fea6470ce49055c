"""What the calibration check simulates for one study (engine/analyze/calibration.py): its compiled
plan's units (non-control trials, each metric's own denominator), each metric's base rate or mean and
SD from the study database where it holds finished trials (engine/analyze/design_power.plan_precision,
the numbers the plan's power statements use) or else the spec's stated assumptions, the report's
claims with their registered claim tests, and its paired_contrasts sections.

`setup_digest` keys a stored calibration on everything it depends on: the spec, every simulated mean
and SD (so new data gives a new key), the data a claim test's own worlds were drawn from (an imported
file's SHA-256), and the source of the code it runs."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.analyze import calibration, calibration_worlds, claim_stats, claim_units as cu, inference, metrics
from engine.analyze import paired, paired_stats, stats
from engine.analyze.calibration import CellCase, ClaimCase, ContrastCase, Setup
from engine.analyze.design_power import Assumed, MetricBasis, plan_precision
from engine.kernel.hashing import canonical_json
from engine.kernel.version import __version__
from engine.plan.comparisons import cluster_key, randomised_unit
from engine.plan.compile import Plan
from engine.report import claim_tests
from engine.report.claim_validation import validate_claims

# The code a calibration's numbers come from: a change to any of them makes a stored one stale.
CODE = (calibration, calibration_worlds, claim_stats, cu, inference, metrics, paired, paired_stats, stats, claim_tests)


def _basis(plan: Plan, con) -> dict[str, MetricBasis]:
    spec, scenario = plan.loaded.spec, plan.scenario
    found = {b.metric.name: b for b in plan_precision(plan, con).bases}
    assumed = Assumed(spec.design.assumed_rate, dict(spec.design.assumed_sd), spec.design.assumed_icc)
    return {m.name: found.get(m.name) or MetricBasis(m, None, assumed) for m in scenario.metrics()}


def _cell_mean(basis: MetricBasis, cell_id: str) -> tuple[float, float]:
    """A cell's simulated (mean, SD): a rate's from its basis; a mean's observed mean (0 unmeasured) and
    its basis SD (1: SD units)."""
    b = basis.cell_basis(cell_id)
    if basis.metric.kind == "proportion":
        return float(b.value), 0.0
    seen = basis.observed.cells.get(cell_id) if basis.observed else None
    mean = seen.mean if seen is not None and math.isfinite(seen.mean) else (
        basis.observed.pooled_mean if basis.observed and math.isfinite(basis.observed.pooled_mean) else 0.0)
    return float(mean), float(b.value) if b.value else 1.0


def design_frame(plan: Plan, metric_name: str) -> pd.DataFrame:
    """The metric's planned units in model cells: trial_id, cell_id, cell, seed, item ('' without one),
    cluster (the randomised unit) and model (the cell's one model, '' otherwise)."""
    scenario = plan.scenario
    metric = next(m for m in scenario.metrics() if m.name == metric_name)
    trials = [t for t in plan.trials if not scenario.is_control(t.cell) and scenario.counts_in(metric, t)]
    unit = randomised_unit(scenario.randomised_unit, any("item" in t.inputs for t in trials))
    models = [scenario.cell_models(t.cell) for t in trials]
    return pd.DataFrame({
        "trial_id": [t.trial_id for t in trials], "cell_id": [t.cell_id for t in trials],
        "cell": [dict(t.cell) for t in trials], "seed": [t.seed for t in trials],
        "item": [json.dumps(t.inputs["item"], sort_keys=True, default=str) if "item" in t.inputs else ""
                 for t in trials],
        "cluster": [cluster_key(t, unit) for t in trials],
        "model": [str(m[0]) if len(m) == 1 else "" for m in models]})


def _centre(plan: Plan, basis: MetricBasis) -> float:
    """A metric's simulated centre: the mean over its model cells of each cell's base rate or mean."""
    cells = [_cell_mean(basis, c) for c in dict.fromkeys(design_frame(plan, basis.metric.name)["cell_id"])]
    return float(np.mean([m for m, _ in cells])) if cells else 0.5


def _measured(basis: MetricBasis) -> bool:
    return basis.observed is not None and bool(basis.observed.model_cells)


def _claims(plan: Plan, bases: dict[str, MetricBasis], model_sd: float, con=None) -> list[ClaimCase]:
    spec, scenario = plan.loaded.spec, plan.scenario
    models = {k: cu.ModelFacts(m.params.effective_b, m.family) for k, m in spec.models.items()}
    design = calibration.Design(spec, plan.loaded.scenario_params, lambda name: design_frame(plan, name),
                                lambda name: _centre(plan, bases[name]), spec.design.assumed_icc, model_sd,
                                lambda name: _measured(bases[name]), con, plan.loaded.spec_hash)
    out = []
    for test, options in validate_claims(spec.report.claims, scenario, spec):
        if not isinstance(test, claim_tests.MetricClaimTest):
            worlds = test.calibration_worlds(options, design)
            reason = (worlds if isinstance(worlds, str) else None if worlds is not None else
                      f"claim test '{test.test}' reads its scenario's own inputs and plants no simulated worlds")
            worlds = None if isinstance(worlds, str) else worlds
            code = {inspect.getsourcefile(type(test))} | {inspect.getsourcefile(w.draw) for w in
                                                           ([*worlds.nulls, worlds.effect] if worlds else []) if w}
            out.append(ClaimCase(options.claim, test.test, options, _estimator(test, options), reason=reason,
                                 worlds=worlds, code=tuple(sorted(f for f in code if f))))
            continue
        frame = design_frame(plan, options.metric)
        kept = np.array([cu.matches(c, options.where) for c in frame["cell"]], dtype=bool)
        frame = frame.loc[kept].reset_index(drop=True)  # (a list of no booleans would select no columns)
        basis = bases[options.metric]
        cells = [_cell_mean(basis, c) for c in dict.fromkeys(frame["cell_id"])] or [(0.5, 1.0)]
        centre, sd = float(np.mean([m for m, _ in cells])), float(np.mean([s for _, s in cells]))
        out.append(ClaimCase(options.claim, test.test, options, _estimator(test, options), frame,
                             basis.metric, centre, sd, models, scenario.unit[1],
                             claim_tests.missing_levels(options, spec)))
    return out


def _estimator(test, options):
    return lambda units: test.from_units(units, options)


def _mu(frame: pd.DataFrame, basis: MetricBasis) -> tuple[np.ndarray, np.ndarray]:
    per_cell = {c: _cell_mean(basis, c) for c in dict.fromkeys(frame["cell_id"])}
    return (np.array([per_cell[c][0] for c in frame["cell_id"]]), np.array([per_cell[c][1] for c in frame["cell_id"]]))


def _cells(plan: Plan, bases: dict[str, MetricBasis], names: list[str]) -> list[CellCase]:
    spec, scenario = plan.loaded.spec, plan.scenario
    pp_cells = plan_precision(plan, None).cells if names else pd.DataFrame()
    out = []
    for name in names:
        frame = design_frame(plan, name)
        if frame.empty:
            continue
        recurs = frame.groupby("cell_id")["item"].transform(lambda s: (s != "").all() and s.nunique() < len(s))
        clustered = scenario.randomised_unit != "trial"
        frame["item_cluster"] = [i if r and clustered else None for i, r in zip(frame["item"], recurs)]
        mu, sd = _mu(frame, bases[name])
        planned = pp_cells[pp_cells["metric"] == name]["halfwidth"] if len(pp_cells) else pd.Series(dtype=float)
        out.append(CellCase(bases[name].metric, frame, mu, sd,
                            float(planned.mean()) if len(planned) and planned.notna().any() else None,
                            spec.design.target_halfwidth))
    return out


def _contrasts(plan: Plan, bases: dict[str, MetricBasis]) -> list[ContrastCase]:
    spec, scenario = plan.loaded.spec, plan.scenario
    out = []
    for section in spec.report.sections:
        if section.get("type") != "paired_contrasts":
            continue
        name, where = section["metric"], section.get("where") or {}
        frame = design_frame(plan, name)
        rows, factors = [], {}
        for unit in frame.itertuples():
            names = {str(m) for m in scenario.cell_models(unit.cell)}
            model_factors = tuple(k for k, v in unit.cell.items() if str(v) in names)
            if not model_factors or any(str(unit.cell.get(k, "—")) != str(v) for k, v in where.items()):
                continue
            factors.update(dict.fromkeys(model_factors))
            rows.append({"model": " / ".join(str(unit.cell[k]) for k in model_factors),
                         "condition": {k: v for k, v in unit.cell.items() if k not in model_factors},
                         "seed": int(unit.seed), "item": unit.item, "value": 0.0, "trial_id": unit.trial_id})
        if not rows:
            continue
        units, cluster = paired.keyed_units(rows, scenario.randomised_unit)
        cell_of = dict(zip(frame["trial_id"], frame["cell_id"]))
        mu, sd = _mu(units.assign(cell_id=units["trial_id"].map(cell_of)), bases[name])
        label = f"{bases[name].metric.label}" + (f" ({', '.join(f'{k}={v}' for k, v in where.items())})" if where else "")
        out.append(ContrastCase(bases[name].metric, units, mu, sd, tuple(factors), cluster, label))
    return out


def _reported_metrics(plan: Plan, claims: list[ClaimCase]) -> list[str]:
    """The metrics whose per-cell intervals the calibration checks: the claims' and the paired contrasts'."""
    named = [c.metric.name for c in claims if c.metric is not None]
    named += [s["metric"] for s in plan.loaded.spec.report.sections if s.get("type") == "paired_contrasts"]
    return list(dict.fromkeys(named))


def calibration_setup(plan: Plan, con, model_sd: float = calibration.MODEL_SD) -> Setup:
    """The study's design as the calibration simulates it; `con`: its database (None: none yet);
    `model_sd`: the SD of a model's log-odds about its provider's where claims read across models."""
    bases = _basis(plan, con)
    claims = _claims(plan, bases, model_sd, con)
    used = _reported_metrics(plan, claims)
    planted = [c.worlds for c in claims if c.worlds is not None]  # a claim test's own worlds state their basis
    basis_text = [bases[name].statement() for name in used] + list(dict.fromkeys(w.basis for w in planted if w.basis))
    measured = any(_measured(bases[name]) for name in used) or any(w.measured for w in planted)
    return Setup(claims, _cells(plan, bases, used), _contrasts(plan, bases), plan.loaded.spec.design.assumed_icc,
                 basis_text, measured, model_sd)


ENGINE_ROOT = Path(calibration.__file__).resolve().parents[1]
SCENARIOS = ENGINE_ROOT / "scenarios"


def plugin_sources(path: str) -> dict[str, Path]:
    """Every source file the plug-in defining `path` is made of: a scenario's whole folder, a third-party
    package's whole package (its claim test and worlds call its own analysis modules: an edit to any of
    them changes the numbers); an engine module only itself (the engine's calibration code is `CODE`).
    Keyed by the path inside the plug-in, so a checkout moved elsewhere keeps its key."""
    file = Path(path).resolve()
    if file.is_relative_to(SCENARIOS) and file.parent != SCENARIOS:
        root = SCENARIOS / file.relative_to(SCENARIOS).parts[0]
    elif file.is_relative_to(ENGINE_ROOT):
        return {file.relative_to(ENGINE_ROOT).as_posix(): file}
    else:
        root = file.parent
        while (root.parent / "__init__.py").exists():
            root = root.parent
    if not (root / "__init__.py").exists():
        return {file.name: file}
    return {f"{root.name}/{f.relative_to(root).as_posix()}": f for f in root.rglob("*.py")}


def code_digest(files: tuple[str, ...] = ()) -> str:
    """The engine's calibration code, and the whole plug-in of each of `files` (a claim test's), hashed."""
    digest = hashlib.sha256(__version__.encode())
    for module in CODE:
        digest.update(Path(sys.modules[module.__name__].__file__).read_bytes())
    sources = {name: source for path in files for name, source in plugin_sources(path).items()}
    for name in sorted(sources):
        digest.update(name.encode())
        digest.update(sources[name].read_bytes())
    return digest.hexdigest()


def setup_digest(spec_hash: str, setup: Setup) -> str:
    """What a stored calibration depends on, hashed: the spec, each claim's options (the report's claims
    are not part of the spec's identity), every simulated mean and SD, the data a claim test's own
    worlds were drawn from (an imported file's SHA-256: a path's contents are not part of the spec's
    identity either), the ICC, and the code."""
    parts: dict[str, Any] = {"spec": spec_hash, "icc": setup.icc, "model_sd": setup.model_sd, "basis": setup.basis,
                             "code": code_digest(tuple(sorted({f for c in setup.claims for f in c.code}))),
                             "claims": [[c.options.model_dump(mode="json"), c.centre, c.sd,
                                         c.worlds.data if c.worlds is not None else None] for c in setup.claims],
                             "cells": [[c.metric.name, c.mu.tolist(), c.sd.tolist()] for c in setup.cells],
                             "contrasts": [[c.label, c.mu.tolist(), c.sd.tolist()] for c in setup.contrasts]}
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()
