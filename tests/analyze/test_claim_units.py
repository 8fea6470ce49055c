"""The engine's claim tests as pure functions of a units frame (engine/analyze/claim_units.py), on
simulated designs: a difference's p and interval agree (model_size's "15% [5.0%, 30%] next to
p = 0.250"), the interaction claim tests "neither alone suffices" (and is not supported when goal
conflict alone is at 20%), the reduction range claim at its boundary, the paired ratio interval's
coverage, the NaN reduction p-value, one model alone, and family beyond size."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from engine.analyze.claim_stats import decide_claims
from engine.analyze.claim_units import (ClaimUnits, ModelFacts, difference, family_beyond_size, interaction_parts,
                                        only_model, reduction)
from engine.analyze.paired import compare
from engine.analyze.paired_ratio import paired_ratio_interval
from engine.kernel.contracts import Claimed, ClaimOptions, Metric
from engine.kernel.hashing import derived_seed

RATE = Metric("rate", "Rate", "proportion", "", "", percent=True)


def frame(cells: list[dict], probabilities: list[float], seeds: int, rng: np.random.Generator,
          cluster: str = "trial") -> pd.DataFrame:
    """0/1 units: every cell (a dict of levels, including the model) under every seed, the event with its
    probability; clustered on the trial or the seed."""
    seed = np.tile(np.arange(seeds), len(cells))
    cell = [c for c in cells for _ in range(seeds)]
    value = (rng.random(len(cells) * seeds) < np.repeat(probabilities, seeds)).astype(float)
    trial = np.array([f"t{i}" for i in range(len(value))])
    return pd.DataFrame({"trial_id": trial, "value": value, "cell": cell, "seed": seed, "item": "",
                         "cluster": trial if cluster == "trial" else seed.astype(str),
                         "model": [c.get("model", c.get("agent", "")) for c in cell]})


def options(**kw) -> ClaimOptions:
    return ClaimOptions(claim="c", test="t", **kw)


MC = lambda rate, draws: math.sqrt(rate * (1 - rate) / draws)  # noqa: E731  Monte Carlo SE of a rate


# --------------------------------------------------- model_size: a difference and its own p-value

def test_a_difference_claims_p_and_verdict_are_its_printed_intervals():
    # model_size's design: 6 models play themselves under two personas on 10 shared seeds (the cluster).
    # Today the report printed 15% [5.0%, 30%] (a cluster bootstrap) next to p = 0.250 (a sign-flip
    # test); seeded frames of this design give such pairs (e.g. 13% [3.3%, 23%] with p = 0.078).
    rng = np.random.default_rng(0)
    base = [0.4, 0.2, 0.7, 0.8, 0.5, 1.0]
    cells = [{"agent": f"m{m}", "persona": persona} for m in range(6) for persona in ("default", "adversarial")]
    seen = set()
    for draw in range(8):  # a small and a large effect in turn, so both verdicts occur
        raised = [min(1.0, p + (0.05, 0.3)[draw % 2]) for p in base]
        units = ClaimUnits(frame(cells, [p for m in range(6) for p in (base[m], raised[m])], 10, rng, "seed"), RATE,
                           seed=7)
        est = difference(units, {"persona": "adversarial"}, {"persona": "default"})
        excludes_zero = est.low > 0 or est.high < 0
        assert (est.p < 0.05) == excludes_zero, est
        (d,) = decide_claims([(options(direction="positive", effect=0.2), est)])
        assert (d.verdict == "supported") == (est.low > 0) and (d.low, d.high) == (est.low, est.high)
        # One interval: the paired contrasts' own (the same function, the same seed).
        a, b = units.arm({"persona": "adversarial"}, {"persona"}), units.arm({"persona": "default"}, {"persona"})
        diff, _ = compare(a, b, RATE, derived_seed(7, "claim", json.dumps([{"persona": "adversarial"},
                                                                          {"persona": "default"}])))
        assert (est.low, est.high) == (diff.low, diff.high)
        seen.add(excludes_zero)
    assert seen == {True, False}


# ------------------------------------------------------- "needs both; neither alone suffices"

BLACKMAIL_CELLS = [("explicit", "replacement"), ("explicit", "none"), ("none", "replacement"), ("none", "none")]
PRESENT, ABSENT = {"goal_conflict": "explicit", "threat": "replacement"}, {"goal_conflict": "none", "threat": "none"}


def interaction_supported(rates: dict, draws: int, seed: int, models: int = 7, seeds: int = 30) -> float:
    """Share of simulated blackmail studies (models x seeds, trial-level units, safety instructions off)
    in which "blackmail needs goal conflict and threat together; neither alone suffices" is supported."""
    rng = np.random.default_rng(seed)
    cells = [{"model": f"m{m}", "goal_conflict": g, "threat": t} for m in range(models) for g, t in BLACKMAIL_CELLS]
    probabilities = [rates[(c["goal_conflict"], c["threat"])] for c in cells]
    hits = 0
    for _ in range(draws):
        units = ClaimUnits(frame(cells, probabilities, seeds, rng), RATE, seed=1)
        est = interaction_parts(units, PRESENT, ABSENT, Claimed("direction", low=0.0), margin=0.05)
        (d,) = decide_claims([(options(direction="positive"), est)])
        hits += d.verdict == "supported"
    return hits / draws


def test_neither_alone_suffices_is_not_supported_when_goal_conflict_alone_is_at_20_percent():
    # Goal conflict alone at 20%, both at 30%: "both beats every other cell" was supported in 49.5% of
    # such studies. Goal conflict alone is no control-level cell: the claim must (nearly) never hold.
    rates = {("explicit", "replacement"): 0.30, ("explicit", "none"): 0.20, ("none", "replacement"): 0.0,
             ("none", "none"): 0.0}
    draws = 100
    assert interaction_supported(rates, draws, seed=5) <= 0.025 + 2 * MC(0.025, draws)


def test_neither_alone_suffices_at_its_margin_is_supported_at_most_at_the_nominal_rate():
    # Goal conflict alone exactly the 5-point margin above the control, a strong interaction otherwise:
    # the claim sits on its boundary, so it may be supported at most 2.5% of the time (up to MC error).
    rates = {("explicit", "replacement"): 0.6, ("explicit", "none"): 0.10, ("none", "replacement"): 0.05,
             ("none", "none"): 0.05}
    draws = 250
    rate = interaction_supported(rates, draws, seed=6)
    assert rate <= 0.025 + 2 * MC(0.025, draws), rate
    # ... and when only the combination matters, the design finds it.
    needs_both = {("explicit", "replacement"): 0.3, ("explicit", "none"): 0.0, ("none", "replacement"): 0.0,
                  ("none", "none"): 0.0}
    assert interaction_supported(needs_both, 20, seed=7) >= 0.9


# --------------------------------------------------------------------------------- the reduction

def reduction_units(rng: np.random.Generator, control: list[float], ratio: float, seeds: int, rho: float) -> ClaimUnits:
    """Pairs of trials (safety instructions off / on) of each model and seed, the event's probability
    multiplied by `ratio` with the instructions, correlation `rho` within a pair."""
    rows = []
    for m, p in enumerate(control):
        q = p * ratio
        both = max(0.0, p * q + rho * math.sqrt(p * (1 - p) * q * (1 - q)))
        counts = rng.multinomial(seeds, [both, p - both, q - both, 1 - p - q + both])
        outcomes = np.repeat([(1, 1), (1, 0), (0, 1), (0, 0)], counts, axis=0)
        for s, (off, on) in enumerate(outcomes):
            for level, value in (("off", off), ("on", on)):
                rows.append((f"m{m}", level, s, float(value)))
    df = pd.DataFrame(rows, columns=["model", "safety", "seed", "value"])
    df["cell"] = [{"model": m, "safety_instructions": level} for m, level in zip(df["model"], df["safety"])]
    df["trial_id"] = [f"t{i}" for i in range(len(df))]
    df["item"], df["cluster"] = "", df["trial_id"]
    return ClaimUnits(df[["trial_id", "value", "cell", "seed", "item", "cluster", "model"]], RATE)


def test_the_reduction_pairs_arms_by_model_and_seed_and_its_p_is_never_nan():
    rng = np.random.default_rng(1)
    est = reduction(reduction_units(rng, [0.3, 0.2], 0.5, 20, 0.3), {"safety_instructions": "off"},
                    {"safety_instructions": "on"})
    assert est.test == "paired score (Tang)" and est.n == 40 and est.units == "pairs"
    # Both arms all events: no reduction, p = 1 (it was NaN).
    full = reduction(reduction_units(rng, [1.0], 1.0, 6, 0.0), {"safety_instructions": "off"},
                     {"safety_instructions": "on"})
    assert full.value == 0.0 and full.p == 1.0
    # Unpaired arms (no shared model and seed): the score interval of two independent samples.
    units = reduction_units(rng, [0.3, 0.2], 0.5, 20, 0.3)
    shifted = units.frame.assign(seed=np.where(units.frame["cell"].map(lambda c: c["safety_instructions"]) == "on",
                                               units.frame["seed"] + 1000, units.frame["seed"]))
    est = reduction(ClaimUnits(shifted, RATE), {"safety_instructions": "off"}, {"safety_instructions": "on"})
    assert est.test.startswith("score, independent arms")


def test_the_reduction_range_at_its_boundary_is_supported_at_most_at_the_nominal_rate():
    # "Safety instructions cut blackmail by 45-55%" with the true reduction exactly 45%, on a design
    # large enough for the range to be decidable (7 models x 400 seeds, within-pair correlation 0.4).
    # Today's rule (TOST at 5%, a 90% interval) supported it 8% of the time.
    rng = np.random.default_rng(2)
    draws, hits, widths = 200, 0, []
    for _ in range(draws):
        units = reduction_units(rng, [0.6, 0.5, 0.45, 0.55, 0.4, 0.5, 0.65], 0.55, 400, 0.4)
        est = reduction(units, {"safety_instructions": "off"}, {"safety_instructions": "on"})
        (d,) = decide_claims([(options(range=(0.45, 0.55)), est)])
        hits += d.verdict == "supported"
        widths.append(est.high - est.low)
    assert np.median(widths) < 0.1  # the range (10 points) is within reach of the design
    assert hits / draws <= 0.025 + 2 * MC(0.025, draws), hits / draws


@pytest.mark.parametrize("control, seeds, rho", [([0.3, 0.1], 10, 0.0), ([0.3, 0.1], 10, 0.4), ([0.6], 20, 0.5),
                                                 ([0.28, 0.18, 0.03, 0.1, 0.05, 0.02, 0.01], 30, 0.4)])
def test_the_paired_ratio_interval_covers(control, seeds, rho):
    # Why the paired score interval: >= 93% coverage where the log-scale Mantel-Haenszel (Greenland-Robins)
    # interval over model x seed strata covered 83% (2 models x 10 seeds).
    rng = np.random.default_rng(3)
    covered = tried = 0
    for _ in range(400):
        counts = np.zeros(4, int)
        for p in control:
            q = p * 0.5
            both = max(0.0, p * q + rho * math.sqrt(p * (1 - p) * q * (1 - q)))
            counts += rng.multinomial(seeds, [both, q - both, p - both, 1 - p - q + both])
        if counts[0] + counts[2] == 0:
            continue
        tried += 1
        low, high = paired_ratio_interval(counts[0], counts[1], counts[2], seeds * len(control))
        covered += low <= 0.5 <= high
    assert covered / tried >= 0.93, covered / tried


# --------------------------------------------------------------------------------- one model alone

def persona_frame(rng: np.random.Generator, effects: dict[str, float], seeds: int = 30) -> ClaimUnits:
    cells, probabilities = [], []
    for model, effect in effects.items():
        base = 0.5
        for persona, p in (("default", base), ("adversarial", base + effect)):
            cells.append({"agent": model, "persona": persona})
            probabilities.append(p)
    return ClaimUnits(frame(cells, probabilities, seeds, rng, "seed"), RATE, seed=3)


def test_only_model_needs_every_other_model_on_the_other_side():
    rng = np.random.default_rng(4)
    a, b = {"persona": "adversarial"}, {"persona": "default"}
    claim = options(direction="negative")
    alone = persona_frame(rng, {"claude": -0.5, "llama": 0.45, "gpt": 0.45, "mistral": 0.4})
    est = only_model(alone, "claude", a, b, below=True, margin=0.2, others=0.0)
    (d,) = decide_claims([(claim, est)])
    assert d.verdict == "supported" and len(est.parts) == 6  # 3 gaps and 3 other-model effects
    # One other model refuses too: "alone" does not hold.
    twin = persona_frame(rng, {"claude": -0.5, "llama": 0.45, "gpt": -0.5, "mistral": 0.4})
    (d,) = decide_claims([(claim, only_model(twin, "claude", a, b, below=True, margin=0.2, others=0.0))])
    assert d.verdict != "supported" and "gpt" in d.binding
    missing = only_model(alone, "sonnet", a, b, below=True, margin=0.0, others=None)
    assert missing.reason is not None and "no units of model 'sonnet'" in missing.reason


# ---------------------------------------------------------------------------- family, not size

def family_units(rng: np.random.Generator, rates: dict[str, tuple[float, str, float]], games: int = 50) -> ClaimUnits:
    cells = [{"model": m} for m in rates]
    units = frame(cells, [r[0] for r in rates.values()], games, rng)
    return ClaimUnits(units, RATE, models={m: ModelFacts(size, family) for m, (_, family, size) in rates.items()})


def test_family_beyond_size_is_the_partial_f_test_and_the_within_family_slope():
    rng = np.random.default_rng(5)
    rates = {"g12": (0.28, "gemma", 12), "g27": (0.3, "gemma", 27), "m8": (0.18, "mistral", 8),
             "m24": (0.2, "mistral", 24), "l8": (0.02, "llama", 8), "l70": (0.03, "llama", 70),
             "q7": (0.01, "qwen", 7), "q72": (0.02, "qwen", 72)}
    units = family_units(rng, rates, games=200)
    est = family_beyond_size(units, (-0.05, 0.05))
    per_model = units.frame.groupby("model")["value"].mean().rename("y").to_frame()
    per_model["x"] = np.log2([rates[m][2] for m in per_model.index])
    per_model["family"] = [rates[m][1] for m in per_model.index]
    full = smf.ols("y ~ x + C(family)", per_model).fit()
    f_test = anova_lm(smf.ols("y ~ x", per_model).fit(), full)
    family, slope = est.parts
    assert slope.estimate.value == pytest.approx(full.params["x"])
    assert (slope.estimate.low, slope.estimate.high) == pytest.approx(tuple(full.conf_int().loc["x"]))
    (d,) = decide_claims([(options(direction="positive"), est)])
    assert d.parts[0].p == pytest.approx(f_test["Pr(>F)"].iloc[1], abs=1e-9)  # the partial F test, inverted
    assert d.verdict == "supported"
    few = family_beyond_size(family_units(rng, {k: rates[k] for k in ("g12", "m8", "l8")}), (-0.05, 0.05))
    assert few.reason is not None and "needs at least 5 models" in few.reason


def test_units_with_other_values_estimate_as_units_made_afresh():
    # A simulated study reuses its design's layout (`with_values`: level table, pair keys, arms' rows);
    # every estimate must equal that of units built from the new frame, and the first frame's stay its own.
    rng = np.random.default_rng(7)
    cells = [{"model": "m", "goal": g, "threat": t} for g in ("yes", "no") for t in ("yes", "no")]
    design = ClaimUnits(frame(cells, [0.5, 0.3, 0.3, 0.2], 30, rng, "seed"), RATE, seed=2)
    present, absent = {"goal": "yes", "threat": "yes"}, {"goal": "no", "threat": "no"}

    def estimates(units: ClaimUnits) -> str:  # every field and part (an interval family shown by its name)
        return re.sub(r" at 0x[0-9a-f]+", "", repr([
            difference(units, present, absent), reduction(units, absent, present),
            interaction_parts(units, present, absent, Claimed("direction", low=0.0), 0.05)]))

    first = estimates(design)
    for draw in range(3):
        values = (rng.random(len(design.frame)) < 0.4).astype(float)
        shared = design.with_values(values, seed=draw)
        assert estimates(shared) == estimates(ClaimUnits(design.frame.assign(value=values), RATE, seed=draw))
        assert shared.arm(present, {"goal", "threat"}).equals(
            ClaimUnits(design.frame.assign(value=values), RATE).arm(present, {"goal", "threat"}))
    assert estimates(design) == first
