"""The jailbreak scenario's claim tests, on the model-level table of the provider_vs_size analysis:
- `variance_share`: provider explains more of the model-level ASR variance than size: eta² - R² above
  its no-effect value (k - 2)/(N - 1), with the provider_vs_size section's interval family (the
  permutation test of neither mattering, inverted under a shift);
- `provider_risk_ratio`: the pooled ASR of the highest provider over the lowest's, with the
  selection-aware interval of engine/scenarios/jailbreak/analysis (owned there; wrapped here);
- `provider_best`: a named provider's ASR for its models' size below every other provider's: the
  provider contrasts of ASR ~ log2 size + provider, an intersection-union test.

Each reads the traces in `units` (a thin wrapper) and computes from the frames it returns in
`from_units` (pure), so a simulation of the design can call the exact code the report uses."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from engine.analyze.claim_stats import from_family, unusable
from engine.analyze.inference import t_family
from engine.kernel.contracts import ClaimEstimate, Claimed, ClaimOptions, ClaimPart, ClaimTest
from engine.kernel.hashing import derived_seed
from engine.kernel.registry import register_claim_test
from engine.report.claim_tests import require_kind
from engine.scenarios.jailbreak import calibration
from engine.scenarios.jailbreak.analysis import asr
from engine.scenarios.jailbreak.analysis.data import jailbreak_data
from engine.scenarios.jailbreak.analysis.decomposition import variance_shares
from engine.scenarios.jailbreak.provider_units import ProviderUnits, provider_units

QUANTITY = "eta² - R² above its no-effect value (k - 2)/(N - 1), models as units"


class TierClaim(ClaimOptions):
    tier: str | None = None  # the ASR tier; default the scenario's


class ProviderClaimTest(ClaimTest):
    def units(self, ctx, options) -> ProviderUnits:
        data = jailbreak_data(ctx)
        return provider_units(data.traces, asr.tier_of(options.tier or data.params.tier), ctx.seed,
                              data.params.params_basis, data.params.min_provider_evaluable, ctx.con)

    def calibration_worlds(self, options, design):
        return calibration.provider_worlds(self.test, options, design)


class VarianceShareClaim(TierClaim):
    n_permutations: int = Field(default=5000, ge=100, description="as the provider_vs_size section's (same "
                                "default), so both print one interval")


@register_claim_test
class VarianceShare(ProviderClaimTest):
    """Provider eta² minus size R² of the same models, read against its value with neither effect;
    its interval family and p-value: the permutation test of neither mattering, inverted under a shift
    (engine/scenarios/jailbreak/analysis/decomposition.variance_shares)."""

    test = "variance_share"
    Options = VarianceShareClaim

    def from_units(self, units: ProviderUnits, options) -> ClaimEstimate:
        if units.reason:
            return unusable(QUANTITY, SHARE_TEST, False, units.reason)
        return share_difference(units.models, units.seed, options.n_permutations)


SHARE_TEST = "permutation test inverted (shift)"


def share_difference(models: pd.DataFrame, seed: int, n_permutations: int) -> ClaimEstimate:
    """eta² - R² - (k - 2)/(N - 1) of the models (columns asr, params_b, provider), with the family
    of `variance_shares` (the provider_vs_size section's, same seed) shifted by the no-effect value."""
    try:
        v = variance_shares(models["asr"].to_numpy(), models["params_b"].to_numpy(), models["provider"].to_numpy(),
                            seed=derived_seed(seed, "provider_vs_size", "variance_shares"),
                            n_permutations=n_permutations)
    except ValueError as err:
        return unusable(QUANTITY, SHARE_TEST, False, str(err), len(models), "models")
    family = v.difference_at

    def shifted(alpha: float) -> tuple[float, float]:
        low, high = family(alpha)
        return low - v.null_difference, high - v.null_difference
    return from_family(v.difference - v.null_difference, shifted, v.n, f"{QUANTITY}; {v.k} providers, {v.n} models",
                       f"{SHARE_TEST}, {v.n_permutations} arrangements", False, units="models")


@register_claim_test
class ProviderRiskRatio(ProviderClaimTest):
    """The pooled ASR of the provider with the highest over that of the lowest (picked after looking),
    with the analysis's selection-aware interval family; the claim is read against 1."""

    test = "provider_risk_ratio"
    Options = TierClaim

    def scale(self, options, scenario):
        return (0.0, math.inf)

    def from_units(self, units: ProviderUnits, options) -> ClaimEstimate:
        quantity = "ratio of the highest provider's pooled ASR to the lowest's"
        if units.reason:
            return unusable(quantity, "—", False, units.reason, null=1.0)
        result = units.analysis()
        return risk_ratio_estimate(result.selected_risk, result.selected_risk_reason, quantity)


def risk_ratio_estimate(selected: Any, reason: str | None, quantity: str) -> ClaimEstimate:
    """The selection-aware ratio as a claim estimate: its own interval family (`interval_at`), or no
    verdict when it gives its interval at one level only."""
    if selected is None:
        return unusable(quantity, "—", False, reason or "no ratio", null=1.0)
    named = f"{quantity} ({selected.high_provider} / {selected.low_provider}); {selected.providers} providers"
    family = getattr(selected, "family", None)
    test = "selection-aware interval"
    if family is not None and getattr(selected, "reason", ""):  # no interval, and why (clustered.py)
        return unusable(named, test, False, selected.reason, selected.models, "models", null=1.0)
    if family is None:
        return unusable(named, test, False, "the ratio's interval is given at 95% only, not as a family at every "
                        "level, so no claim on it can be decided at Holm's levels", selected.models, "models",
                        null=1.0)
    return from_family(selected.ratio, family, selected.models, named, test, False, null=1.0, units="models",
                       detail=f"{selected.prompts} prompts")


class ProviderBestClaim(TierClaim):
    provider: str = Field(description="the provider claimed to do best (direction: negative) or worst (positive) "
                                      "for its models' size")


@register_claim_test
class ProviderBest(ProviderClaimTest):
    """A named provider's ASR for its models' size below (`direction: negative`; above: positive)
    every other provider's: in ASR ~ log2(parameters) + provider over the models, the contrast of its
    intercept with each other provider's, each with its t interval (models - providers - 1 df); an
    intersection-union test over the other providers."""

    test = "provider_best"
    Options = ProviderBestClaim

    def check(self, options, scenario, spec, key):
        require_kind(options, key, self.test)

    def from_units(self, units: ProviderUnits, options) -> ClaimEstimate:
        quantity = f"{options.provider}'s ASR for its models' size, against each other provider's"
        if units.reason:
            return unusable(quantity, "—", True, units.reason)
        return provider_contrasts(units.models, options.provider, options.direction == "negative")


def provider_contrasts(models: pd.DataFrame, provider: str, lowest: bool) -> ClaimEstimate:
    """The named provider's intercept minus each other's in asr ~ 1 + log2(params_b) + provider (models
    as units), t intervals; parts claim each contrast below 0 (`lowest`) or above it."""
    quantity = f"{provider}'s ASR for its models' size, against each other provider's"
    test = "t interval of a provider contrast (ASR ~ log2 size + provider)"
    providers = sorted(models["provider"].astype(str).unique())
    n, k = len(models), len(providers)
    if provider not in providers:
        return unusable(quantity, test, True, f"no analysable model of provider '{provider}' (providers: "
                        f"{', '.join(providers) or 'none'})", n, "models")
    df = n - k - 1
    if k < 2 or df < 1:
        return unusable(quantity, test, True, f"needs at least {k + 2} models for {k} providers and a size slope; "
                        f"have {n}", n, "models")
    others = [p for p in providers if p != provider]
    codes = models["provider"].astype(str).map({p: i for i, p in enumerate([provider, *others])}).to_numpy()
    design = np.column_stack([np.log2(models["params_b"].to_numpy(float)),
                              (codes[:, None] == np.arange(k)).astype(float)])  # one intercept per provider
    y = models["asr"].to_numpy(float)
    if np.linalg.matrix_rank(design) < k + 1:
        return unusable(quantity, test, True, "size is confounded with provider", n, "models")
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sigma2 = float(np.sum((y - design @ coef) ** 2)) / df
    covariance = sigma2 * np.linalg.inv(design.T @ design)
    parts = []
    for j, other in enumerate(others, 2):
        contrast = np.zeros(k + 1)
        contrast[1], contrast[j] = 1.0, -1.0
        value, se = float(contrast @ coef), math.sqrt(float(contrast @ covariance @ contrast))
        if not se > 0:
            return unusable(quantity, test, True, "the models fit size and provider exactly: no error left", n,
                            "models")
        est = from_family(value, t_family(value, se, df), n, f"{provider} − {other}, for the same size", test, True,
                          units="models")
        claimed = Claimed("direction", high=0.0) if lowest else Claimed("direction", low=0.0)
        parts.append(ClaimPart(f"{provider} − {other} {'<' if lowest else '>'} 0", est, claimed))
    return replace(parts[0].estimate, quantity=quantity, parts=tuple(parts))
