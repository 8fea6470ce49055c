"""The engine's claim tests, for any scenario's metrics: a difference between two conditions (paired
on the items and seeds they share), a trend in model size, an interaction (an outcome that needs
several conditions together and no fewer), a relative reduction, one model responding unlike every
other, and variation by model family beyond size.

Each reads its units from the study database here (`units`: a thin wrapper) and computes its
estimate in engine/analyze/claim_units.py (`from_units`: pure), so a simulation of the design can
call the exact code the report uses."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from pydantic import Field, FiniteFloat, field_validator

from engine.analyze import claim_units as cu
from engine.analyze.paired import unit_frame
from engine.kernel.contracts import ClaimEstimate, ClaimOptions, ClaimTest, Scenario, check_metric
from engine.kernel.errors import SpecError
from engine.kernel.hashing import derived_seed
from engine.kernel.registry import register_claim_test
from engine.plan.comparisons import randomised_unit

Levels = dict[str, Any]
DEFAULT_MARGIN = 0.05  # non-inferiority margin of a rate: 5 points


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


FRAME_COLUMNS = ["trial_id", "value", "cell", "seed", "item", "cluster", "model"]


def claim_units(ctx, options: MetricClaim) -> cu.ClaimUnits:
    """The units of the claim's metric in the cells `where` selects (control cells left out): the
    cell as a dict, the cluster the scenario resamples, the cell's model when it has one."""
    metric = ctx.metrics[options.metric]
    models = {k: cu.ModelFacts(m.params.effective_b, m.family) for k, m in ctx.spec.models.items()}
    seed = derived_seed(ctx.seed, "claim", options.claim)
    counted = ctx.scenario.unit[1]
    missing = missing_levels(options, ctx.spec)
    if missing:
        return cu.ClaimUnits(pd.DataFrame(columns=FRAME_COLUMNS), metric, seed, models, counted, missing)
    frame = unit_frame(ctx.con, ctx.spec_hash, metric, ctx.scenario.metric_params(ctx.spec))
    frame["cell"] = frame["cell"].map(json.loads)
    frame = cu.rows(frame, lambda c: not ctx.scenario.is_control(c) and cu.matches(c, options.where))
    frame["item"] = frame["item"].fillna("")
    cluster = randomised_unit(ctx.scenario.randomised_unit, bool((frame["item"] != "").any()))
    frame["cluster"] = {"item": frame["item"], "seed": frame["seed"].astype(str),
                        "trial": frame["trial_id"]}[cluster]
    frame["model"] = [_one_model(ctx.scenario.cell_models(c)) for c in frame["cell"]]
    return cu.ClaimUnits(frame[FRAME_COLUMNS].reset_index(drop=True), metric, seed, models, counted)


def _one_model(models: list[str]) -> str:
    return str(models[0]) if len(models) == 1 else ""


class MetricClaimTest(ClaimTest):
    """A claim test on one of the scenario's metrics, reading its units with `claim_units`."""

    def check(self, options, scenario, spec, key):
        check_claim_levels(options, scenario, spec, key)

    def units(self, ctx, options) -> cu.ClaimUnits:
        return claim_units(ctx, options)


def _rate_scale(options: MetricClaim, scenario: Scenario) -> tuple[float, float] | None:
    return (-1.0, 1.0) if _metric_kind(options, scenario) == "proportion" else None


def require_kind(options: ClaimOptions, key: str, test: str, allowed: tuple[str, ...] = ("direction",)) -> None:
    """A SpecError unless the claim is of one of the kinds the test decides."""
    if options.kind not in allowed:
        raise SpecError(f"a{'n' if test[0] in 'aeiou' else ''} {test} claim is decided as "
                        f"{' or '.join(allowed)}, not {options.kind}", key=f"{key}.{options.kind}")


class DifferenceClaim(MetricClaim):
    a: Levels
    b: Levels


@register_claim_test
class Difference(MetricClaimTest):
    """The metric in condition `a` minus in condition `b` (each a set of factor levels)."""

    test = "difference"
    Options = DifferenceClaim

    def scale(self, options, scenario):
        return _rate_scale(options, scenario)

    def from_units(self, units, options) -> ClaimEstimate:
        return cu.difference(units, options.a, options.b)


@register_claim_test
class Trend(MetricClaimTest):
    """The metric's slope per doubling of model parameters, across the models (one rate each)."""

    test = "trend"
    Options = MetricClaim

    def from_units(self, units, options) -> ClaimEstimate:
        return cu.trend(units)


class InteractionClaim(MetricClaim):
    present: Levels  # the levels that together are claimed necessary
    absent: Levels  # each factor's level without it
    margin: FiniteFloat | None = Field(default=None, ge=0, description="how much higher than the control a cell "
                                       "with only some levels present may be (default 0.05 for a rate)")


@register_claim_test
class Interaction(MetricClaimTest):
    """"The outcome needs every `present` level together; no fewer suffices": every cell with some but
    not all of the levels no higher than the cell with none by more than `margin`, and the interaction
    contrast on the claimed side (`direction: positive`, or `at_least`), an intersection-union test
    (engine.analyze.claim_units.interaction_parts)."""

    test = "interaction"
    Options = InteractionClaim

    def check(self, options, scenario, spec, key):
        super().check(options, scenario, spec, key)
        if set(options.present) != set(options.absent):
            raise SpecError("present and absent must name the same factors", key=f"{key}.absent")
        if options.direction == "negative":
            raise SpecError("an interaction claims the outcome is higher with every level present: "
                            "direction: positive (or at_least)", key=f"{key}.direction")
        require_kind(options, key, self.test, ("direction", "at_least"))
        if options.margin is None and _metric_kind(options, scenario) != "proportion":
            raise SpecError(f"{options.metric} is a mean: give the non-inferiority margin in its units",
                            key=f"{key}.margin")

    def scale(self, options, scenario):
        return (-2.0, 2.0) if _metric_kind(options, scenario) == "proportion" else None

    def from_units(self, units, options) -> ClaimEstimate:
        margin = DEFAULT_MARGIN if options.margin is None else options.margin
        return cu.interaction_parts(units, options.present, options.absent, options.claimed(0.0), margin)


class ReductionClaim(MetricClaim):
    control: Levels
    treated: Levels


@register_claim_test
class Reduction(MetricClaimTest):
    """Relative reduction 1 - p_treated / p_control of a rate: paired where the design pairs the arms
    (the paired score interval), else the score interval of two independent arms."""

    test = "reduction"
    Options = ReductionClaim

    def check(self, options, scenario, spec, key):
        super().check(options, scenario, spec, key)
        if _metric_kind(options, scenario) != "proportion":
            raise SpecError(f"a reduction needs a rate; {options.metric} is a mean", key=f"{key}.metric")

    def scale(self, options, scenario):
        return (-math.inf, 1.0)  # 1 - p_treated / p_control

    def from_units(self, units, options) -> ClaimEstimate:
        return cu.reduction(units, options.control, options.treated)


class OnlyModelClaim(MetricClaim):
    model: str = Field(description="the model (its key in the study's models) claimed to respond unlike the others")
    a: Levels
    b: Levels | None = Field(default=None, description="with b: each model's effect is its metric at a minus at b")
    margin: FiniteFloat = Field(default=0.0, ge=0, description="how far its effect lies beyond every other's")
    others: FiniteFloat | None = Field(default=None, description="every other model's effect lies above this "
                                       "(below it for direction: positive)")


@register_claim_test
class OnlyModel(MetricClaimTest):
    """One named model responds unlike every other: its effect (the metric at `a` minus at `b`, paired
    within the model) below every other model's by more than `margin` (`direction: negative`; above
    them for positive), and with `others` every other model's effect beyond that value: an
    intersection-union test over the other models (engine.analyze.claim_units.only_model)."""

    test = "only_model"
    Options = OnlyModelClaim

    def check(self, options, scenario, spec, key):
        super().check(options, scenario, spec, key)
        require_kind(options, key, self.test)
        if options.others is not None and options.b is None:
            raise SpecError("others compares each other model's effect: give b", key=f"{key}.others")

    def from_units(self, units, options) -> ClaimEstimate:
        return cu.only_model(units, options.model, options.a, options.b, options.direction == "negative",
                             options.margin, options.others)


class FamilyClaim(MetricClaim):
    size_range: tuple[FiniteFloat, FiniteFloat] = Field(description="the size slope per doubling, within "
                                                        "families, claimed to lie in [low, high]")

    @field_validator("size_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] >= v[1]:
            raise ValueError(f"size_range must be [low, high] with low < high, not {list(v)}")
        return v


@register_claim_test
class FamilyNotSize(MetricClaimTest):
    """The metric varies by model family, not size: family explains model-level variance beyond
    log2 size (partial F), and the size slope within families lies in `size_range`."""

    test = "family_not_size"
    Options = FamilyClaim

    def check(self, options, scenario, spec, key):
        super().check(options, scenario, spec, key)
        if options.direction != "positive":
            raise SpecError("family explaining variance beyond size is decided as direction: positive",
                            key=f"{key}.{options.kind}")

    def from_units(self, units, options) -> ClaimEstimate:
        return cu.family_beyond_size(units, options.size_range)

