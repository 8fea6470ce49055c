"""In-process local models play side by side, one trial at a time each, in the plan's order; the
machine's cores are shared among the local models with calls left (no model is loaded here)."""

from types import SimpleNamespace

import pytest

from engine import load_study
from engine.execute.limits import Lane
from engine.execute.runner import CoreShare, by_lanes, by_routes, lane_routes, pool_sizes, round_robin
from engine.plan.compile import compile_plan
from engine.providers import local_llama
from engine.providers.local_llama import LocalLlamaProvider

SMOL, GEMMA = Lane("local", "local/smollm2-135m-instruct"), Lane("local", "local/gemma-3-270m")


@pytest.fixture(scope="module")
def plan():
    return compile_plan(load_study("model_size", ["store.path=/nonexistent/x.duckdb"]))


def test_each_local_model_of_the_main_job_is_a_group_of_its_own_played_one_trial_at_a_time(plan):
    todo = round_robin([(t, 1) for t in plan.trials])
    groups = by_lanes(plan, todo)
    assert set(groups) == {frozenset({SMOL}), frozenset({GEMMA}), frozenset()}
    # Before: one group for both models ({"local"}), one trial at a time between them.
    assert set(by_routes(plan, todo)) == {frozenset({"local"}), frozenset()}
    assert pool_sizes(plan.loaded.spec.executor, groups, lane_routes) == dict.fromkeys(groups, 1)
    rank = {t.trial_id: i for i, (t, _) in enumerate(todo)}
    for jobs in groups.values():  # each model's trials in the plan's order: its calls' order is fixed
        assert [rank[t.trial_id] for t, _ in jobs] == sorted(rank[t.trial_id] for t, _ in jobs)
    assert sum(map(len, groups.values())) == len(todo)


def test_cells_sharing_a_local_model_stay_in_one_group_and_api_routes_keep_theirs(plan):
    models = plan.loaded.spec.models
    api = models["smollm2_135m"].model_copy(update={"litellm_id": "openrouter/x/y", "route": "openrouter",
                                                    "weights": None})
    spec = SimpleNamespace(models={**models, "api": api}, executor=plan.loaded.spec.executor)
    stub = SimpleNamespace(loaded=SimpleNamespace(spec=spec),
                           scenario=SimpleNamespace(cell_models=lambda cell: cell["models"]))
    cells = {"s": ["smollm2_135m"], "g": ["gemma3_270m"], "sg": ["smollm2_135m", "gemma3_270m"],
             "a": ["api"], "as": ["api", "smollm2_135m"]}
    todo = [(SimpleNamespace(trial_id=f"{c}{i}", cell_id=c, cell={"models": m}), 1)
            for i in range(2) for c, m in cells.items()]
    groups = by_lanes(stub, todo)
    both = frozenset({SMOL, GEMMA, Lane("openrouter")})  # joined through "sg" and "as"
    assert set(groups) == {both, frozenset({Lane("openrouter")})}
    assert [t.trial_id for t, _ in groups[frozenset({Lane("openrouter")})]] == ["a0", "a1"]
    assert Lane.of(api) == Lane("openrouter") and Lane.of(api).key == "openrouter"  # an API model's slot key
    assert Lane.of(models["gemma3_270m"]).key == "local[local/gemma-3-270m]"  # its own slots


def test_cores_are_shared_among_the_models_with_trials_left_and_freed_when_one_finishes(monkeypatch):
    provider = LocalLlamaProvider()
    monkeypatch.setattr(local_llama, "_provider", provider)
    monkeypatch.setattr(local_llama, "machine_cores", lambda: 2)
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        provider.register(name, path=None, n_ctx=2048, n_threads=None)
    assert provider.threads_for("gemma-3-270m") == 2  # told nothing: all the cores
    share = CoreShare([frozenset({SMOL}), frozenset({GEMMA}), frozenset()])
    assert [provider.threads_for(n) for n in ("smollm2-135m-instruct", "gemma-3-270m")] == [1, 1]
    share.drained(frozenset({SMOL}))
    assert provider.threads_for("gemma-3-270m") == 2  # the last model left gets both cores
    share.drained(frozenset({GEMMA}))
    assert provider.threads_for("smollm2-135m-instruct") == 2  # after the run (a judge stage): all
    provider.register("gemma-3-270m", path=None, n_ctx=2048, n_threads=3)  # executor.local_threads=3
    CoreShare([frozenset({SMOL}), frozenset({GEMMA})])
    assert provider.threads_for("gemma-3-270m") == 3
