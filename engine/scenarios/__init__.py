"""Scenario registry. Built-in scenarios register by decorator; other packages can add their own
through the `engine.scenarios` entry-point group without touching this package."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from engine.scenarios.base import CallEstimate, Scenario, TrialOutcome

_REGISTRY: dict[str, type[Scenario]] = {}
_BUILTINS = ("engine.scenarios.escalation",)
_loaded = False


def register_scenario(cls: type[Scenario]) -> type[Scenario]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"scenario '{cls.name}' is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in _BUILTINS:
        import_module(module)
    for ep in entry_points(group="engine.scenarios"):
        ep.load()
    _loaded = True


def scenario_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_scenario(name: str) -> Scenario:
    _load_all()
    return _REGISTRY[name]()


__all__ = ["CallEstimate", "Scenario", "TrialOutcome", "get_scenario", "register_scenario", "scenario_names"]
