"""The jailbreak scenario's claim test: does provider explain more of the model-level ASR variance
than size? Decided on eta² - R² in excess of its no-effect value (k - 2)/(N - 1), with the
bootstrap interval of the provider_vs_size section."""

from __future__ import annotations

import math
from dataclasses import replace

from scipy import stats

from engine.kernel.contracts import ClaimEstimate, ClaimOptions, ClaimTest
from engine.kernel.hashing import derived_seed
from engine.kernel.registry import register_claim_test
from engine.scenarios.jailbreak.analysis import asr
from engine.scenarios.jailbreak.analysis.data import jailbreak_data
from engine.scenarios.jailbreak.analysis.decomposition import variance_shares

QUANTITY = "eta² - R² above its no-effect value (k - 2)/(N - 1), models as units"


class VarianceShareClaim(ClaimOptions):
    tier: str | None = None  # the ASR tier; default the scenario's
    n_bootstrap: int = 2000


@register_claim_test
class VarianceShare(ClaimTest):
    """Provider eta² minus size R² of the same models, read against its value with neither effect;
    p from the normal approximation to its bootstrap interval."""

    test = "variance_share"
    Options = VarianceShareClaim

    def estimate(self, ctx, options) -> ClaimEstimate:
        data = jailbreak_data(ctx)
        tier = asr.tier_of(options.tier or data.params.tier)
        unusable = ClaimEstimate(math.nan, math.nan, math.nan, math.nan, 0, QUANTITY, "bootstrap over models", False)
        if data.traces.empty:
            return replace(unusable, reason="no graded traces")
        models = asr.model_asr(data.traces, tier, seed=ctx.seed, con=ctx.con)
        result = asr.provider_vs_size(models, basis=data.params.params_basis,
                                      min_provider_evaluable=data.params.min_provider_evaluable, seed=ctx.seed,
                                      evaluable=asr.evaluable_harmful(data.traces, tier), con=ctx.con)
        m = result.models
        try:
            v = variance_shares(m["asr"].to_numpy(), m["params_b"].to_numpy(), m["provider"].to_numpy(),
                                seed=derived_seed(ctx.seed, "provider_vs_size", "variance_shares"),
                                n_bootstrap=options.n_bootstrap)
        except ValueError as err:
            return replace(unusable, n=len(m), reason=str(err))
        value, low, high = (v.difference - v.null_difference, v.difference_low - v.null_difference,
                            v.difference_high - v.null_difference)
        se = (high - low) / (2 * stats.norm.ppf(0.975))
        p = float(2 * stats.norm.sf(abs(value) / se)) if se > 0 else math.nan
        return ClaimEstimate(value, low, high, p, v.n, f"{QUANTITY}; {v.k} providers, {v.n} models",
                             "normal approximation to the bootstrap over models", False)
