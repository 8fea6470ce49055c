"""Jailbreak scenario: the scenario, its report sections (registered on import)."""

from engine.scenarios.jailbreak import report
from engine.scenarios.jailbreak.scenario import Jailbreak

__all__ = ["Jailbreak", "report"]
