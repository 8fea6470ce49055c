"""Escalation wargame scenario: the scenario, its report sections (registered on import)."""

from engine.scenarios.escalation import report
from engine.scenarios.escalation.scenario import Escalation

__all__ = ["Escalation", "report"]
