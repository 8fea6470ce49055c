"""Judges: the judge contract, the registry and the built-in judges (an LLM judge, a refusal heuristic)."""

from engine.judges.base import ERROR_LABEL, Grade, Judge
from engine.judges.registry import judge_kinds, judge_models, make_judge, make_judges, register_judge

__all__ = ["ERROR_LABEL", "Grade", "Judge", "judge_kinds", "judge_models", "make_judge", "make_judges",
           "register_judge"]
