"""Escalation wargame scenario: the scenario, its report sections (registered on import)."""

from engine.scenarios.escalation import fog_report, report
from engine.scenarios.escalation.scenario import Escalation

__all__ = ["Escalation", "fog_report", "report"]
