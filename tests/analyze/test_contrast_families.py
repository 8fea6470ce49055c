"""Primary and exploratory model contrasts (engine/analyze/contrast_families.py) on a synthetic units
frame: which pairs are primary by default and when named, the orientation a named pair is given, rows
identical to the table of every pair, and Holm's correction within each family only."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analyze.contrast_families import contrast_families, primary_pairs
from engine.analyze.paired import contrasts_of, keyed_units
from engine.analyze.paired_stats import holm
from engine.kernel.contracts import Metric

MODELS = ["m0", "m1", "m2", "m3"]
ATTACKS = ["direct", "roleplay", "hypothetical"]
METRIC = Metric(name="asr", label="ASR", kind="proportion", sql="", description="attack success", percent=True)


def units(seed: int = 3, items: int = 14):
    rng = np.random.default_rng(seed)
    rates = {"m0": 0.1, "m1": 0.5, "m2": 0.3, "m3": 0.35}
    rows = [{"model": m, "condition": {"attack": a}, "seed": 0, "item": f"p{i}",
             "value": float(rng.random() < rates[m]), "trial_id": f"{m}-{a}-{i}"}
            for m in MODELS for a in ATTACKS for i in range(items)]
    return keyed_units(rows, "item")[0]


def families(**kwargs):
    return contrast_families(units(), METRIC, ("model",), "item", "prompt", 7, **kwargs)


def key(c):
    return (c.model_a, c.model_b, c.condition)


def test_default_primary_family_is_each_model_against_the_first():
    fam = families()
    assert fam.rule == "reference" and fam.reference == "m0"
    assert fam.pairs == [("m1", "m0"), ("m2", "m0"), ("m3", "m0")]
    # Each primary pair within each attack and pooled over them.
    assert [key(c) for c in fam.primary] == [(a, "m0", s) for a in ("m1", "m2", "m3")
                                             for s in [f"attack={x}" for x in ATTACKS] + [None]]
    # The other pairs are exploratory, one row per pair pooled over the attacks.
    assert [key(c) for c in fam.exploratory] == [("m1", "m2", None), ("m1", "m3", None), ("m2", "m3", None)]
    assert fam.other_pairs == 3 and fam.exploratory_pooled


def test_rows_are_those_of_the_table_of_every_pair_and_holm_runs_within_each_family():
    fam = families()
    every = {key(c): c for c in contrasts_of(units(), METRIC, ("model",), "item", "prompt", 7).contrasts}
    for c in fam.exploratory:
        assert c.difference == every[key(c)].difference  # same units, same seed: the same estimate
    for c in fam.primary:  # model − reference: the table of every pair has reference − model
        mirrored = every[(c.model_b, c.model_a, c.condition)]
        assert c.difference.value == pytest.approx(-mirrored.difference.value)
        assert (c.a_only, c.b_only) == (mirrored.b_only, mirrored.a_only)
        if c.condition is not None:  # exact methods (not resampled under another seed): the mirror image
            assert c.difference.p == pytest.approx(mirrored.difference.p)
            assert (c.difference.low, c.difference.high) == pytest.approx((-mirrored.difference.high,
                                                                          -mirrored.difference.low))
    assert [c.holm_p for c in fam.primary] == holm([c.difference.p for c in fam.primary])
    assert [c.holm_p for c in fam.exploratory] == holm([c.difference.p for c in fam.exploratory])
    # Corrected over 12 primary rows, not over all 15 rows shown nor the 24 of every pair by condition.
    assert len(fam.primary) == 12 and any(c.holm_p < min(1.0, c.difference.p * 24) for c in fam.primary
                                          if c.difference.p > 0)


def test_named_pairs_keep_the_order_given_and_a_reference_can_be_named():
    fam = families(named=[("m3", "m1"), ("m0", "m2")])
    assert fam.rule == "named" and fam.pairs == [("m3", "m1"), ("m0", "m2")]
    assert {(c.model_a, c.model_b) for c in fam.primary} == {("m3", "m1"), ("m0", "m2")}
    assert {(c.model_a, c.model_b) for c in fam.exploratory} == {("m0", "m1"), ("m0", "m3"), ("m1", "m2"),
                                                                 ("m2", "m3")}
    by_reference = families(reference="m2")
    assert by_reference.pairs == [("m0", "m2"), ("m1", "m2"), ("m3", "m2")]


def test_a_primary_pair_the_data_lack_is_listed_not_compared():
    fam = families(named=[("m1", "m0"), ("m1", "ghost")])
    assert fam.absent == [("m1", "ghost")]
    assert {(c.model_a, c.model_b) for c in fam.primary} == {("m1", "m0")}


def test_no_exploratory_rows_when_asked_not_to():
    fam = families(exploratory=False)
    assert fam.exploratory == [] and fam.other_pairs == 3 and len(fam.primary) == 12


def test_primary_pairs_of_one_model_and_of_none():
    assert primary_pairs(["a"], None, None) == ([], "a")
    assert primary_pairs([], None, None) == ([], None)
    assert primary_pairs(["a", "b"], [("b", "a"), ("b", "a")], None) == ([("b", "a")], None)
