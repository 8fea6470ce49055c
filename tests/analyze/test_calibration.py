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
from engine.analyze.claim_units import ModelFacts
from engine.analyze.inference import normal_family
from engine.cli import main
from engine.kernel.contracts import Metric
from engine.report.sections.calibration import claim_rows
from engine.report.claim_tests import Difference, DifferenceClaim, ReductionClaim, Reduction

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
