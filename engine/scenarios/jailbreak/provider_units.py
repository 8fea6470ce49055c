"""What the jailbreak scenario's provider claims read (engine/scenarios/jailbreak/claims.py), made from a
trace table alone: the report reads the study's traces into it, the calibration check
(engine/scenarios/jailbreak/calibration.py) simulated ones, so both run the same statistics."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from engine.scenarios.jailbreak.analysis import asr


@dataclass(frozen=True)
class ProviderUnits:
    """What the provider claims read: `models`, the analysable models (model, provider, params_b, asr,
    evaluable, successes: the provider_vs_size analysis's table); for the risk ratio also `table`,
    the per-model ASR table it starts from (`asr.model_asr`), and `evaluable`, the evaluable harmful
    traces (`asr.evaluable_harmful`: model, provider, prompt_id, success); the analysis settings."""

    models: pd.DataFrame
    seed: int
    table: pd.DataFrame | None = None
    evaluable: pd.DataFrame | None = None
    basis: asr.Basis = "total"
    min_provider_evaluable: int = 0
    con: Any = None  # where resampled intervals are cached (engine/store/fit_cache.py); None computes them
    reason: str | None = None

    def analysis(self) -> asr.ProviderVsSize:
        return self._analysis

    @cached_property
    def _analysis(self) -> asr.ProviderVsSize:  # computed once: the models table and the ratio read it
        assert self.table is not None
        return asr.provider_vs_size(self.table, basis=self.basis, min_provider_evaluable=self.min_provider_evaluable,
                                    seed=self.seed, evaluable=self.evaluable, con=self.con, provider_effect=False,
                                    residuals=False)


def provider_units(traces: pd.DataFrame, tier: asr.Tier | str, seed: int, basis: asr.Basis,
                   min_provider_evaluable: int, con: Any = None) -> ProviderUnits:
    """The provider claims' units from a trace table (engine/scenarios/jailbreak/traces.TRACE_COLUMNS)."""
    if traces.empty:
        return ProviderUnits(pd.DataFrame(), seed, reason="no graded traces")
    table, evaluable = asr.model_asr(traces, tier, seed=seed, con=con), asr.evaluable_harmful(traces, tier)
    result = asr.provider_vs_size(table, basis=basis, min_provider_evaluable=min_provider_evaluable, seed=seed,
                                  evaluable=evaluable, con=con, provider_effect=False, residuals=False)
    units = ProviderUnits(result.models, seed, table, evaluable, basis, min_provider_evaluable, con)
    units.__dict__["_analysis"] = result  # its cached analysis: the claims read it, none recomputes it
    return units
