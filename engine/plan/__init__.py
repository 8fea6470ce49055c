from engine.plan.compile import Plan, Trial, compile_plan

__all__ = ["Plan", "Trial", "compile_plan"]
