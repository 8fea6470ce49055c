"""What a plan costs before it runs: calls, tokens and USD per model, the trials' own and one grading
of every planned trace and gold item by each judge that calls a model (worst case). `plan` prints it;
the report's precision section scales it to the seeds a target half-width needs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from engine.judging.catalog import judge_models, make_judges
from engine.judging.gold import load_gold
from engine.kernel.contracts import Judge
from engine.kernel.records import CallEstimate
from engine.plan.compile import Plan


@dataclass(frozen=True)
class PlanEstimate:
    cells: int
    trials: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    usd: float
    per_model: dict[str, dict[str, float]]


def judge_estimates(plan: Plan, judges: list[Judge]) -> list[CallEstimate]:
    """One grading of every planned trace and gold item by each judge that calls a model."""
    estimates = [j.estimate(len(plan.trials) + len(load_gold(j.spec.rubric))) for j in judges]
    return [e for e in estimates if e is not None]


def estimate_plan(plan: Plan) -> PlanEstimate:
    judges = make_judges(plan.loaded.spec)
    models = {**plan.loaded.spec.models, **judge_models(judges)}
    per_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in [*plan.estimates(), *judge_estimates(plan, judges)]:
        row = per_model[e.model_key]
        row["calls"] += e.calls
        row["prompt_tokens"] += e.prompt_tokens
        row["completion_tokens"] += e.completion_tokens
        row["usd"] += models[e.model_key].price.cost(e.prompt_tokens, e.completion_tokens)
    total = lambda k: sum(r[k] for r in per_model.values())  # noqa: E731
    return PlanEstimate(len(plan.cells), len(plan.trials), int(total("calls")), int(total("prompt_tokens")),
                        int(total("completion_tokens")), float(total("usd")),
                        {k: dict(v) for k, v in per_model.items()})
