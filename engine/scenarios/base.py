"""What a scenario plug-in provides. The engine knows scenarios only through this interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:
    import duckdb

    from engine.analyze.metrics import Metric
    from engine.execute.context import CallContext
    from engine.plan.compile import Trial
    from engine.spec.load import LoadedSpec
    from engine.spec.schema import StudySpec
    from engine.store.db import StudyStore


@dataclass(frozen=True)
class CallEstimate:
    """Upper-bound call and token counts of one trial for one model, for `plan`."""

    model_key: str
    calls: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class JudgeSubject:
    """One stored response for judges to grade: what was asked and what the model answered."""

    subject_id: str
    request: str
    response: str


@dataclass
class TrialOutcome:
    """Rows for the scenario's own tables, written in the same transaction as the trial."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Scenario(ABC):
    name: ClassVar[str]
    # Bump when the scenario's behaviour changes: it is part of every trial id.
    version: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    # Folder of numbered .sql migrations for the scenario's own tables.
    migrations_dir: ClassVar[Path]
    # Metric names shown in the per-cell headline table, in order.
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    # What one trial is called in prose: (singular, plural).
    unit: ClassVar[tuple[str, str]] = ("trial", "trials")

    @abstractmethod
    def check_design(self, spec: "StudySpec", params: BaseModel) -> None:
        """Raise SpecError(key=...) for factors or settings the scenario would ignore."""

    @abstractmethod
    def trial_inputs(self, spec: "StudySpec", params: BaseModel, cell: dict[str, Any]) -> dict[str, Any]:
        """Everything that determines a trial's outcome apart from the seed (hashed into its id)."""

    def items(self, spec: "StudySpec", params: BaseModel, cell: dict[str, Any]) -> list[dict[str, Any]]:
        """Items played in every cell (e.g. the prompts of a corpus): a trial per cell, item and seed.
        Each item is added to the trial's inputs under 'item'. Default: one trial per cell and seed."""
        return [{}]

    @abstractmethod
    def estimate(self, inputs: dict[str, Any]) -> list[CallEstimate]:
        """Worst-case calls and tokens of one trial."""

    @abstractmethod
    async def run(self, trial: "Trial", ctx: "CallContext") -> TrialOutcome:
        """Play one trial; all model calls go through ctx."""

    @abstractmethod
    def metrics(self) -> list["Metric"]:
        """The scenario's metrics, each one query over the study database."""

    def metric_params(self, spec: "StudySpec") -> dict[str, Any]:
        """Named parameters the metrics' SQL may use (e.g. which judge's verdicts count)."""
        return {}

    def judge_subjects(self, con: "duckdb.DuckDBPyConnection", spec_hash: str) -> list[JudgeSubject]:
        """Finished responses for the study's judges to grade (none for scenarios without judges)."""
        return []

    def ingest(self, store: "StudyStore", loaded: "LoadedSpec") -> str | None:
        """Analysis-only studies: import existing outcomes into the store instead of running models.
        Returns a one-line description of what was imported, or None when there is nothing to import."""
        return None

    def cache_analyses(self, store: "StudyStore", loaded: "LoadedSpec") -> None:
        """Compute the expensive analyses the report will show and store them in the database
        (engine/store/fit_cache.py), while it is writable: after a run, an import or a regrade. The
        report opens the database read-only and reads them instead of refitting. Default: none."""

    def cell_models(self, cell: dict[str, Any]) -> list[str]:
        """Model keys (from the registry) that play in a cell."""
        return [str(cell["model"])] if "model" in cell else []

    def method_settings(self, params: BaseModel) -> list[tuple[str, Any]]:
        """(setting, value) rows for the report's methods table."""
        return [(k, v) for k, v in params.model_dump().items() if isinstance(v, (int, float, str, bool))]

    def method_notes(self, spec: "StudySpec") -> list[str]:
        """Sentences for the methods section: how replies were parsed or judged."""
        return []

    def caveats(self, ctx: Any) -> list[str]:
        """Scenario-specific caveats computed from the data."""
        return []

    def weak_judge_kappa(self, params: BaseModel) -> float:
        """Cohen's kappa against the gold set below which the `judge_validity` section calls a judge
        weak, when the section's `weak_kappa` option is not set."""
        return 0.6

    def judge_reliance(self, spec: "StudySpec", params: BaseModel) -> dict[str, str]:
        """judge_id -> the results that rest on that judge's labels, in prose (e.g. 'the attack success
        rates in this report'); the `judge_validity` section names them when the judge is weak."""
        if spec.primary_judge is None:
            return {}
        return {spec.primary_judge: "the results computed from the primary judge's verdicts"}

    def judge_validity_notes(self, spec: "StudySpec") -> list[str]:
        """Sentences closing the `judge_validity` section (e.g. how the gold sets were made)."""
        return []

    def is_control(self, cell: dict[str, Any]) -> bool:
        """True for baseline/control cells (shown next to, not among, the models under test)."""
        return False

    def describe_cell(self, cell: dict[str, Any], spec: "StudySpec") -> dict[str, str]:
        """Display columns for a design cell (default: the factor levels as they are)."""
        return {name: str(level) for name, level in cell.items()}


def model_inputs(spec: "StudySpec", cell: dict[str, Any]) -> dict[str, Any]:
    """The outcome-determining facts of a cell's model (for trial ids): its id, weights, generation
    settings (a 'temperature' factor overrides the study's)."""
    key = str(cell["model"])
    model = spec.models[key]
    generation = spec.generation.model_dump()
    if "temperature" in cell:
        generation["temperature"] = float(cell["temperature"])
    return {"model_key": key, "litellm_id": model.litellm_id,
            "weights_sha256": model.weights.sha256 if model.weights else None, "generation": generation}


def check_factors(spec: "StudySpec", levels: dict[str, Any], required: tuple[str, ...], scenario: str) -> None:
    """Every design factor is one the scenario knows, with known levels (`levels[factor]` is the
    collection of allowed levels, or None for any), and every required factor is declared."""
    from engine.errors import SpecError

    factors = spec.design.factors
    for factor, values in factors.items():
        key = f"design.factors.{factor}"
        if factor not in levels:
            raise SpecError(f"unknown factor '{factor}' for scenario {scenario} (known: {', '.join(levels)})", key=key)
        known = levels[factor]
        for value in values if known is not None else []:
            if str(value) not in known:
                raise SpecError(f"unknown {factor} '{value}' (known: {', '.join(map(str, known))})", key=key)
    for needed in required:
        if needed not in factors:
            raise SpecError(f"declare the '{needed}' factor (one level is fine)", key="design.factors")
