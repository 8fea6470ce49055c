"""Spec -> plan: one trial per design cell, scenario item and seed, each with a content-hashed id."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from engine.hashing import content_hash
from engine.scenarios import CallEstimate, get_scenario
from engine.spec.load import LoadedSpec


@dataclass(frozen=True)
class Trial:
    trial_id: str
    cell_id: str
    cell: dict[str, Any]
    seed: int
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    loaded: LoadedSpec
    cells: list[dict[str, Any]]
    trials: list[Trial]

    @property
    def scenario_name(self) -> str:
        return self.loaded.spec.scenario["name"]

    def estimates(self) -> list[CallEstimate]:
        scenario = get_scenario(self.scenario_name)
        return [e for t in self.trials for e in scenario.estimate(t.inputs)]


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
    scenario = get_scenario(spec.scenario["name"])
    cells = design_cells(spec.design.factors, spec.design.controls)
    trials = []
    for cell in cells:
        cell_inputs = scenario.trial_inputs(spec, loaded.scenario_params, cell)
        cell_id = content_hash(cell, 12)
        for item in scenario.items(spec, loaded.scenario_params, cell):
            inputs = {**cell_inputs, "item": item} if item else cell_inputs
            for seed in spec.design.seed_list:
                trial_id = content_hash(
                    {"scenario": scenario.name, "version": scenario.version, "inputs": inputs, "seed": seed}
                )
                trials.append(Trial(trial_id, cell_id, cell, seed, inputs))
    return Plan(loaded, cells, trials)
