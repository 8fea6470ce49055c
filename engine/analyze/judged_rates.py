"""The rates a scenario says rest on one judge's labels (Scenario.judged_rates), each corrected per
design cell for that judge's errors on its gold set (engine/analyze/misclassification.py), with the
judge's verdict (engine/analyze/judge_validity.py, judge_verdict) on the rate's own decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import math

import pandas as pd

from engine.analyze.agreement import BinaryValidity
from engine.analyze.judge_validity import ADEQUATE, gold_agreement, gold_binary_validity, judge_verdict
from engine.analyze.metrics import unit_values
from engine.analyze.misclassification import CorrectedRate, corrected_rate
from engine.analyze.summary import format_estimate
from engine.judging.catalog import make_judges
from engine.kernel.contracts import Judge
from engine.kernel.hashing import derived_seed


@dataclass(frozen=True)
class JudgedRate:
    metric: str
    judge: Judge
    positive: tuple[str, ...]
    validity: BinaryValidity | None  # the judge on the gold set, on this rate's decision; None: no graded item
    verdict: str                     # judge_verdict on that decision: 'adequate' or the kind of weakness
    cells: dict[str, CorrectedRate]  # cell_id -> the raw and the corrected rate

    @property
    def weak(self) -> bool:
        return self.verdict != ADEQUATE


def youden_text(b: BinaryValidity) -> str:
    j = b.youden
    return "undefined" if math.isnan(j.value) else f"{j.value:.2f} [{j.low:.2f}, {j.high:.2f}]"


def validity_text(b: BinaryValidity | None) -> str:
    """A judge's measures on one decision, as a caption or the abstract states them."""
    if b is None:
        return "no graded gold item"
    rate = lambda e: format_estimate(e.value, e.low, e.high, percent=True)  # noqa: E731
    return (f"sensitivity {rate(b.sensitivity)}, specificity {rate(b.specificity)}, Youden's J "
            f"{youden_text(b)}; {b.n_positive} positive and {b.n_negative} negative gold items")


def judged_rate_sources(ctx: Any) -> dict[str, tuple[Judge, tuple[str, ...]]]:
    """metric -> (judge, positive labels) from the scenario's judged_rates, for the study's metrics
    and judges only."""
    judges = {j.judge_id: j for j in make_judges(ctx.spec)}
    named = ctx.scenario.judged_rates(ctx.spec, ctx.loaded.scenario_params)
    return {metric: (judges[judge_id], tuple(sorted(labels))) for metric, (judge_id, labels) in named.items()
            if metric in ctx.metrics and judge_id in judges and labels}


def _clusters(ctx: Any) -> pd.DataFrame:
    """trial_id -> resampling cluster: the trial's scenario item (a prompt repeats across seeds in a
    cell), or the trial itself when trials have no item."""
    return ctx.con.execute("SELECT trial_id, coalesce(CAST(inputs->'item' AS VARCHAR), trial_id) AS cluster"
                           " FROM trials").df()


def judged_rate(ctx: Any, metric: str, min_youden: float = 0.0) -> JudgedRate | None:
    """One judged metric, raw and corrected in every design cell (None when the scenario names no judge
    for it). Computed once per report and shared by the sections that show it."""
    key = ("judged_rate", metric, min_youden)
    if key in ctx.shared:
        return ctx.shared[key]
    source = judged_rate_sources(ctx).get(metric)
    if source is None:
        return None
    judge, positive = source
    agreement, _ = gold_agreement(ctx, judge)
    validity = gold_binary_validity(ctx, judge, positive)
    verdict = judge_verdict(agreement, validity, ctx.scenario.weak_judge_kappa(ctx.loaded.scenario_params))
    units = unit_values(ctx.con, ctx.spec_hash, ctx.metrics[metric], ctx.scenario.metric_params(ctx.spec))
    units = units.merge(_clusters(ctx), on="trial_id", how="left")
    by_cell = dict(tuple(units.groupby("cell_id")))
    cells = {}
    for cell_id in ctx.cells.cell_id:
        group = by_cell.get(cell_id, units.iloc[:0])
        cells[cell_id] = corrected_rate(group.value.to_numpy(dtype=float), validity,
                                        derived_seed(ctx.seed, "corrected_rate", metric, cell_id),
                                        clusters=group.cluster.to_numpy(), min_youden=min_youden)
    ctx.shared[key] = result = JudgedRate(metric, judge, positive, validity, verdict, cells)
    return result
