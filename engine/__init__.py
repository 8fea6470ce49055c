"""LLM behaviour studies: study spec -> plan -> execute -> store -> analyze -> report.

Public API; the modules behind it are internal.
"""

from engine.errors import SpecError
from engine.scenarios import Scenario, register_scenario

__version__ = "0.1.0"

__all__ = ["Scenario", "SpecError", "__version__", "register_scenario"]
