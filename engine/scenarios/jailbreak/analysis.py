"""What the jailbreak report sections read, computed once per report: the trace table (from the
study's runs or an imported file) and the judges' verdicts on study traces and gold sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from engine.analyze.agreement import Agreement, agreement
from engine.analyze.metrics import FINISHED
from engine.judges import Judge
from engine.judges.gold_set import gold_subject_id, load_gold
from engine.scenarios.jailbreak.params import JailbreakParams
from engine.scenarios.jailbreak.traces import imported_traces, run_traces


@dataclass(frozen=True)
class JailbreakData:
    params: JailbreakParams
    traces: pd.DataFrame
    unjudged: int  # finished traces the primary judge has not graded (yet)
    imported_from: str | None  # analysis-only: the file the verdicts came from

    @property
    def harmful(self) -> pd.DataFrame:
        return self.traces[~self.traces.benign]


def jailbreak_data(ctx: Any) -> JailbreakData:
    if "jailbreak" not in ctx.shared:
        params: JailbreakParams = ctx.loaded.scenario_params
        if params.traces_file is not None:
            traces, unjudged = imported_traces(ctx.con, ctx.spec_hash), 0
            source = ctx.con.execute(
                "SELECT any_value(source_file), any_value(source_sha256) FROM jailbreak_imported_traces"
                " WHERE spec_hash = ?", [ctx.spec_hash]).fetchone()
            imported = f"{source[0]} (sha256 {source[1][:12]})" if source[0] else params.traces_file.path
        else:
            traces, unjudged = run_traces(ctx.con, ctx.spec_hash, ctx.spec)
            imported = None
        ctx.shared["jailbreak"] = JailbreakData(params, traces, unjudged, imported)
    return ctx.shared["jailbreak"]


def _verdicts(ctx: Any, judge: Judge, where: str, params: dict[str, str]) -> pd.DataFrame:
    return ctx.con.execute(
        "SELECT v.subject_id, v.label FROM verdicts v WHERE v.judge_id = $judge_id"
        f" AND v.rubric_version = $rubric_version AND v.judge_fingerprint = $judge_fingerprint AND {where}",
        {**judge.verdict_key, **params}).df()


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
