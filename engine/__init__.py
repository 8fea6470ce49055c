"""LLM behaviour studies: study spec -> plan -> execute -> store -> judge -> analyze -> report.

The public API: the pipeline's functions, and everything a plug-in author needs. The modules
behind it are internal.
"""

from engine.kernel.contracts import (ClaimEstimate, ClaimOptions, ClaimTest, Figure, Judge, Metric, NoOptions,
                                     Rendered, ReportContext, Scenario, Section, check_factors, check_metric)
from engine.kernel.errors import ParseFailure, ProviderError, SpecError
from engine.kernel.plugin_context import (CallContext, JudgeSpecView, LoadedSpecView, ModelEntryView, Reply,
                                          StoreView, StudySpecView)
from engine.kernel.records import CallEstimate, Grade, JudgeSubject, Strict, Trial, TrialOutcome, tokens_for
from engine.kernel.registry import register_claim_test, register_judge, register_scenario, register_section
from engine.kernel.version import __version__
from engine.plan.compile import Plan, compile_plan
from engine.plan.generation import cell_generation, model_inputs
from engine.report.markdown import escape, table
from engine.study import build_report, load_study, regrade_study, run_study

__all__ = ["CallContext", "ReportContext", "Reply", "CallEstimate", "ClaimEstimate", "ClaimOptions", "ClaimTest", "Figure", "Grade", "Judge", "JudgeSubject", "Metric", "NoOptions", "ParseFailure", "Plan",
           "ProviderError", "Rendered",
           "JudgeSpecView", "LoadedSpecView", "ModelEntryView", "StoreView", "StudySpecView", "Scenario", "Section", "SpecError", "Strict", "Trial", "TrialOutcome",
           "__version__", "build_report", "cell_generation", "check_factors", "check_metric", "compile_plan",
           "escape", "load_study", "regrade_study", "model_inputs", "register_claim_test", "register_judge", "register_scenario",
           "register_section", "run_study", "table", "tokens_for"]
