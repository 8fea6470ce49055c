"""Judge validity, for every scenario: each judge's verdicts on this study's traces and on its rubric's
hand-labelled gold set (engine/scenarios/<name>/gold/), its agreement with the gold labels (Cohen's
kappa over all labels) and, for a judge whose labels a rate counts, its binary validity on the
decision that rate makes; and the rule that calls a judge weak."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import pandas as pd

from engine.analyze.agreement import Agreement, BinaryValidity, agreement, binary_validity
from engine.kernel.contracts import FINISHED
from engine.kernel.contracts import Judge, Scenario, verdict_match, verdict_params
from engine.judging.gold import gold_subject_id, load_gold


def _verdicts(ctx: Any, judge: Judge, where: str, params: dict[str, str]) -> pd.DataFrame:
    return ctx.con.execute(
        f"SELECT v.subject_id, v.label FROM verdicts v WHERE {verdict_match('v')} AND {where}",
        {**verdict_params(judge), **params}).df()


def trace_verdicts(ctx: Any, judge: Judge) -> pd.DataFrame:
    """subject_id, label of one judge on this spec's finished traces."""
    return _verdicts(ctx, judge, f"v.subject_id IN (SELECT trial_id FROM {FINISHED})", {"spec_hash": ctx.spec_hash})


def gold_comparison(ctx: Any, judge: Judge) -> pd.DataFrame:
    """gold_id, gold label, judge label (ERROR when the judge failed) for the judge's gold set."""
    rubric = judge.spec.rubric
    gold = pd.DataFrame([{"subject_id": gold_subject_id(rubric, g.gold_id), "gold": g.label}
                         for g in load_gold(rubric)])
    if gold.empty:
        return gold
    verdicts = _verdicts(ctx, judge, "starts_with(v.subject_id, $prefix)", {"prefix": gold_subject_id(rubric, "")})
    return gold.merge(verdicts, on="subject_id", how="inner")


def _graded(ctx: Any, judge: Judge) -> tuple[pd.DataFrame | None, int]:
    """The judge's graded gold items (errors left out; None when there are none) and its error count."""
    gold = gold_comparison(ctx, judge)
    if gold.empty:
        return None, 0
    errors = int((gold.label == "ERROR").sum())
    graded = gold[gold.label != "ERROR"]
    return (None if graded.empty else graded), errors


def gold_agreement(ctx: Any, judge: Judge) -> tuple[Agreement | None, int]:
    """The judge against the gold set (judge errors left out), and how many gold items it failed on."""
    graded, errors = _graded(ctx, judge)
    if graded is None:
        return None, errors
    return agreement(list(graded.gold), list(graded.label), list(judge.spec.rubric.labels)), errors


def gold_binary_validity(ctx: Any, judge: Judge, positive: Collection[str]) -> BinaryValidity | None:
    """The judge against the gold set on the binary decision 'label in `positive`' (judge errors left
    out, as in gold_agreement); None when it has no graded gold item."""
    graded, _ = _graded(ctx, judge)
    return None if graded is None else binary_validity(list(graded.gold), list(graded.label), positive)


def positive_labels(scenario: Scenario, spec: Any, params: Any) -> dict[str, frozenset[str]]:
    """judge_id -> the labels a rate of this scenario counts as positive (e.g. the primary jailbreak
    judge's success labels), from the scenario's `positive_labels(spec, params)`; judges it names no
    labels for are left out."""
    return {judge_id: frozenset(labels) for judge_id, labels in scenario.positive_labels(spec, params).items()
            if labels}


# The weakness rule. A judge whose labels a rate counts (it has positive labels) is judged on the
# binary decision that rate makes, by the 95% interval of Youden's J: "worse than chance" when the
# whole interval is below 0, "no better than chance" when it contains 0, "weak" when its lower end
# is below WEAK_YOUDEN (the gold set does not show J >= 0.5, e.g. sensitivity and specificity both
# 75%), "not measured" when the gold set has no positive or no negative item for that decision, else
# "adequate". A judge with no positive labels keeps the kappa rule: "weak" when kappa is unmeasured,
# undefined or below the scenario's threshold. Every verdict but "adequate" is weak.
WEAK_YOUDEN = 0.5
ADEQUATE = "adequate"


def judge_verdict(a: Agreement | None, binary: BinaryValidity | None, kappa_threshold: float,
                  youden_threshold: float = WEAK_YOUDEN) -> str:
    """'adequate', or the kind of weakness, by the rule above (binary measures when given)."""
    if binary is not None:
        j = binary.youden
        if math.isnan(j.value):
            return "not measured"
        if j.high < 0:
            return "worse than chance"
        if j.low <= 0:
            return "no better than chance"
        return "weak" if j.low < youden_threshold else ADEQUATE
    if a is None or math.isnan(a.kappa) or a.kappa < kappa_threshold:
        return "weak"
    return ADEQUATE
