"""LLM behaviour studies: study spec -> plan -> execute -> store -> judge -> analyze -> report.

The public API: the pipeline's functions, and everything a plug-in author needs. The modules
behind it are internal.
"""

from engine.kernel.contracts import Judge, Metric, Scenario, Section
from engine.kernel.errors import SpecError
from engine.kernel.records import CallEstimate, Grade, JudgeSubject, Strict, Trial, TrialOutcome
from engine.kernel.registry import register_judge, register_scenario, register_section
from engine.kernel.version import __version__
from engine.plan.compile import Plan, compile_plan
from engine.study import build_report, load_study as load_spec, regrade as judge_study, run_study

__all__ = ["CallEstimate", "Grade", "Judge", "JudgeSubject", "Metric", "Plan", "Scenario", "Section", "SpecError",
           "Strict", "Trial", "TrialOutcome", "__version__", "build_report", "compile_plan", "judge_study",
           "load_spec", "register_judge", "register_scenario", "register_section", "run_study"]
