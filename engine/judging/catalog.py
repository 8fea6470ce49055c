"""A study's judges from its spec: the judge kinds the engine ships are registered here; scenarios
and installed packages register theirs with `@register_judge` (engine.kernel.registry)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from engine.judging.llm import LLMJudge
from engine.judging.refusal_heuristic import RefusalHeuristic
from engine.kernel.contracts import Judge
from engine.kernel.registry import REGISTRY, register_judge

if TYPE_CHECKING:
    from engine.spec.schema import JudgeSpec, ModelEntry, StudySpec

register_judge(LLMJudge)
register_judge(RefusalHeuristic)


def judge_kinds(scenario: str | None = None) -> list[str]:
    """The judge kinds a study of `scenario` may use (all of them, owners named, when None)."""
    entries = REGISTRY.visible("judge", scenario) if scenario else REGISTRY.entries("judge")
    return [e.name if scenario else e.full_name for e in entries]


def judge_class(kind: str, scenario: str | None = None) -> type[Judge] | None:
    """The judge class `kind` names in a study of `scenario` (None if that study may not use it)."""
    entry = REGISTRY.find("judge", kind, scenario)
    if entry is None or (scenario is not None and entry.owner not in ("", scenario)):
        return None
    return entry.obj


def make_judge(judge_id: str, spec: "JudgeSpec", scenario: str | None = None) -> Judge:
    cls = judge_class(spec.kind, scenario)
    if cls is None:
        raise KeyError(spec.kind)
    return cls(judge_id, spec)


def make_judges(spec: "StudySpec") -> list[Judge]:
    """A study's judges, in the order its spec lists them (kinds looked up as its scenario sees them)."""
    return [make_judge(judge_id, judge_spec, spec.scenario.get("name")) for judge_id, judge_spec in spec.judges.items()]


def judge_models(judges: Iterable[Judge]) -> dict[str, "ModelEntry"]:
    """The models these judges call, under the keys the gateway knows them by."""
    return {key: model for judge in judges for key, model in judge.models().items()}
