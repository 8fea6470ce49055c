"""Cohen's kappa and confusion matrices against hand computation."""

import math

import pytest

from engine.analyze.agreement import agreement


def test_kappa_matches_the_textbook_example():
    # 50 items: both say yes 20, both no 15, ref yes/other no 5, ref no/other yes 10.
    ref = ["yes"] * 25 + ["no"] * 25
    other = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    res = agreement(ref, other)
    po = 35 / 50
    pe = (25 / 50) * (30 / 50) + (25 / 50) * (20 / 50)
    assert res.accuracy == pytest.approx(po)
    assert res.kappa == pytest.approx((po - pe) / (1 - pe))
    assert res.kappa_low < res.kappa < res.kappa_high
    assert res.confusion.loc["yes", "no"] == 5 and res.confusion.loc["no", "yes"] == 10


def test_perfect_and_chance_agreement():
    labels = ["REFUSAL", "COMPLIANCE", "PARTIAL"] * 10
    assert agreement(labels, labels).kappa == pytest.approx(1.0)
    ref = ["a", "a", "b", "b"] * 25
    other = ["a", "b", "a", "b"] * 25
    assert agreement(ref, other).kappa == pytest.approx(0.0, abs=1e-12)


def test_labels_never_used_still_appear_in_the_matrix():
    res = agreement(["REFUSAL", "COMPLIANCE"], ["REFUSAL", "REFUSAL"],
                    labels=["COMPLIANCE", "PARTIAL", "REFUSAL", "ERROR"])
    assert list(res.confusion.columns) == ["COMPLIANCE", "PARTIAL", "REFUSAL", "ERROR"]
    assert res.confusion.loc["COMPLIANCE", "REFUSAL"] == 1 and res.n == 2


def test_degenerate_and_bad_input():
    assert math.isnan(agreement(["x"] * 5, ["x"] * 5).kappa)
    with pytest.raises(ValueError, match="differ in length"):
        agreement(["a"], ["a", "b"])
