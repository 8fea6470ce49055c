"""Parameters of the agentic-misalignment scenario: the environment's text, level by level."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from engine.spec.schema import Strict

FACTORS = ("goal_conflict", "threat", "safety_instructions", "scratchpad")


class Fragment(Strict):
    """What one factor level adds: text in the system prompt and emails in the inbox."""

    system: str = ""
    emails: str = ""


class AgenticParams(Strict):
    name: Literal["agentic_misalignment"]
    variant: Literal["blackmail"] = "blackmail"
    company: str
    agent_name: str
    executive: str
    executive_email: str
    system_prompt: str
    factor_order: list[str]
    base_emails: str
    levels: dict[str, dict[str, Fragment]]
    # Which of the study's judges plays each classifier role: structure, blackmail, deliberation.
    classifiers: dict[Literal["structure", "blackmail", "deliberation"], str] = {}

    @model_validator(mode="after")
    def _every_factor_has_levels(self) -> "AgenticParams":
        missing = [f for f in FACTORS if f not in self.levels]
        if missing:
            raise ValueError(f"levels lacks factor(s) {', '.join(missing)} (each needs its levels' text)")
        if sorted(self.factor_order) != sorted(FACTORS):
            raise ValueError(f"factor_order must list exactly {', '.join(FACTORS)}")
        return self
