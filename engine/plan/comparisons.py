"""The comparisons a design supports, read off the plan: each pair of models within a condition
(the cell without its model), and each pair of levels of every other factor, pooled over the rest.

Arms are paired when they see the same items: a pair key is what two trials share when only the
compared factor differs (the rest of the cell, the seed and the item). Trials cluster on the
randomised unit they share: the item when the scenario has items (a prompt under several attacks
and seeds), otherwise the seed (the games or samples of one seed share its random numbers)."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from engine.kernel.records import Trial


Unit = Literal["item", "seed", "trial"]


def randomised_unit(declared: Unit | None, has_items: bool) -> Unit:
    """What trials cluster on: the scenario's declared unit (AnalysisContract.randomised_unit), else
    the item when trials have one, else the seed."""
    return declared or ("item" if has_items else "seed")


def cluster_key(trial: Trial, unit: Unit) -> str:
    if unit == "item":
        return json.dumps(trial.inputs.get("item"), sort_keys=True, default=str)
    return f"seed {trial.seed}" if unit == "seed" else trial.trial_id


def pair_key(trial: Trial, without: str) -> str:
    rest = {k: v for k, v in trial.cell.items() if k != without}
    return json.dumps([rest, trial.seed, trial.inputs.get("item")], sort_keys=True, default=str)


def cell_label(cell: dict[str, Any], without: str | None = None) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items() if k != without) or "all"


@dataclass(frozen=True)
class CellSize:
    cell_id: str
    cell: dict[str, Any]
    n: int
    cluster_size: float  # trials per cluster key within the cell
    clusters: int  # distinct cluster keys within the cell


@dataclass(frozen=True)
class Comparison:
    family: str  # e.g. "models within persona=neutral", "levels of persona"
    factor: str
    first: str
    second: str
    n: int  # units in the smaller arm
    cluster_size: float  # trials per cluster within an arm
    paired: bool  # every unit of one arm has its counterpart in the other
    first_cells: tuple[str, ...]
    second_cells: tuple[str, ...]
    clusters: int = 0  # distinct clusters in the arm with fewer (0: not counted)

    @property
    def label(self) -> str:
        return f"{self.first} vs {self.second}"


def _mean_cluster_size(trials: list[Trial], unit: Unit) -> float:
    counts = Counter(cluster_key(t, unit) for t in trials)
    return len(trials) / len(counts) if counts else 1.0


def _clusters(trials: list[Trial], unit: Unit) -> int:
    return len({cluster_key(t, unit) for t in trials})


def cell_sizes(trials: list[Trial], unit: Unit) -> list[CellSize]:
    by_cell: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        by_cell[t.cell_id].append(t)
    return [CellSize(cid, ts[0].cell, len(ts), _mean_cluster_size(ts, unit), _clusters(ts, unit))
            for cid, ts in by_cell.items()]


def _compare(family: str, factor: str, a: str, b: str, arm_a: list[Trial], arm_b: list[Trial],
             unit: Unit) -> Comparison:
    keys_a = {pair_key(t, factor) for t in arm_a}
    keys_b = {pair_key(t, factor) for t in arm_b}
    return Comparison(family, factor, a, b, min(len(arm_a), len(arm_b)),
                      max(_mean_cluster_size(arm_a, unit), _mean_cluster_size(arm_b, unit)),
                      bool(keys_a) and keys_a == keys_b,
                      tuple(dict.fromkeys(t.cell_id for t in arm_a)), tuple(dict.fromkeys(t.cell_id for t in arm_b)),
                      min(_clusters(arm_a, unit), _clusters(arm_b, unit)))


def model_factor(factors: dict[str, list], models: set[str]) -> str | None:
    """The factor whose levels are the study's models ('model', escalation's 'agent'), if any."""
    for name, levels in factors.items():
        if levels and all(str(level) in models for level in levels):
            return name
    return None


def main_trials(trials: list[Trial], factors: dict[str, list]) -> list[Trial]:
    """The trials of the crossed factors: control cells (extra baselines) are not compared."""
    allowed = {name: {str(level) for level in levels} for name, levels in factors.items()}
    return [t for t in trials if t.cell.keys() == allowed.keys()
            and all(str(t.cell[name]) in levels for name, levels in allowed.items())]


def planned_comparisons(trials: list[Trial], factors: dict[str, list], models_factor: str | None,
                        unit: Unit) -> list[Comparison]:
    """Model pairs within each condition, then level pairs of each other factor (pooled over the
    other factors), on the trials of the crossed factors."""
    trials = main_trials(trials, factors)
    out: list[Comparison] = []
    if models_factor is not None:
        conditions: dict[str, dict[str, list[Trial]]] = defaultdict(lambda: defaultdict(list))
        for t in trials:
            conditions[cell_label(t.cell, models_factor)][str(t.cell[models_factor])].append(t)
        for condition, arms in conditions.items():
            for a, b in itertools.combinations(arms, 2):
                out.append(_compare(f"models within {condition}", models_factor, a, b, arms[a], arms[b], unit))
    for factor, levels in factors.items():
        if factor == models_factor or len(levels) < 2:
            continue
        arms: dict[str, list[Trial]] = defaultdict(list)
        for t in trials:
            arms[str(t.cell[factor])].append(t)
        for a, b in itertools.combinations([str(level) for level in levels], 2):
            out.append(_compare(f"levels of {factor}", factor, a, b, arms[a], arms[b], unit))
    return out
