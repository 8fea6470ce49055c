"""The engine's claim tests, for any scenario's metrics: a difference between two conditions
(paired on the items and seeds they share), a trend in model size, an interaction (an outcome
that needs several conditions together), and a relative reduction."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import test_proportions_2indep

from engine.analyze.claim_stats import trend_across_models
from engine.analyze.paired import compare, unit_frame
from engine.analyze.stats import relative_reduction
from engine.kernel.contracts import ClaimEstimate, ClaimOptions, ClaimTest, Scenario, check_metric
from engine.kernel.errors import SpecError
from engine.kernel.hashing import derived_seed
from engine.kernel.registry import register_claim_test
from engine.plan.comparisons import randomised_unit

Levels = dict[str, Any]


class MetricClaim(ClaimOptions):
    metric: str
    where: Levels = {}  # the cells the claim is about (factor: level)


LEVEL_FIELDS = ("where", "a", "b", "present", "absent", "control", "treated")


def check_claim_levels(options: MetricClaim, scenario: Scenario, spec, key: str) -> None:
    """The metric exists. The factor levels a claim names are checked by engine/checks.py, which
    knows whether the command line narrowed the design (a quick run leaves such a claim unresolved)."""
    check_metric(options.metric, scenario, f"{key}.metric")


def missing_level(options: ClaimOptions, spec) -> tuple[str, str] | None:
    """A factor level the claim names that the design lacks: (its key in the claim, e.g. 'a.attack',
    and why the design cannot decide the claim); None when the design has them all."""
    known = {**spec.design.factors, **{k: v for block in spec.design.controls for k, v in block.items()}}
    for name in LEVEL_FIELDS:
        for factor, level in (getattr(options, name, None) or {}).items():
            if factor not in known:
                return f"{name}.{factor}", f"the design has no factor '{factor}' (factors: {', '.join(known)})"
            if str(level) not in {str(v) for v in known[factor]}:
                return f"{name}.{factor}", (f"the design has no cells with {factor}={level} (levels: "
                                            f"{', '.join(map(str, known[factor]))})")
    return None


def missing_levels(options: MetricClaim, spec) -> str | None:
    """Why the design cannot decide the claim: a factor level it names that the design lacks."""
    missing = missing_level(options, spec)
    return missing[1] if missing else None


def _metric_kind(options: MetricClaim, scenario: Scenario) -> str:
    return next(m.kind for m in scenario.metrics() if m.name == options.metric)


def _frame(ctx, options: MetricClaim) -> pd.DataFrame:
    """Units of the claim's metric in the cells `where` selects (control cells left out), with the
    cell as a dict and the cluster the scenario resamples."""
    metric = ctx.metrics[options.metric]
    frame = unit_frame(ctx.con, ctx.spec_hash, metric, ctx.scenario.metric_params(ctx.spec))
    frame["cell"] = frame["cell"].map(json.loads)
    frame = _rows(frame, lambda c: not ctx.scenario.is_control(c) and _matches(c, options.where))
    frame["item"] = frame["item"].fillna("")
    cluster = randomised_unit(ctx.scenario.randomised_unit, bool((frame["item"] != "").any()))
    frame["cluster"] = {"item": frame["item"], "seed": frame["seed"].astype(str),
                        "trial": frame["trial_id"]}[cluster]
    return frame


def _rows(frame: pd.DataFrame, keep) -> pd.DataFrame:
    """The rows whose cell `keep` accepts. A boolean array, not a list: on an empty frame an empty
    list would select no columns rather than no rows."""
    return frame[np.array([keep(c) for c in frame["cell"]], bool)].copy()


def _matches(cell: dict, levels: Levels) -> bool:
    return all(str(cell.get(k)) == str(v) for k, v in levels.items())


def _arm(frame: pd.DataFrame, levels: Levels, compared: set[str]) -> pd.DataFrame:
    arm = _rows(frame, lambda c: _matches(c, levels))
    # What a pair shares: the rest of the cell, the seed and the item.
    arm["key"] = [json.dumps([{k: v for k, v in c.items() if k not in compared}, int(s), i], sort_keys=True,
                             default=str) for c, s, i in zip(arm["cell"], arm["seed"], arm["item"])]
    return arm


def _difference(ctx, options: MetricClaim, a: Levels, b: Levels, label: str) -> ClaimEstimate:
    metric = ctx.metrics[options.metric]
    missing = missing_levels(options, ctx.spec)
    quantity = f"difference of {'rates' if metric.kind == 'proportion' else 'means'} ({label})"
    if missing:
        return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, 0, quantity, "—", metric.percent, missing)
    frame = _frame(ctx, options)
    compared = set(a) | set(b)
    arm_a, arm_b = _arm(frame, a, compared), _arm(frame, b, compared)
    if arm_a.empty or arm_b.empty:
        return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, len(arm_a) + len(arm_b), quantity, "—",
                             metric.percent, "no finished units in one of the compared conditions")
    diff, counts = compare(arm_a, arm_b, metric, derived_seed(ctx.seed, "claim", options.claim))
    n = counts["n_pairs"] if counts["paired"] else counts["n_a"] + counts["n_b"]
    what = "pairs" if counts["paired"] else "units, unpaired"
    reason = None if math.isfinite(diff.low) and math.isfinite(diff.high) else (diff.note or "no interval")
    return ClaimEstimate(diff.value, diff.low, diff.high, diff.p, n, f"{quantity}; {n} {what}; {diff.interval}",
                         diff.test, metric.percent, reason)


def _describe(levels: Levels) -> str:
    return ", ".join(f"{k}={v}" for k, v in levels.items())


class DifferenceClaim(MetricClaim):
    a: Levels
    b: Levels


@register_claim_test
class Difference(ClaimTest):
    """The metric in condition `a` minus in condition `b` (each a set of factor levels)."""

    test = "difference"
    Options = DifferenceClaim

    def check(self, options, scenario, spec, key):
        check_claim_levels(options, scenario, spec, key)

    def scale(self, options, scenario):
        return (-1.0, 1.0) if _metric_kind(options, scenario) == "proportion" else None

    def estimate(self, ctx, options) -> ClaimEstimate:
        return _difference(ctx, options, options.a, options.b, f"{_describe(options.a)} − {_describe(options.b)}")


@register_claim_test
class Trend(ClaimTest):
    """The metric's slope per doubling of model parameters, across the models (one rate each)."""

    test = "trend"
    Options = MetricClaim

    def check(self, options, scenario, spec, key):
        check_claim_levels(options, scenario, spec, key)

    def estimate(self, ctx, options) -> ClaimEstimate:
        metric = ctx.metrics[options.metric]
        missing = missing_levels(options, ctx.spec)
        if missing:
            return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, 0, "slope per doubling of parameters",
                                 "—", metric.percent, missing)
        frame = _frame(ctx, options)
        rows = []
        for cell, value in zip(frame["cell"], frame["value"]):
            models = ctx.scenario.cell_models(cell)
            if len(models) == 1:
                rows.append((models[0], value))
        units = pd.DataFrame(rows, columns=["model", "value"])
        per_model = units.groupby("model")["value"].mean()
        params = np.array([ctx.spec.models[m].params.effective_b for m in per_model.index])
        return trend_across_models(per_model.to_numpy(), params, len(units), metric.percent)


class InteractionClaim(MetricClaim):
    present: Levels  # the levels that together are claimed necessary
    absent: Levels  # each factor's level without it


@register_claim_test
class Interaction(ClaimTest):
    """An outcome that needs every `present` level together: the metric with all of them minus with
    each other combination (a factor at its `absent` level). The estimate is the smallest of these
    differences; its p-value the largest (an intersection-union test: every difference must be
    positive)."""

    test = "interaction"
    Options = InteractionClaim

    def check(self, options, scenario, spec, key):
        check_claim_levels(options, scenario, spec, key)
        if set(options.present) != set(options.absent):
            raise SpecError("present and absent must name the same factors", key=f"{key}.absent")
        if options.direction != "positive":
            raise SpecError("an interaction claims the outcome is higher with every level present: "
                            "direction: positive", key=f"{key}.direction")

    def scale(self, options, scenario):
        return (-1.0, 1.0) if _metric_kind(options, scenario) == "proportion" else None

    def estimate(self, ctx, options) -> ClaimEstimate:
        factors = list(options.present)
        others = [dict(zip(factors, combo)) for combo in
                  itertools.product(*[(options.present[f], options.absent[f]) for f in factors])][1:]
        found = [_difference(ctx, options, options.present, other, f"all present − {_describe(other)}")
                 for other in others]
        usable = [e for e in found if e.reason is None]
        if len(usable) < len(found):
            reason = next(e.reason for e in found if e.reason is not None)
            return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, sum(e.n for e in found),
                                 "smallest difference", "intersection-union", found[0].percent, reason)
        smallest = min(usable, key=lambda e: e.value)
        return ClaimEstimate(smallest.value, smallest.low, smallest.high, max(e.p for e in usable), smallest.n,
                             f"smallest of {len(usable)} differences: {smallest.quantity}",
                             f"intersection-union of {usable[0].test}", smallest.percent)


class ReductionClaim(MetricClaim):
    control: Levels
    treated: Levels


@register_claim_test
class Reduction(ClaimTest):
    """Relative reduction 1 - p_treated / p_control of a rate, with the score interval."""

    test = "reduction"
    Options = ReductionClaim

    def check(self, options, scenario, spec, key):
        check_claim_levels(options, scenario, spec, key)
        if _metric_kind(options, scenario) != "proportion":
            raise SpecError(f"a reduction needs a rate; {options.metric} is a mean", key=f"{key}.metric")

    def scale(self, options, scenario):
        return (-math.inf, 1.0)  # 1 - p_treated / p_control

    def estimate(self, ctx, options) -> ClaimEstimate:
        missing = missing_levels(options, ctx.spec)
        if missing:
            return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, 0, "relative reduction", "—", True, missing)
        frame = _frame(ctx, options)
        compared = set(options.control) | set(options.treated)
        control = _arm(frame, options.control, compared)["value"].to_numpy()
        treated = _arm(frame, options.treated, compared)["value"].to_numpy()
        n = len(control) + len(treated)
        quantity = f"relative reduction ({_describe(options.treated)} vs {_describe(options.control)})"
        est = relative_reduction(control, treated)
        if est is None:
            return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, n, quantity, "score test", True,
                                 "not estimable: no events in the control arm" if len(control) else
                                 "no finished units in the control arm")
        p = float(test_proportions_2indep(int(treated.sum()), len(treated), int(control.sum()), len(control),
                                          value=1.0, compare="ratio", method="score").pvalue)
        return ClaimEstimate(est.value, est.low, est.high, p, n, f"{quantity}; {n} units in two arms",
                             "score test of the ratio (Miettinen-Nurminen)", True)
