"""Judge registry. Built-in judges register by decorator; other packages can add their own through
the `engine.judges` entry-point group without touching this package."""

from __future__ import annotations

from engine.judges.base import ERROR_LABEL, Grade, Judge
from engine.registry import Registry
from engine.spec.schema import JudgeSpec

_REGISTRY: Registry[type[Judge]] = Registry(
    "judge kind", lambda cls: cls.kind, ("engine.judges.llm", "engine.judges.refusal_heuristic"), "engine.judges")
register_judge = _REGISTRY.register
judge_kinds = _REGISTRY.names


def make_judge(judge_id: str, spec: JudgeSpec) -> Judge:
    return _REGISTRY.get(spec.kind)(judge_id, spec)


__all__ = ["ERROR_LABEL", "Grade", "Judge", "judge_kinds", "make_judge", "register_judge"]
