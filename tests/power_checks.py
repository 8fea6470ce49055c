"""What `plan` states about a comparison, and the check that its stated MDD has its power when the
design is simulated with the report's own procedure (tests/plan/test_power_holds.py and the scenarios'
tests)."""

from __future__ import annotations

import math

from engine import compile_plan, load_study
from engine.analyze.design_power import plan_precision
from engine.analyze.power_sim import simulate_power
from engine.analyze.report_power import Layout
from engine.plan.power import PER_STUDY_DRAWS, PLAN_DRAWS, POWER, centred_arms

PLAN_SE = math.sqrt(POWER * (1 - POWER) / PLAN_DRAWS)  # a plan-time simulated power's own MC error
STUDY_SE = math.sqrt(POWER * (1 - POWER) / PER_STUDY_DRAWS)  # the same, simulated a study at a time


def precision(study: str, *overrides: str):
    return plan_precision(compile_plan(load_study(study, ["store.path=/nonexistent/x.duckdb", *overrides])), None)


def row(pp, family: str, metric: str):
    found = pp.comparisons[(pp.comparisons.family == family) & (pp.comparisons.metric == metric)]
    assert len(found) == 1, pp.comparisons
    return found.iloc[0]


def layout_of(r) -> Layout:
    return Layout(int(r.n), int(r.clusters), bool(r.paired))


def assert_power_holds(r, draws: int, seed: int, *, icc: float = 0.1) -> None:
    """The stated MDD, simulated at the arms it is stated for (centred on 50%), is detected with 80%
    power within Monte Carlo error."""
    mdd = float(r.mdd_low)
    assert mdd == float(r.mdd_high)
    if r.kind == "proportion":
        sim = simulate_power(layout_of(r), "proportion", *centred_arms(0.5, mdd), icc=icc, draws=draws, seed=seed)
    else:
        sim = simulate_power(layout_of(r), "mean", 0.0, mdd, sd=1.0, icc=icc, draws=draws, seed=seed)
    plan_se = (PLAN_SE if r.method.startswith(f"{PLAN_DRAWS:,} simulated")
               else STUDY_SE if r.method.startswith(f"{PER_STUDY_DRAWS:,} simulated") else 0.0)
    tolerance = 3 * math.hypot(sim.se, plan_se)
    print(f"{r.family} / {r.label}: {r.n} in {r.clusters} clusters, stated MDD {mdd:.4f} ({r.method}); "
          f"simulated power {sim}; tolerance ±{tolerance:.4f}")
    assert abs(sim.value - POWER) <= tolerance

