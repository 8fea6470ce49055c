"""Trial ids are content hashes of what determines a trial's outcome."""

from engine.plan.compile import compile_plan
from engine import load_study


def ids(*overrides):
    plan = compile_plan(load_study("model_size", list(overrides)))
    return {(str(t.cell), t.seed): t.trial_id for t in plan.trials}


def llm_keys(table):
    return {k for k in table if "scripted:" not in k[0]}


def test_settings_that_do_not_change_outcomes_keep_ids():
    base = ids()
    assert ids("executor.max_concurrent_trials=1", "executor.budget.max_usd=1") == base
    assert ids("title=Another") == base


def test_more_seeds_keep_the_existing_trials():
    base, more = ids(), ids("design.seeds=12")
    assert all(more[k] == v for k, v in base.items())
    assert len(more) == len(base) * 12 // 10


def test_temperature_changes_llm_trials_only():
    base, hot = ids(), ids("generation.temperature=1.0")
    for key in base:
        same = base[key] == hot[key]
        assert same == (key not in llm_keys(base))


def test_game_rules_change_every_trial():
    base, longer = ids(), ids("scenario.max_turns=9")
    assert all(base[k] != longer[k] for k in base)


def test_persona_text_changes_only_cells_using_it():
    base = ids()
    changed = ids("scenario.personas.adversarial.text=Be ruthless.")
    for (cell, seed), tid in base.items():
        assert (changed[(cell, seed)] != tid) == ("adversarial" in cell)


def test_plan_shape_matches_the_design():
    plan = compile_plan(load_study("model_size"))
    llm_cells = [c for c in plan.cells if not str(c["agent"]).startswith("scripted:")]
    assert len(llm_cells) == 2 * 2 and len(plan.cells) == 4 + 7  # always-hold, hold-at-last-level and 5 scripted policies
    assert len(plan.trials) == 10 * len(plan.cells)
    mirror = [t for t in plan.trials if t.cell in llm_cells]
    assert all(t.inputs["sides"]["A"]["agent"] == t.inputs["sides"]["B"]["agent"] for t in mirror)


def test_estimates_are_those_of_each_trial_in_trial_order():
    from engine.kernel.registry import get_scenario
    from engine.study import estimate_plan

    for study, overrides in [("model_size", ["design.seeds=3"]), ("provider_vs_size", ["design.seeds=2"])]:
        plan = compile_plan(load_study(study, overrides))
        scenario = get_scenario(plan.scenario_name)
        each = [e for t in plan.trials for e in scenario.estimate(t.inputs)]
        assert plan.estimates() == each
        est = estimate_plan(plan)
        assert est.trials == len(plan.trials) and est.calls >= sum(e.calls for e in each)
