"""Parameters of the jailbreak scenario (the `scenario` block of a study)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from engine.kernel.records import Strict
from engine.scenarios.jailbreak.analysis.asr import LABELS


class Attack(Strict):
    """An attack technique: a template wrapped around the request ({prompt} marks where)."""

    description: str
    template: str

    @field_validator("template")
    @classmethod
    def _one_placeholder(cls, v: str) -> str:
        if v.count("{prompt}") != 1:
            raise ValueError("an attack template needs '{prompt}' exactly once")
        try:
            v.format(prompt="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template has a placeholder other than {{prompt}}: {exc}; write literal braces "
                             "as {{ and }}") from None
        return v


class Corpus(Strict):
    """Where the behaviours come from: the shipped corpus or a public dataset file the user supplies."""

    format: Literal["builtin", "jailbreakbench", "harmbench", "strongreject", "advbench", "jsonl"] = "builtin"
    path: str | None = None


class Selection(Strict):
    """Which behaviours of the corpus a study plays (the same ones for every model and attack)."""

    categories: list[str] | None = None
    per_category: int | None = Field(default=None, gt=0, description="first N harmful behaviours per category")
    benign: int | None = Field(default=None, ge=0, description="first N benign controls (null: all)")
    ids: list[str] | None = Field(default=None, description="exactly these prompt ids (overrides the rest)")


class TracesFile(Strict):
    """Analysis-only studies: per-trace verdicts from elsewhere, instead of running models."""

    path: str
    format: Literal["auto", "csv", "parquet"] = "auto"


class InspectLabel(Strict):
    """Which score of an Inspect sample is the verdict, and what its values mean."""

    score: str = Field(description="name of the score in each sample's scores (its scorer's name)")
    # null: the values are the labels themselves (COMPLIANCE, REFUSAL, ...), as in logs the engine exports.
    values: dict[str, str] | None = Field(default=None, description="score value, as text (C, I, 1.0, true) -> "
                                                                    "verdict label")

    @field_validator("values")
    @classmethod
    def _known_labels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("map at least one score value to a label")
        unknown = sorted({label for label in v.values() if label not in LABELS})
        if unknown:
            raise ValueError(f"not verdict labels: {', '.join(unknown)} (expected one of {', '.join(LABELS)})")
        return v

    @property
    def mapping(self) -> dict[str, str]:
        return self.values if self.values is not None else {label: label for label in LABELS}


class InspectModel(Strict):
    """What a model's Inspect logs do not say about it (eval logs carry no parameter counts)."""

    provider: str
    params_total_b: float = Field(gt=0, allow_inf_nan=False)
    params_active_b: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    family: str | None = None

    @field_validator("params_total_b", "params_active_b", mode="before")
    @classmethod
    def _a_number_not_a_boolean(cls, v: object) -> object:
        if isinstance(v, bool):  # YAML's true would pass as 1
            raise ValueError("a parameter count in billions is a number, not true/false")
        return v


class InspectLogs(Strict):
    """Analysis-only studies: a folder of Inspect logs (any eval), mapped onto traces. Each field
    names where a trace column comes from: a sample metadata field (dots go into nested values,
    `metadata.` in front is optional), `id` or `epoch` (the sample's), or `eval.<field>` (the log's
    eval spec: eval.model, eval.task, eval.task_args.attack, eval.metadata.provider, ...)."""

    path: str
    label: InspectLabel
    model: str = "eval.model"
    item: str = "id"
    provider: str | None = None
    params_total_b: str | None = None
    params_active_b: str | None = None
    family: str | None = None
    attack: str | None = None
    category: str | None = None
    benign: str | None = None
    # Per model (as `model` reads it): provider and size, for fields the logs do not carry.
    models: dict[str, InspectModel] = {}
    # What the import inflates at most (MB), per entry of a log and over all logs: a hostile .eval can
    # inflate a thousandfold, and Inspect reads sample metadata at about 1 MB/s. Raise for trusted logs.
    max_member_mb: float = Field(default=64, gt=0, allow_inf_nan=False)
    max_total_mb: float = Field(default=256, gt=0, allow_inf_nan=False)


class JailbreakParams(Strict):
    name: Literal["jailbreak"]
    corpus: Corpus = Corpus()
    select: Selection = Selection()
    attacks: dict[str, Attack]
    system_prompt: str | None = None
    traces_file: TracesFile | None = None
    inspect_logs: InspectLogs | None = None
    # The attack-success tier the provider and scale analysis uses (the report shows all three).
    tier: Literal["strict", "broad", "functional"] = "broad"
    # Parameter count for the scale analysis: total, or active for mixture-of-experts models.
    params_basis: Literal["total", "active"] = "total"
    # Providers with fewer evaluable traces are reported as preliminary and left out of the risk ratio.
    min_provider_evaluable: int = Field(default=50, gt=0)
    # A judge whose kappa against the gold set is below this is called weak in the report.
    weak_judge_kappa: float = Field(default=0.6, ge=-1, le=1)

    @property
    def import_path(self) -> str | None:
        """Analysis-only studies: the file or folder the traces come from (None: the study runs models)."""
        source = self.traces_file or self.inspect_logs
        return source.path if source is not None else None
