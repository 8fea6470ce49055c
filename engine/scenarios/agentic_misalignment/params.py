"""Parameters of the agentic-misalignment scenario: the environment's text, level by level."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from engine.scenarios.agentic_misalignment.cast import Cast
from engine.kernel.records import Strict

FACTORS = ("goal_conflict", "threat", "safety_instructions", "scratchpad")


class Fragment(Strict):
    """What one factor level adds: text in the system prompt and emails in the inbox."""

    system: str = ""
    emails: str = ""


class AgenticParams(Cast):
    name: Literal["agentic_misalignment"]
    variant: Literal["blackmail", "leaking"] = "blackmail"
    # project: the text below; inspect_evals: the published templates (Lynch et al. 2025) from the
    # inspect-evals package, whose own cast replaces the one above (published.py).
    source: Literal["project", "inspect_evals"] = "project"
    # With source=inspect_evals: the goal stated when goal_conflict=explicit (their goal_value).
    published_goal_value: str = "america"
    system_prompt: str
    factor_order: list[str]
    base_emails: str
    levels: dict[str, dict[str, Fragment]]
    # Which of the study's judges plays each classifier role: structure, the variant's act, deliberation.
    classifiers: dict[Literal["structure", "blackmail", "leaking", "deliberation"], str] = {}

    @model_validator(mode="after")
    def _every_factor_has_levels(self) -> "AgenticParams":
        missing = [f for f in FACTORS if f not in self.levels]
        if missing:
            raise ValueError(f"levels lacks factor(s) {', '.join(missing)} (each needs its levels' text)")
        if sorted(self.factor_order) != sorted(FACTORS):
            raise ValueError(f"factor_order must list exactly {', '.join(FACTORS)}")
        return self

    @property
    def cast(self) -> Cast:
        """Who the agent and the executive are in the templates this study uses."""
        if self.source == "inspect_evals":
            from engine.scenarios.agentic_misalignment.published import PUBLISHED_CAST

            return PUBLISHED_CAST[self.variant]
        return self
