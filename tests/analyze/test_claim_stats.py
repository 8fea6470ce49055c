"""Claim statistics (engine/analyze/claim_stats.py): the model-level trend against scipy, the four
kinds of claim and their verdicts, Holm's levels, and the property the report promises: over many
random claims and estimates, the verdict is what the printed interval says, the printed interval is
the family's at the printed level, and Holm p < 2.5% exactly when the claim is supported. A
simulation shows a claimed magnitude is tested, not just a sign."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from engine.analyze.claim_stats import decide_claims, from_family, trend_across_models, verdict_of
from engine.analyze.claim_units import ClaimUnits, ModelFacts, trend
from engine.analyze.inference import (log_normal_family, normal_family, p_above, p_below, quantile_family,
                                      t_family)
from engine.kernel.contracts import ClaimEstimate, Claimed, ClaimOptions, ClaimPart, Metric

Z = stats.norm.ppf(0.975)


def estimate(value: float, se: float) -> ClaimEstimate:
    return from_family(value, normal_family(value, se), 100, "difference", "z")


def options(**kw) -> ClaimOptions:
    return ClaimOptions(claim="c", test="t", **kw)


def test_trend_is_scipys_regression_on_log2_parameters_with_the_models_as_n():
    rates = np.array([0.4, 0.2, 0.7, 0.8, 0.5, 1.0])
    params = np.array([8, 24, 70, 100, 200, 405])
    est = trend_across_models(rates, params, 60, percent=True, counted="games")
    fit = stats.linregress(np.log2(params), rates)
    t = stats.t.ppf(0.975, len(rates) - 2)
    assert est.value == pytest.approx(fit.slope) and est.p == pytest.approx(fit.pvalue, abs=1e-9)
    assert (est.low, est.high) == pytest.approx((fit.slope - t * fit.stderr, fit.slope + t * fit.stderr))
    # n is what the slope's degrees of freedom rest on: 6 models (4 df), the 60 games beside it.
    assert (est.n, est.units, est.detail) == (6, "models", "60 games")


def test_trend_needs_three_models():
    est = trend_across_models(np.array([0.1, 0.5]), np.array([1, 2]), 20, percent=True)
    assert est.reason is not None and "3 models" in est.reason and math.isnan(est.value)


@pytest.mark.parametrize("kind, value, verdict", [
    ({"direction": "positive"}, 0.3, "supported"), ({"direction": "positive"}, -0.3, "contradicted"),
    ({"direction": "positive"}, 0.05, "not resolvable with this design"),
    ({"direction": "negative"}, -0.3, "supported"),
    ({"at_least": 0.1}, 0.3, "supported"), ({"at_least": 0.1}, 0.12, "not resolvable with this design"),
    ({"at_least": 0.25}, 0.02, "contradicted"),  # significantly above 0, significantly below the claimed 0.25
    ({"at_most": 0.1}, -0.2, "supported"), ({"at_most": 0.1}, 0.3, "contradicted"),
    ({"range": (0.25, 0.4)}, 0.3, "not resolvable with this design"),  # the 95% interval reaches below 0.25
])
def test_each_kind_is_decided_by_its_95_percent_interval_when_alone(kind, value, verdict):
    (d,) = decide_claims([(options(**kind), estimate(value, 0.05))])
    assert d.verdict == verdict and d.alpha == 0.025 and d.level == pytest.approx(0.95)
    assert (d.low, d.high) == pytest.approx((value - Z * 0.05, value + Z * 0.05))


def test_a_range_is_supported_when_its_interval_lies_inside():
    (inside, outside) = decide_claims([(options(range=(0.45, 0.55)), estimate(0.5, 0.01)),
                                       (options(range=(0.45, 0.55)), estimate(0.2, 0.05))])
    assert inside.verdict == "supported" and outside.verdict == "contradicted"
    assert inside.p == pytest.approx(stats.norm.sf(0.05 / 0.01))  # TOST: the larger one-sided p


def test_a_direction_with_an_effect_is_a_sign_claim_with_a_power_assumption():
    # Old form: direction + effect. The effect is only the power assumption, not a claimed magnitude.
    (d,) = decide_claims([(options(direction="positive", effect=0.3), estimate(0.01, 0.05))])
    assert d.verdict == "not resolvable with this design" and d.power > 0.99 and "power" in d.why
    (sign,) = decide_claims([(options(direction="positive", effect=0.3), estimate(0.12, 0.05))])
    assert sign.verdict == "supported"  # 0.12 > 0 although the assumed effect was 0.3


def test_holm_decides_the_second_claim_at_its_step():
    claims = [(options(direction="positive"), estimate(0.3, 0.05)),  # p ~ 1e-9: step 1 of 2 at 1.25%
              (options(direction="positive"), estimate(0.1, 0.05))]  # p = 0.023 < 2.5% alone, step 2 at 2.5%
    first, second = decide_claims(claims)
    assert (first.step, first.of, first.alpha) == (1, 2, 0.0125) and first.verdict == "supported"
    assert (second.step, second.alpha) == (2, 0.025) and second.verdict == "supported"
    # With a third claim, the second (p = 0.023) is decided at 2.5% / 2 and fails: Holm stops there and
    # the third (p = 0.036) is decided at that same level, as its printed interval (98.75%) shows.
    third = (options(direction="positive"), estimate(0.09, 0.05))
    a, b, c = decide_claims([*claims, third])
    assert (a.alpha, b.alpha, c.alpha) == pytest.approx((0.025 / 3, 0.025 / 2, 0.025 / 2))
    assert a.verdict == "supported" and b.verdict == c.verdict == "not resolvable with this design"
    assert a.holm_p < 0.025 <= b.holm_p <= c.holm_p and c.level == pytest.approx(0.975)
    # A stronger second claim (p = 0.0013) clears its step's 1.25%.
    a, b, c = decide_claims([claims[0], (options(direction="positive"), estimate(0.15, 0.05)), third])
    assert b.verdict == "supported" and (b.step, c.step) == (2, 3)


def test_claim_options_take_exactly_one_kind():
    for bad in [{}, {"direction": "positive", "range": (0, 1)}, {"at_least": 0.1, "at_most": 0.3},
                {"range": (0.5, 0.4)}, {"range": (0.1, 0.2), "effect": 0.1}]:
        with pytest.raises(ValueError):
            options(**bad)
    assert options(at_least=0.1).claimed() == Claimed("at_least", low=0.1)
    assert options(direction="positive").claimed(1.0) == Claimed("direction", low=1.0)  # a ratio's no effect


# ----------------------------------------------------------------------------- the property test

def _random_family(rng: np.random.Generator):
    """A random estimate: a normal or t family, bootstrap-like quantiles (a step function), or a ratio."""
    value, se = rng.normal(0, 0.2), rng.uniform(0.01, 0.2)
    kind = rng.integers(4)
    if kind == 0:
        return value, normal_family(value, se), 0.0
    if kind == 1:
        return value, t_family(value, se, int(rng.integers(1, 30))), 0.0
    if kind == 2:
        draws = rng.normal(value, se, int(rng.integers(50, 500))) + rng.exponential(se, 1)[0] * rng.normal()
        return value, quantile_family(draws), 0.0
    ratio = math.exp(rng.normal(0, 0.7))
    return ratio, log_normal_family(ratio, se * 3), 1.0


def _random_claimed(rng: np.random.Generator, null: float) -> dict:
    near = null + rng.normal(0, 0.15)
    return [{"direction": rng.choice(["positive", "negative"])}, {"at_least": near}, {"at_most": near},
            {"range": (near, near + rng.uniform(0.01, 0.6))}][rng.integers(4)]


def test_verdicts_are_what_the_printed_intervals_say_and_holm_agrees():
    rng = np.random.default_rng(2024)
    checked = {"supported": 0, "contradicted": 0, "not resolvable with this design": 0}
    for _ in range(150):
        claims = []
        for _ in range(int(rng.integers(1, 6))):
            value, family, null = _random_family(rng)
            est = from_family(value, family, 10, "q", "t", null=null)
            kind = _random_claimed(rng, null)
            if rng.random() < 0.25:  # an intersection-union claim of 2-3 parts
                parts = []
                for _ in range(int(rng.integers(2, 4))):
                    v, f, n0 = _random_family(rng)
                    parts.append(ClaimPart("part", from_family(v, f, 10, "q", "t", null=n0),
                                           options(**_random_claimed(rng, n0)).claimed(n0)))
                est = ClaimEstimate(**{**est.__dict__, "parts": tuple(parts)})
            claims.append((options(**kind), est))
        decisions = decide_claims(claims)
        for (opts, est), d in zip(claims, decisions):
            parts = est.parts or (ClaimPart("c", est, opts.claimed(est.null)),)
            # The printed interval is the binding part's family at the printed level ...
            bound = d.bound
            assert (d.low, d.high) == bound.estimate.interval_at(2 * d.alpha) and d.level == 1 - 2 * d.alpha
            # ... the verdict is what it says about that part's claim ...
            assert d.verdict == verdict_of(d.low, d.high, bound.claimed)
            # ... supported only when every part's interval at that level lies inside its claim ...
            inside = [verdict_of(*p.estimate.interval_at(2 * d.alpha), p.claimed) == "supported" for p in parts]
            assert (d.verdict == "supported") == all(inside)
            # ... and Holm's adjusted p is below 2.5% exactly then.
            assert (d.holm_p < 0.025) == (d.verdict == "supported")
            # The claim's p is the largest one-sided p against a boundary over the parts.
            own = [max([p_above(p.estimate.interval_at, p.claimed.low)] * math.isfinite(p.claimed.low)
                       + [p_below(p.estimate.interval_at, p.claimed.high)] * math.isfinite(p.claimed.high))
                   for p in parts]
            assert d.p == pytest.approx(max(own), abs=1e-9)
            checked[d.verdict] += 1
    assert min(checked.values()) >= 20, checked  # every verdict was exercised


# ---------------------------------------------------------------------- a claimed magnitude is tested

SIZES = [8, 24, 70, 100, 200, 405]  # the model-size write-up's six models


def _trend_units(rng: np.random.Generator, slope: float, games: int = 10, sd: float = 0.03) -> ClaimUnits:
    """Mirror-match games of six models whose mean rises `slope` per doubling (a mean metric)."""
    models = np.repeat([f"m{m}" for m in range(len(SIZES))], games)
    seeds = np.tile(np.arange(games), len(SIZES))
    value = 0.2 + slope * np.repeat(np.log2(SIZES), games) + rng.normal(0, sd, len(models))
    frame = pd.DataFrame({"trial_id": [f"{m}-{g}" for m, g in zip(models, seeds)], "value": value,
                          "cell": [{"agent": m} for m in models], "seed": seeds, "item": "",
                          "cluster": seeds.astype(str), "model": models})
    return ClaimUnits(frame, Metric("divergence", "Divergence", "mean", "", ""),
                      models={f"m{m}": ModelFacts(s, "f") for m, s in enumerate(SIZES)}, counted="games")


def supported_rate(slope: float, claim: dict, draws: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws):
        (d,) = decide_claims([(options(**claim), trend(_trend_units(rng, slope)))])
        hits += d.verdict == "supported"
    return hits / draws


def test_at_least_a_magnitude_is_not_supported_by_a_smaller_true_slope():
    # True slope 0.02 per doubling, claim "at least 0.10": the sign alone is detected almost always
    # (as today's direction + effect claim was: 95% of simulated studies supported it) ...
    draws = 200
    sign = supported_rate(0.02, {"direction": "positive", "effect": 0.10}, draws, seed=1)
    assert sign > 0.9
    # ... but the magnitude is not: never supported.
    assert supported_rate(0.02, {"at_least": 0.10}, draws, seed=1) == 0.0
    # At the boundary (true slope exactly 0.10) it is supported at most 2.5% of the time, up to MC error.
    draws = 800
    rate = supported_rate(0.10, {"at_least": 0.10}, draws, seed=2)
    mc = math.sqrt(0.025 * 0.975 / draws)
    assert rate <= 0.025 + 2 * mc, (rate, mc)
