"""Judge registry. Built-in judges are listed here by name; other packages add their own with
`register_judge` or through the `engine.judges` entry-point group without touching this package."""

from __future__ import annotations

from collections.abc import Iterable

from engine.judges.base import Judge
from engine.registry import Registry
from engine.spec.schema import JudgeSpec, ModelEntry

_REGISTRY: Registry[type[Judge]] = Registry(
    "judge kind", lambda cls: cls.kind,
    ("engine.judges.llm:LLMJudge", "engine.judges.refusal_heuristic:RefusalHeuristic"), "engine.judges")
register_judge = _REGISTRY.register
judge_kinds = _REGISTRY.names


def make_judge(judge_id: str, spec: JudgeSpec) -> Judge:
    return _REGISTRY.get(spec.kind)(judge_id, spec)


def make_judges(judges: dict[str, JudgeSpec]) -> list[Judge]:
    """A study's judges, in the order its spec lists them."""
    return [make_judge(judge_id, spec) for judge_id, spec in judges.items()]


def judge_models(judges: Iterable[Judge]) -> dict[str, ModelEntry]:
    """The models these judges call, under the keys the gateway knows them by."""
    return {key: model for judge in judges for key, model in judge.models().items()}
