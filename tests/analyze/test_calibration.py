"""The calibration check (issue 21): on small synthetic designs the report's own claim tests hold their
nominal false-support rate and its intervals cover, within Monte Carlo error; a planted
anti-conservative test is caught; the CLI refuses a bad draw count (its printout of a study's claims is
checked with that study's scenario tests)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine.analyze.calibration import (COVERAGE_TARGET, CellCase, ClaimCase, Setup, calibrate, calibrate_cells,
                                        calibrate_claim)
from engine.analyze.claim_stats import from_family
from engine.analyze.claim_units import ModelFacts, _contrast_values, cluster_mean
from engine.analyze.inference import normal_family
from engine.cli import main
from engine.kernel.contracts import Metric
from engine.report.sections.calibration import claim_rows
from engine.report.claim_tests import (Difference, DifferenceClaim, Interaction, InteractionClaim, Reduction,
                                       ReductionClaim)

RATE = Metric("rate", "Rate", "proportion", "", "", percent=True)
MEAN = Metric("score", "Score", "mean", "", "")
DRAWS = 200
SEEDS = 20


def design(levels=("on", "off"), seeds=SEEDS) -> pd.DataFrame:
    """One model, a two-level condition, `seeds` seeds: paired on the seed, clustered on it."""
    rows = [{"trial_id": f"{level}-{s}", "cell_id": level, "cell": {"model": "m", "condition": level}, "seed": s,
             "item": "", "cluster": f"seed {s}", "model": "m"} for level, s in itertools.product(levels, range(seeds))]
    return pd.DataFrame(rows)


def difference_case(metric=RATE, estimate=None, **claim) -> ClaimCase:
    options = DifferenceClaim(claim="on raises it", test="difference", metric=metric.name, a={"condition": "on"},
                              b={"condition": "off"}, **(claim or {"direction": "positive", "effect": 0.3}))
    test = Difference()
    return ClaimCase(options.claim, "difference", options, estimate or (lambda u: test.from_units(u, options)),
                     design(), metric, 0.4, 1.0, {"m": ModelFacts(1.0, "f")}, "trials")


def within(f: dict, nominal: float) -> bool:
    return f["value"] <= nominal + 2 * f["se"]


def covers(f: dict) -> bool:
    return f["value"] >= COVERAGE_TARGET - 2 * f["se"]


@pytest.mark.parametrize("claim", [{"direction": "positive", "effect": 0.3}, {"at_least": 0.1, "effect": 0.2},
                                   {"range": (-0.35, 0.35)}])
def test_the_difference_test_holds_its_level_and_its_interval_covers(claim):
    out = calibrate_claim(difference_case(**claim), DRAWS, 1, 0.3, lambda n: None)
    null = out["null"]
    assert null["supported"]["draws"] == DRAWS
    assert within(null["supported"], out["nominal"]), out
    assert covers(null["coverage"]), out
    power = out["effect"]["supported"]
    assert power["value"] - 2 * power["se"] > null["supported"]["value"]  # the stated effect is detected more often


def test_the_reduction_test_holds_its_level_at_both_ends_of_its_range():
    options = ReductionClaim(claim="cuts it by 45-55%", test="reduction", metric="rate", control={"condition": "off"},
                             treated={"condition": "on"}, range=(0.45, 0.55))
    test = Reduction()
    case = ClaimCase(options.claim, "reduction", options, lambda u: test.from_units(u, options), design(seeds=60),
                     RATE, 0.6, 1.0, {}, "trials")
    out = calibrate_claim(case, 200, 2, 0.0, lambda n: None)
    assert within(out["null"]["supported"], out["nominal"]), out


def test_a_planted_anti_conservative_claim_test_is_caught():
    """An interval a third as wide as it should be: supported far more often than 2.5% at no effect,
    and flagged so in the section's rows."""
    honest = difference_case()
    test = Difference()

    def narrow(units):
        est = test.from_units(units, honest.options)
        se = (est.high - est.low) / 3.92 / 3
        return from_family(est.value, normal_family(est.value, se), est.n, est.quantity, "too narrow", True)
    out = calibrate_claim(replace(honest, estimate=narrow), 200, 3, 0.3, lambda n: None)
    assert not within(out["null"]["supported"], out["nominal"])
    assert not covers(out["null"]["coverage"])
    result = {"claims": [out], "cells": [], "contrasts": [], "coverage_target": COVERAGE_TARGET}
    assert "ANTI-CONSERVATIVE" in claim_rows(result)[0][-1]


@pytest.mark.parametrize("metric", [RATE, MEAN])
def test_per_cell_intervals_cover(metric):
    frame = design(seeds=20).assign(item_cluster=None)
    mu = np.where(frame["cell_id"] == "on", 0.5, 0.1) if metric is RATE else np.zeros(len(frame))
    case = CellCase(metric, frame, mu, np.ones(len(frame)))
    out = calibrate_cells(case, 150, 4, 0.0, lambda n: None)
    assert covers(out["coverage"]) and covers(out["worst_cell"]), out
    assert out["halfwidth"]["draws"] == 150


def test_same_seed_same_numbers_other_seed_other_numbers():
    setup = Setup([difference_case()], [], [], 0.2, [])
    first, again, other = (calibrate(setup, 40, s) for s in (5, 5, 6))
    assert first == again
    assert first != other


# ------------------------------------------------------------------------------------------ CLI

@pytest.mark.parametrize("draws", ["0", "-5"])
def test_a_bad_draw_count_exits_2(draws, capsys):
    assert main(["calibrate", "model_size", "--draws", draws, "--no-progress"]) == 2
    assert "--draws" in capsys.readouterr().err


# --------------------------------------------------------------------- interaction at its margin

def _two_by_two(seeds: int = 40) -> pd.DataFrame:
    """One model, goal x threat crossed, paired and clustered on the seed."""
    rows = [{"trial_id": f"{g}-{t}-{s}", "cell_id": f"{g}-{t}", "cell": {"model": "m", "goal": g, "threat": t},
             "seed": s, "item": "", "cluster": f"seed {s}", "model": "m"}
            for g, t, s in itertools.product(("yes", "no"), ("yes", "no"), range(seeds))]
    return pd.DataFrame(rows)


def interaction_case(estimate=None) -> ClaimCase:
    options = InteractionClaim(claim="needs both", test="interaction", metric="rate", present={"goal": "yes",
                               "threat": "yes"}, absent={"goal": "no", "threat": "no"}, direction="positive",
                               margin=0.05)
    test = Interaction()
    return ClaimCase(options.claim, "interaction", options, estimate or (lambda u: test.from_units(u, options)),
                     _two_by_two(), RATE, 0.2, 1.0, {"m": ModelFacts(1.0, "f")}, "trials")


def _contrast_only(options):
    """The interaction contrast alone, > 0: the test "both beats the rest" was, blind to the partial cells."""
    def estimate(units):
        cells = [({"goal": g, "threat": t}, 1 if g == t else -1) for g in ("yes", "no") for t in ("yes", "no")]
        values = _contrast_values(units, cells, {"goal", "threat"})
        value, family, k = cluster_mean(values["value"].to_numpy(), values["cluster"].to_numpy())
        return from_family(value, family, k, "contrast", "t", True)
    return estimate


def test_the_interaction_is_simulated_with_each_partial_cell_at_its_margin():
    """"Neither alone suffices" is simulated where it is false at its boundary: a single-factor cell at the
    control + margin while the interaction contrast clearly holds. A test that checks the contrast alone
    (the old "both beats every other cell" kind: supported 49.5% with one factor alone at +20 points) is
    caught there."""
    options = interaction_case().options
    caught = calibrate_claim(interaction_case(_contrast_only(options)), 20, 8, 0.2, lambda n: None)
    hows = [b["how"] for b in caught["boundaries"]]
    assert hows[0] == "direction: no effect" and len(hows) == 3, hows
    assert all("at the control + its margin 0.05" in h for h in hows[1:]), hows
    assert "margin" in caught["null_how"] and caught["null"]["supported"]["value"] > 0.5, caught
    result = {"claims": [caught], "cells": [], "contrasts": [], "coverage_target": COVERAGE_TARGET}
    assert "ANTI-CONSERVATIVE" in claim_rows(result)[0][-1]


@pytest.mark.slow
def test_the_interaction_test_holds_its_level_with_a_partial_cell_at_its_margin():
    out = calibrate_claim(interaction_case(), 200, 9, 0.2, lambda n: None)
    for boundary in out["boundaries"]:
        assert within(boundary["supported"], out["nominal"]), out["boundaries"]
