"""A study database planted by hand for the agentic-misalignment tests: planned trials, each done
with one response row and the three classifiers' verdicts (no model call, no judge call)."""

from __future__ import annotations

from engine.kernel.registry import get_scenario
from engine.store.db import StudyStore


def planned_store(db_path, loaded, trials):
    """A migrated store holding the plan of `trials` under `loaded`'s spec, the scenario and the
    metrics' parameters (the classifiers' verdict keys)."""
    scenario = get_scenario("agentic_misalignment")
    store = StudyStore(db_path)
    store.migrate_component(scenario.name, scenario.migrations_dir)
    store.record_plan(loaded.spec_hash, [(t.trial_id, t.cell_id, t.cell, t.seed) for t in trials])
    return store, scenario, scenario.metric_params(loaded.spec)


def commit_done(store, scenario, params, trial, response: dict, labels: dict[str, str]) -> None:
    """`trial` done with its `agentic_responses` row and one verdict per classifier alias
    ('s' structure, 'b' act, 'd' deliberation) labelled `labels[alias]`."""
    store.commit_trial(
        {"trial_id": trial.trial_id, "scenario": scenario.name, "cell_id": trial.cell_id, "cell": trial.cell,
         "seed": trial.seed, "inputs": trial.inputs, "status": "done", "attempt": 1},
        [], {"agentic_responses": [response]})
    for alias, label in labels.items():
        store.commit_verdict({"subject_id": trial.trial_id, "judge_id": params[f"{alias}_judge_id"],
                              "rubric_version": params[f"{alias}_rubric_version"],
                              "judge_fingerprint": params[f"{alias}_judge_fingerprint"], "judge_kind": "x",
                              "label": label, "status": "ok", "attempt": 1}, [])
