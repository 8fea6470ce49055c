"""Spec -> plan: one trial per design cell, scenario item and seed, each with a content-hashed id."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from engine.kernel.contracts import Scenario
from engine.kernel.errors import SpecError
from engine.kernel.hashing import content_hash, content_hashes
from engine.kernel.records import CallEstimate, Trial
from engine.spec.load import LoadedSpec


@dataclass(frozen=True)
class Plan:
    loaded: LoadedSpec
    cells: list[dict[str, Any]]
    trials: list[Trial]

    @property
    def scenario(self) -> Scenario:
        return self.loaded.scenario

    @property
    def scenario_name(self) -> str:
        return self.loaded.scenario.name

    def estimates(self) -> list[CallEstimate]:
        """Every trial's estimates, in trial order. A trial's estimate depends on its inputs alone, and
        the trials of one cell and item share one inputs object, so each is estimated once."""
        scenario = self.scenario
        by_inputs: dict[int, list[CallEstimate]] = {}
        out: list[CallEstimate] = []
        for t in self.trials:
            found = by_inputs.get(id(t.inputs))
            if found is None:
                # The plan holds every trial's inputs, so an id is never reused while this runs.
                found = by_inputs[id(t.inputs)] = scenario.estimate(t.inputs)
            out.extend(found)
        return out


def design_cells(factors: dict[str, list], controls: list[dict[str, list]]) -> list[dict[str, Any]]:
    """The crossed factors, then each controls block crossed on its own."""
    cells: list[dict[str, Any]] = []
    for block in (factors, *controls):
        names = list(block)
        for levels in itertools.product(*(block[n] for n in names)):
            cell = dict(zip(names, levels))
            if cell not in cells:
                cells.append(cell)
    return cells


def compile_plan(loaded: LoadedSpec) -> Plan:
    spec = loaded.spec
    scenario = loaded.scenario
    cells = design_cells(spec.design.factors, spec.design.controls)
    seeds = spec.design.seed_list
    trials: list[Trial] = []
    for cell in cells:
        cell_inputs = scenario.trial_inputs(spec, loaded.scenario_params, cell)
        cell_id = content_hash(cell, 12)
        for item in scenario.items(spec, loaded.scenario_params, cell):
            inputs = {**cell_inputs, "item": item} if item else cell_inputs
            # content_hash({"scenario", "version", "inputs", "seed"}) per seed, inputs serialised once.
            trial_ids = content_hashes({"scenario": scenario.name, "version": scenario.version, "inputs": inputs},
                                       "seed", seeds)
            trials.extend(Trial(trial_id, cell_id, cell, seed, inputs) for trial_id, seed in zip(trial_ids, seeds))
    try:
        check_unique(trials)
    except SpecError as exc:
        raise loaded.sources.attributed(exc) from None
    return Plan(loaded, cells, trials)


def check_unique(trials: list[Trial]) -> None:
    """Two cells whose trials have the same inputs (a factor the scenario does not use) would play
    the same trials twice under one id: a spec error, before anything is opened."""
    first: dict[str, Trial] = {}
    for trial in trials:
        seen = first.setdefault(trial.trial_id, trial)
        if seen is not trial:
            raise SpecError(f"design cells {seen.cell} and {trial.cell} give the same trials (seed {trial.seed}): "
                            "a factor that changes nothing in the scenario's inputs", key="design.factors")
