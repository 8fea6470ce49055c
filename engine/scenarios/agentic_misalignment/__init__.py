"""Agentic-misalignment scenario: the scenario, its structural judges and report sections
(registered on import)."""

from engine.scenarios.agentic_misalignment import report, structure
from engine.scenarios.agentic_misalignment.scenario import AgenticMisalignment

__all__ = ["AgenticMisalignment", "report", "structure"]
