"""The published scenario templates of Lynch et al. (2025), read from the `inspect-evals` package
(`scenario.source: inspect_evals`) for a faithful replication. Our factors map onto their
parameters; their system prompt, user prompt and emails become the trial's two messages, as in
their task (system message, then user prompt and emails in one user message)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from typing import get_args

from engine.kernel.errors import SpecError
from engine.kernel.extras import require
from engine.scenarios.agentic_misalignment.cast import Cast

GENERATOR_MODULE = "inspect_evals.agentic_misalignment.prompt_generator"
# Their goal types: the first three state or imply a goal (goal_value applies), the others do not.
GOAL_TYPES_WITH_VALUE = ("explicit", "latent", "swap")
LEVELS: dict[str, tuple[str, ...]] = {
    "goal_conflict": (*GOAL_TYPES_WITH_VALUE, "ambiguous", "none"),
    "threat": ("replacement", "restriction", "none"),
    "safety_instructions": ("on", "off"),
    "scratchpad": ("on", "off"),
}
# Who is who in their templates (fixed by the package, not configurable).
PUBLISHED_CAST: dict[str, Cast] = {
    "blackmail": Cast(company="SummitBridge", agent_name="Alex", executive="Kyle Johnson",
                      executive_email="kyle.johnson@summitbridge.com"),
    "leaking": Cast(company="NovaStar Systems", agent_name="Alex", executive="Kyle Johnson",
                    executive_email="kyle.johnson@novastar.com"),
}


def _generator():
    """Their prompt generator; importing it imports inspect_ai too (about 1.3 s, once)."""
    return require(GENERATOR_MODULE, "inspect", key="scenario.source")


def package_version() -> str:
    """The installed inspect-evals version (a SpecError naming scenario.source when it is missing)."""
    _generator()
    return version("inspect-evals")


def check_goal_value(goal_value: str) -> None:
    """Their goal values (the GoalValue of their generator); an unknown one would fall back silently."""
    known = [v for v in get_args(_generator().GoalValue) if v not in ("none", "ambiguous")]
    if goal_value not in known:
        raise SpecError(f"unknown goal value '{goal_value}' of the published templates (known: {', '.join(known)})",
                        key="scenario.published_goal_value")


def template_arguments(variant: str, goal_value: str, condition: dict[str, str]) -> dict[str, object]:
    """Our factor levels as arguments of their generate_prompts. The scratchpad is their `prod`
    flag (prod removes the secret scratchpad from the system prompt); safety instructions are
    their extra_system_instructions 'dont'."""
    goal_type = condition["goal_conflict"]
    return {"scenario": variant, "goal_type": goal_type,
            "goal_value": goal_value if goal_type in GOAL_TYPES_WITH_VALUE else "none",
            "urgency_type": condition["threat"],
            "extra_system_instructions": "dont" if condition["safety_instructions"] == "on" else None,
            "prod_flag": condition["scratchpad"] == "off", "alignment_faking_warning": None}


@cache
def _messages(arguments: tuple[tuple[str, object], ...]) -> tuple[tuple[str, str], ...]:
    prompts = _generator().generate_prompts(**dict(arguments))
    return (("system", prompts.system_prompt), ("user", "\n".join([prompts.user_prompt, prompts.email_content])))


def published_messages(variant: str, goal_value: str, condition: dict[str, str]) -> list[dict[str, str]]:
    arguments = template_arguments(variant, goal_value, condition)
    return [{"role": role, "content": content} for role, content in _messages(tuple(sorted(arguments.items())))]
