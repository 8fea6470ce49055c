"""What the jailbreak report sections read, computed once per report: the trace table (from the
study's runs or an imported file). Judges' verdicts and gold sets: engine/analyze/judge_validity.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

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
