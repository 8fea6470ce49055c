"""Scenario registry. Built-in scenarios register by decorator; other packages can add their own
through the `engine.scenarios` entry-point group without touching this package."""

from __future__ import annotations

from engine.registry import Registry
from engine.scenarios.base import CallEstimate, JudgeSubject, Scenario, TrialOutcome

_REGISTRY: Registry[type[Scenario]] = Registry(
    "scenario", lambda cls: cls.name,
    ("engine.scenarios.escalation", "engine.scenarios.jailbreak", "engine.scenarios.agentic_misalignment"),
    "engine.scenarios")
register_scenario = _REGISTRY.register
scenario_names = _REGISTRY.names


def get_scenario(name: str) -> Scenario:
    return _REGISTRY.get(name)()


__all__ = ["CallEstimate", "JudgeSubject", "Scenario", "TrialOutcome", "get_scenario", "register_scenario",
           "scenario_names"]
