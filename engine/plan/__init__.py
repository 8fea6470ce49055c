from engine.plan.compile import compile_plan, Plan
from engine.kernel.records import Trial

__all__ = ["Plan", "Trial", "compile_plan"]
