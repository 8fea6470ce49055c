"""Judge validity, for every scenario: each judge's verdicts on this study's traces and on its rubric's
hand-labelled gold set (engine/scenarios/<name>/gold/), and its agreement with the gold labels."""

from __future__ import annotations

from typing import Any

import pandas as pd

from engine.analyze.agreement import Agreement, agreement
from engine.kernel.contracts import FINISHED
from engine.kernel.contracts import Judge, verdict_match, verdict_params
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


def gold_agreement(ctx: Any, judge: Judge) -> tuple[Agreement | None, int]:
    """The judge against the gold set (judge errors left out), and how many gold items it failed on."""
    gold = gold_comparison(ctx, judge)
    if gold.empty:
        return None, 0
    errors = int((gold.label == "ERROR").sum())
    graded = gold[gold.label != "ERROR"]
    if graded.empty:
        return None, errors
    return agreement(list(graded.gold), list(graded.label), list(judge.spec.rubric.labels)), errors
