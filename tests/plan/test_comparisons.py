"""The comparisons a plan supports (engine/plan/comparisons.py): which arms, paired or not, and the
size of the clusters they share."""

from __future__ import annotations

import itertools

from engine.kernel.records import Trial
from engine.plan.comparisons import cell_sizes, main_trials, model_factor, planned_comparisons


def _trials(models, conditions, seeds, items=(None,), drop=()) -> list[Trial]:
    out = []
    for m, c, s, i in itertools.product(models, conditions, seeds, items):
        if (m, c, s, i) in drop:
            continue
        cell = {"model": m, "condition": c}
        inputs = {"item": {"prompt_id": i}} if i else {}
        out.append(Trial(f"{m}-{c}-{s}-{i}", f"{m}-{c}", cell, s, inputs))
    return out


def test_model_pairs_within_each_condition_and_factor_levels_pooled():
    factors = {"model": ["a", "b", "c"], "condition": ["x", "y"]}
    trials = _trials("abc", "xy", range(4))
    found = planned_comparisons(trials, factors, "model", "seed")
    families = [c.family for c in found]
    assert families.count("models within condition=x") == 3 and families.count("models within condition=y") == 3
    (levels,) = [c for c in found if c.factor == "condition"]
    assert (levels.first, levels.second, levels.n) == ("x", "y", 12)
    assert all(c.paired for c in found)
    # Without items, trials cluster on their seed: a model arm holds one trial per seed, a pooled
    # level arm three (one per model, sharing the seed's random numbers).
    assert {c.cluster_size for c in found if c.factor == "model"} == {1.0} and levels.cluster_size == 3.0


def test_items_are_the_cluster_and_a_missing_item_unpairs():
    factors = {"model": ["a", "b"], "condition": ["x"]}
    trials = _trials("ab", "x", range(3), items=("p1", "p2"), drop={("b", "x", 2, "p2")})
    (pair,) = planned_comparisons(trials, factors, "model", "item")
    assert not pair.paired and pair.n == 5
    assert cell_sizes(trials, "item")[0].cluster_size == 3.0  # an item under three seeds


def test_controls_are_not_compared_and_the_model_factor_is_found():
    factors = {"agent": ["m1", "m2"], "persona": ["p"]}
    trials = [Trial(f"{a}{s}", a, {"agent": a, "persona": "p"}, s, {}) for a in ("m1", "m2") for s in range(2)]
    control = [Trial(f"c{s}", "c", {"agent": "scripted:hawk"}, s, {}) for s in range(2)]
    assert model_factor(factors, {"m1", "m2"}) == "agent" and model_factor(factors, {"m1"}) is None
    assert main_trials(trials + control, factors) == trials
    (pair,) = planned_comparisons(trials + control, factors, "agent", "seed")
    assert pair.label == "m1 vs m2" and pair.paired


def test_a_declared_unit_overrides_the_default():
    trials = _trials("ab", "x", range(3))
    assert cell_sizes(trials, "trial")[0].cluster_size == 1.0
    (levels,) = [c for c in planned_comparisons(_trials("ab", "xy", range(3)), {"model": ["a", "b"],
                                                "condition": ["x", "y"]}, "model", "trial") if c.factor == "condition"]
    assert levels.cluster_size == 1.0
