"""The calibration check (issue 21): simulate a study's own design many times and run the exact code the
report uses on each simulated study, to measure what its verdicts and intervals do when the truth is
known.

A simulated study has the design's units (its cells, seeds, items and clusters, from the compiled
plan) and a true mean per unit (`calibration_worlds`: the claim's quantity put at its boundary, or at
its stated effect). Outcomes are drawn with a shared latent per cluster: a unit's latent is
sqrt(icc) z_cluster + sqrt(1 - icc) e (standard normals), a rate's outcome is 1 when Phi(latent) < its
mean (so its probability is exactly the mean) and a mean's value is mean + sd x latent. Units of one
cluster in different cells are correlated as paired units are.

A claim test whose units are not a metric's units frame (a scenario's own, e.g. the jailbreak
scenario's provider claims) plants its own worlds (`Worlds`, from its `calibration_worlds` hook given
the `Design`). Where a claim's quantity is read across models (the provider claims), each simulated
study draws every model's own deviation, a normal random effect on the log-odds scale with SD
`model_sd` (the models a provider makes differ; a stated assumption, `--model-sd`).

Measured, each with its Monte Carlo SE and draw count:
- per claim, its false-support rate (share of "supported" at the boundary; decided alone at its
  one-sided 2.5%: Holm across a report's claims only lowers it) and its power at the stated effect,
  and its 95% interval's coverage of the true value;
- per metric, the per-cell interval's coverage (over the cells, and in the worst cell) and half-width;
- per paired-contrast section, the contrasts' interval coverage of the true difference."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import special

from engine.analyze import metrics as cell_metrics
from engine.analyze.calibration_worlds import Planted, claim_truths, means, truth
from engine.analyze.claim_stats import FAMILYWISE, decide_claims
from engine.analyze.claim_units import ClaimUnits, ModelFacts
from engine.analyze.paired import contrasts_of
from engine.kernel.contracts import ClaimEstimate, Metric
from engine.kernel.hashing import derived_seed

COVERAGE_TARGET = 0.93  # issue 21: every printed 95% interval covers at least this often
MODEL_SD = 0.5  # assumed SD of a model's log-odds around its provider's (issue 21's setting; --model-sd)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class World:
    """One planted truth of a claim: `how`, in words, and `draw(rng, seed)`: one simulated study's units
    (what the claim test's `from_units` reads, its resampling seeded by `seed`) and the claim
    quantity's true value in it (None: no single true value to cover)."""

    how: str
    draw: Callable[[np.random.Generator, int], tuple[Any, float | None]]
    clipped: bool = False


@dataclass(frozen=True)
class Worlds:
    """Where a claim is simulated: its boundary worlds (the worst one's false support is printed) and
    the world where it holds (None: no power figure, `power_note` says why)."""

    nulls: list[World]
    effect: World | None
    power_note: str = ""
    basis: str = ""  # what the worlds' design and base rate were taken from, in words (the section lists it)
    measured: bool = False  # whether that base rate was measured on the study's data
    data: Any = None  # what they were drawn from beyond the spec, as JSON (an imported file's SHA-256, a
    # measured base rate): part of a stored calibration's key, so one of other data is never shown


@dataclass(frozen=True)
class Design:
    """What a claim test's `calibration_worlds` hook is given: the study's spec and scenario parameters,
    a metric's planned units (`frame(name)`: trial_id, cell_id, cell, seed, item, cluster, model),
    simulated centre (`centre(name)`: base rate or mean) and whether that centre was measured on the
    study's data (`measured(name)`), the latent intra-cluster correlation and the model random effect's
    SD; and the study database (`con`, None: none yet) with the spec's hash, where a study whose design
    is its data (an analysis-only study's import, which its plan does not hold) reads it."""

    spec: Any
    scenario_params: Any
    frame: Callable[[str], pd.DataFrame]
    centre: Callable[[str], float]
    icc: float
    model_sd: float = MODEL_SD
    measured: Callable[[str], bool] = lambda name: False
    con: Any = None
    spec_hash: str = ""


@dataclass(frozen=True)
class ClaimCase:
    """One claim as a simulation needs it: its design units (`frame`: trial_id, cell, seed, item,
    cluster, model), the metric's centre (base rate or mean) and SD, and the claim test's own estimate
    from a units frame; `reason` when it cannot be simulated."""

    claim: str
    test: str
    options: Any
    estimate: Callable[[ClaimUnits], ClaimEstimate] | None = None
    frame: pd.DataFrame | None = None
    metric: Metric | None = None
    centre: float = 0.5
    sd: float = 1.0
    models: dict[str, ModelFacts] = field(default_factory=dict)
    counted: str = "units"
    reason: str | None = None
    worlds: Worlds | None = None  # planted by the claim test itself (its calibration_worlds hook)
    code: tuple[str, ...] = ()  # source files the claim's figures depend on beyond the engine's own (its plug-in's)


@dataclass(frozen=True)
class CellCase:
    """One metric's per-cell intervals: its design units (`frame`: cell_id, cluster, and `item_cluster`,
    the item where one recurs within a cell, else None), each unit's true mean and SD."""

    metric: Metric
    frame: pd.DataFrame
    mu: np.ndarray
    sd: np.ndarray
    planned_halfwidth: float | None = None  # what the plan states for this metric's cells (their mean)
    target: float | None = None  # design.target_halfwidth


@dataclass(frozen=True)
class ContrastCase:
    """One paired_contrasts section's model contrasts: `units` as engine.analyze.paired.keyed_units
    makes them, each unit's true mean and SD."""

    metric: Metric
    units: pd.DataFrame
    mu: np.ndarray
    sd: np.ndarray
    model_factors: tuple[str, ...]
    cluster: str
    label: str


@dataclass(frozen=True)
class Setup:
    claims: list[ClaimCase]
    cells: list[CellCase]
    contrasts: list[ContrastCase]
    icc: float
    basis: list[str]  # where each metric's base rate / SD came from, in words
    measured: bool = False  # whether any base rate or SD comes from the study's data
    model_sd: float = MODEL_SD


def figure(hits: list[float] | np.ndarray) -> dict[str, float] | None:
    """A share (or mean) over draws with its Monte Carlo SE; None without draws."""
    x = np.asarray(hits, float)
    x = x[~np.isnan(x)]
    if not len(x):
        return None
    value = float(x.mean())
    spread = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if set(np.unique(x)) <= {0.0, 1.0}:
        spread = math.sqrt(max(value * (1 - value), 0.0))
    return {"value": value, "se": spread / math.sqrt(len(x)), "draws": int(len(x))}


def outcomes(rng: np.random.Generator, mu: np.ndarray, sd: np.ndarray | float, clusters: np.ndarray, icc: float,
             proportion: bool) -> np.ndarray:
    """One simulated study's values of units with true means `mu`, correlated within `clusters`."""
    codes, n_clusters = pd.factorize(clusters)[0], len(set(clusters))
    latent = math.sqrt(icc) * rng.standard_normal(max(n_clusters, 1))[codes] + \
        math.sqrt(1 - icc) * rng.standard_normal(len(mu))
    if proportion:
        return (special.ndtr(latent) < mu).astype(float)
    return mu + sd * latent


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    return np.random.default_rng(derived_seed(seed, "calibration", *parts))


# ------------------------------------------------------------------------------------------ claims

def _metric_world(case: ClaimCase, planted: Planted, icc: float) -> World | None:
    """A metric claim's world (engine/analyze/calibration_worlds.py): every unit's true mean fixed, the
    units drawn around it."""
    assert case.frame is not None and case.metric is not None
    params = {m: f.params_b for m, f in case.models.items()}
    world = means(case.test, case.options, case.frame, case.centre, planted, case.metric.kind == "proportion",
                  params, {m: f.family for m, f in case.models.items()})
    if world is None:
        return None
    mu, clipped = world
    true = truth(case.test, case.options, case.frame, mu, params, planted.value)
    proportion, clusters = case.metric.kind == "proportion", case.frame["cluster"].to_numpy()

    design = ClaimUnits(case.frame, case.metric, 0, case.models, case.counted)

    def draw(rng: np.random.Generator, seed: int) -> tuple[ClaimUnits, float]:
        return design.with_values(outcomes(rng, mu, case.sd, clusters, icc, proportion), seed), true
    return World(planted.how, draw, clipped)


def claim_worlds(case: ClaimCase, icc: float) -> Worlds | str:
    """The claim's worlds, or why it has none."""
    if case.worlds is not None:
        return case.worlds
    if case.reason is not None or case.estimate is None:
        return case.reason or "not simulated"
    nulls, effect, _ = _truths(case)
    built = [_metric_world(case, p, icc) for p in nulls]
    if any(w is None for w in built):
        return f"no simulation world for claim test '{case.test}' yet"
    return Worlds(built, None if effect is None else _metric_world(case, effect, icc),  # type: ignore[arg-type]
                  "" if effect is not None else "the claim states no effect (give `effect` for a power figure)")


def _claim_world(case: ClaimCase, world: World, draws: int, seed: int, tag: str, progress: Progress) -> dict[str, Any]:
    assert case.estimate is not None
    supported, covered, decided, stated, truths = [], [], [], [], []
    reasons: dict[str, int] = {}
    rng = _rng(seed, case.claim, tag)
    for draw in range(draws):
        units, true = world.draw(rng, derived_seed(seed, "claim", case.claim, tag, draw))
        est = case.estimate(units)
        decision = decide_claims([(case.options, est)])[0]
        supported.append(decision.verdict == "supported")
        decided.append(decision.step > 0)
        if decision.step == 0:
            reasons[decision.why] = reasons.get(decision.why, 0) + 1
        stated.append(decision.power)
        if true is not None:
            truths.append(true)
        if true is not None and not est.parts and math.isfinite(est.low) and math.isfinite(est.high):
            covered.append(float(est.low <= true <= est.high))
        progress(1)
    common = max(reasons, key=reasons.get) if reasons else None
    return {"how": world.how, "truth": float(np.mean(truths)) if truths else None, "supported": figure(supported),
            "decided": figure(decided), "coverage": figure(covered), "stated_power": figure(stated),
            "clipped": world.clipped, "no_verdict_reason": common}


def calibrate_claim(case: ClaimCase, draws: int, seed: int, icc: float, progress: Progress) -> dict[str, Any]:
    """False support at each boundary (the worst one printed) and power at the stated effect."""
    out: dict[str, Any] = {"claim": case.claim, "test": case.test, "kind": getattr(case.options, "kind", "—"),
                           "nominal": FAMILYWISE}
    worlds = claim_worlds(case, icc)
    if isinstance(worlds, str):
        progress(draws * _claim_steps(case, icc))
        return {**out, "reason": worlds}
    results = [_claim_world(case, w, draws, seed, f"null {w.how}", progress) for w in worlds.nulls]
    out["null"] = max(results, key=lambda w: w["supported"]["value"])
    out["nulls"] = len(results)
    out["boundaries"] = [{"how": r["how"], "supported": r["supported"]} for r in results]
    out["null_how"] = out["null"]["how"]
    if worlds.effect is None:
        progress(draws)
        out["power_note"] = worlds.power_note
    else:
        out["effect"] = _claim_world(case, worlds.effect, draws, seed, f"effect {worlds.effect.how}", progress)
    return out


def _claim_steps(case: ClaimCase, icc: float) -> int:
    if case.worlds is not None:
        return len(case.worlds.nulls) + 1
    if case.reason is not None or case.estimate is None:
        return 2
    return len(_truths(case)[0]) + 1


def _truths(case: ClaimCase) -> tuple[list[Planted], Planted | None, str]:
    return claim_truths(case.test, case.options, 0.0, case.frame, centre=case.centre, sd=case.sd,
                        proportion=case.metric is None or case.metric.kind == "proportion")


# --------------------------------------------------------------------------------- cell intervals

def cell_interval(metric: Metric, values: np.ndarray, clusters: np.ndarray | None, seed: int,
                  cell_id: str) -> tuple[float, float]:
    """A cell's printed 95% interval, by the report's own function (engine.analyze.metrics.cell_estimate:
    the few-cluster intervals of issue 21)."""
    est = cell_metrics.cell_estimate(metric, values, seed, cell_id, clusters)
    return float(est.low), float(est.high)


def calibrate_cells(case: CellCase, draws: int, seed: int, icc: float, progress: Progress) -> dict[str, Any]:
    proportion = case.metric.kind == "proportion"
    cells = list(dict.fromkeys(case.frame["cell_id"]))
    index = {c: np.flatnonzero(case.frame["cell_id"].to_numpy() == c) for c in cells}
    items = case.frame["item_cluster"].to_numpy()
    rng = _rng(seed, "cells", case.metric.name)
    share, per_cell, widths = [], {c: [] for c in cells}, []
    for draw in range(draws):
        values = outcomes(rng, case.mu, case.sd, case.frame["cluster"].to_numpy(), icc, proportion)
        hits, drawn = [], []
        for c in cells:
            rows = index[c]
            clusters = items[rows] if items[rows[0]] is not None else None
            low, high = cell_interval(case.metric, values[rows], clusters, derived_seed(seed, "cell", draw), c)
            if math.isfinite(low) and math.isfinite(high):
                hit = float(low <= case.mu[rows].mean() <= high)
                hits.append(hit)
                per_cell[c].append(hit)
                drawn.append((high - low) / 2)
        share.append(float(np.mean(hits)) if hits else math.nan)
        widths.append(float(np.mean(drawn)) if drawn else math.nan)
        progress(1)
    worst = min((figure(v) for v in per_cell.values() if v), key=lambda f: f["value"], default=None)
    w = np.asarray(widths)
    return {"metric": case.metric.name, "label": case.metric.label, "kind": case.metric.kind, "cells": len(cells),
            "coverage": figure(share), "worst_cell": worst,
            "halfwidth": ({**figure(w), "q90": float(np.nanquantile(w, 0.9))} if np.isfinite(w).any() else None),
            "planned_halfwidth": case.planned_halfwidth, "target": case.target}


# -------------------------------------------------------------------------------- paired contrasts

def calibrate_contrasts(case: ContrastCase, draws: int, seed: int, icc: float, progress: Progress) -> dict[str, Any]:
    proportion = case.metric.kind == "proportion"
    units = case.units.reset_index(drop=True)
    mu = pd.Series(case.mu)
    rng = _rng(seed, "contrasts", case.label)
    share, missing, count = [], [], 0
    for draw in range(draws):
        frame = units.assign(value=outcomes(rng, case.mu, case.sd, units["cluster"].to_numpy(), icc, proportion))
        found = contrasts_of(frame, case.metric, case.model_factors, case.cluster, "item",
                             derived_seed(seed, "contrasts", draw))
        hits, gone = [], []
        for c in found.contrasts:
            scope = units if c.condition is None else units[units["condition"] == c.condition]
            a, b = scope["model"] == c.model_a, scope["model"] == c.model_b
            true = float(mu[scope.index[a]].mean() - mu[scope.index[b]].mean())
            d = c.difference
            ok = math.isfinite(d.low) and math.isfinite(d.high)
            gone.append(float(not ok))
            if ok:
                hits.append(float(d.low <= true <= d.high))
        count = len(found.contrasts)
        share.append(float(np.mean(hits)) if hits else math.nan)
        missing.append(float(np.mean(gone)) if gone else math.nan)
        progress(1)
    return {"label": case.label, "metric": case.metric.name, "contrasts": count, "coverage": figure(share),
            "no_interval": figure(missing)}


# ------------------------------------------------------------------------------------------- all

def steps(setup: Setup, draws: int) -> int:
    """How many simulated studies `calibrate` runs (for a progress bar)."""
    per_claim = sum(_claim_steps(c, setup.icc) for c in setup.claims)
    return draws * (per_claim + len(setup.cells) + len(setup.contrasts))


def calibrate(setup: Setup, draws: int, seed: int, progress: Progress = lambda n: None) -> dict[str, Any]:
    """Every claim's false support and power, every interval type's coverage, the cells' half-widths."""
    return {"draws": draws, "seed": seed, "icc": setup.icc, "model_sd": setup.model_sd, "basis": setup.basis,
            "claims": [calibrate_claim(c, draws, seed, setup.icc, progress) for c in setup.claims],
            "cells": [calibrate_cells(c, draws, seed, setup.icc, progress) for c in setup.cells],
            "contrasts": [calibrate_contrasts(c, draws, seed, setup.icc, progress) for c in setup.contrasts],
            "coverage_target": COVERAGE_TARGET}
