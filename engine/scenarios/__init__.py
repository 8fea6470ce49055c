"""Scenario registry. Built-in scenarios are listed here by name (they import nothing of it); other
packages add their own with `register_scenario` or through the `engine.scenarios` entry-point group."""

from __future__ import annotations

from engine.registry import Registry
from engine.scenarios.base import CallEstimate, JudgeSubject, Scenario, TrialOutcome

_REGISTRY: Registry[type[Scenario]] = Registry(
    "scenario", lambda cls: cls.name,
    ("engine.scenarios.escalation:Escalation", "engine.scenarios.jailbreak:Jailbreak",
     "engine.scenarios.agentic_misalignment:AgenticMisalignment"),
    "engine.scenarios")
register_scenario = _REGISTRY.register
scenario_names = _REGISTRY.names


def get_scenario(name: str) -> Scenario:
    return _REGISTRY.get(name)()


__all__ = ["CallEstimate", "JudgeSubject", "Scenario", "TrialOutcome", "get_scenario", "register_scenario",
           "scenario_names"]
