"""A study's judges from its spec, by kind: the engine's own kinds (kinds/), a
scenario's and an installed package's all register with `@register_judge` and are found by the
registry's discovery (engine/kernel/registry.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from engine.kernel.contracts import Judge
from engine.kernel.registry import REGISTRY

if TYPE_CHECKING:
    from engine.spec.schema import JudgeSpec, ModelEntry, StudySpec

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
