"""Jailbreak scenario: the scenario, its report sections and claim test (registered on import)."""

from engine.scenarios.jailbreak import claims, paired_report, report
from engine.scenarios.jailbreak.scenario import Jailbreak

__all__ = ["Jailbreak", "claims", "paired_report", "report"]
