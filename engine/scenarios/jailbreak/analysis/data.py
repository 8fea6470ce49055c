"""What the jailbreak report sections read, computed once per report: the trace table (from the
study's runs or an imported file). Judges' verdicts and gold sets: engine/analyze/judge_validity.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from engine.scenarios.jailbreak.params import JailbreakParams
from engine.scenarios.jailbreak.traces import imported_traces, run_traces, stored_import


@dataclass(frozen=True)
class JailbreakData:
    params: JailbreakParams
    traces: pd.DataFrame
    unjudged: int  # finished traces the primary judge has not graded (yet)
    imported_from: str | None  # analysis-only: the file the verdicts came from

    @property
    def harmful(self) -> pd.DataFrame:
        return self.traces[~self.traces.benign]


def load_jailbreak_data(con: Any, loaded: Any) -> JailbreakData:
    """The trace table of a spec from its database (`con`), for the report or for cache_analyses."""
    params: JailbreakParams = loaded.scenario_params
    if params.import_path is not None:
        stored, unjudged = stored_import(con, loaded.spec_hash), 0
        traces = stored[0] if stored else imported_traces(con, loaded.spec_hash)  # (none: its columns, no rows)
        imported = f"{stored[2]} (sha256 {stored[1][:12]})" if stored and stored[2] else params.import_path
    else:
        traces, unjudged = run_traces(con, loaded.spec_hash, loaded.spec)
        imported = None
    return JailbreakData(params, traces, unjudged, imported)


def jailbreak_data(ctx: Any) -> JailbreakData:
    if "jailbreak" not in ctx.shared:
        ctx.shared["jailbreak"] = load_jailbreak_data(ctx.con, ctx.loaded)
    return ctx.shared["jailbreak"]


def mixed_fit(con: Any, data: JailbreakData, seed: int) -> Any:
    """The report's mixed-effects robustness fit, read from the study database when stored there."""
    from engine.scenarios.jailbreak.analysis.asr import TIERS
    from engine.scenarios.jailbreak.analysis.mixed_effects import mixed_scale_model

    return mixed_scale_model(data.traces, TIERS[data.params.tier], basis=data.params.params_basis, seed=seed,
                             con=con)


def cache_resampling(con: Any, data: JailbreakData, seed: int) -> None:
    """Compute, and store where `con` is writable, the resampled intervals the report sections read: the
    prompt-clustered rates of every tier and the selection-aware provider risk ratio."""
    from engine.scenarios.jailbreak.analysis import asr

    tier = asr.TIERS[data.params.tier]
    for t in asr.TIERS.values():
        asr.model_asr(data.traces, t, seed=seed, con=con)
        asr.attack_asr(data.traces, t, seed=seed, con=con)
    asr.false_refusal(data.traces, seed=seed, con=con)
    asr.provider_asr(data.traces, tier, seed=seed, con=con)
    asr.provider_vs_size(asr.model_asr(data.traces, tier, seed=seed, con=con), basis=data.params.params_basis,
                         min_provider_evaluable=data.params.min_provider_evaluable, seed=seed,
                         evaluable=asr.evaluable_harmful(data.traces, tier), con=con)
