"""The Ray executor against the local one: same plan, trial ids, cache and results. The runs are
in-process and join the module's Ray instance (`ray_local`); starting Ray from a run is
tests/execute/test_ray_limits.py's 429 test."""

import re
import shutil
from pathlib import Path

import duckdb
import pytest

SCRIPTED = ["design.factors.agent=[scripted:hawk,scripted:random,scripted:tit_for_tat]", "~design.factors.persona",
            "design.controls=[]", "design.seeds=6", "scenario.max_turns=5"]
# One llama.cpp thread per model: the same replies (conf/executor/local.yaml), and 4x faster than two
# when the test shares the machine's two cores (pytest-xdist).
LOCAL_MODEL = ["design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]", "design.controls=[]",
               "design.seeds=2", "scenario.max_turns=1", "executor.local_threads=1"]


def run(run_main, db: Path, args: list[str], *extra: str) -> str:
    out = run_main("run", "model_size", *args, f"store.path={db}", "--no-report", "--no-progress", *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def results(db: Path) -> dict[str, object]:
    """Everything that is a result: trials and their status, every move, every model reply."""
    con = duckdb.connect(str(db), read_only=True)
    out = {
        "trials": con.execute("SELECT trial_id, cell_id, seed, status FROM trials ORDER BY trial_id").fetchall(),
        "turns": con.execute("SELECT * EXCLUDE (trial_id), trial_id FROM escalation_turns"
                             " ORDER BY trial_id, turn, side").fetchall(),
        "replies": con.execute("SELECT trial_id, purpose, request_hash, response_text FROM calls"
                               " ORDER BY trial_id, purpose").fetchall(),
    }
    con.close()
    return out


def counts(stdout: str) -> dict[str, int]:
    m = re.search(r"(\d+) done now, (\d+) errors.*live calls (\d+), cache hits (\d+)", stdout, re.S)
    assert m, stdout[-2000:]
    return dict(zip(["done", "errors", "live", "cache"], map(int, m.groups())))


def test_ray_matches_local_on_scripted_agents(ray_local, run_main, tmp_path):
    run(run_main, tmp_path / "local.duckdb", SCRIPTED)
    stdout = run(run_main, tmp_path / "ray.duckdb", SCRIPTED, "executor=ray")
    local, ray = results(tmp_path / "local.duckdb"), results(tmp_path / "ray.duckdb")
    assert len(local["trials"]) == 18 and counts(stdout)["done"] == 18
    assert re.search(r"ray\s+executor", stdout)  # the trials really went through Ray
    assert ray == local


@pytest.mark.slow
def test_ray_matches_local_on_the_local_model_and_reads_the_same_cache(ray_local, run_main, tmp_path):
    run(run_main, tmp_path / "local.duckdb", LOCAL_MODEL)
    first_out = run(run_main, tmp_path / "ray.duckdb", LOCAL_MODEL, "executor=ray")
    first = counts(first_out)
    assert re.search(r"ray\s+executor", first_out)
    local, ray = results(tmp_path / "local.duckdb"), results(tmp_path / "ray.duckdb")
    assert first["live"] > 0 and first["errors"] == 0
    assert ray["trials"] == local["trials"] and ray["turns"] == local["turns"] and ray["replies"] == local["replies"]

    # The same cache: the local run's database with its trials forgotten replays every reply on Ray.
    replay = tmp_path / "replay.duckdb"
    shutil.copy(tmp_path / "local.duckdb", replay)
    con = duckdb.connect(str(replay))
    con.execute("DELETE FROM escalation_turns; DELETE FROM escalation_episodes; DELETE FROM trials; DELETE FROM calls")
    con.close()
    again = counts(run(run_main, replay, LOCAL_MODEL, "executor=ray"))
    assert again["live"] == 0 and again["cache"] > 0 and again["done"] == len(local["trials"])
    assert results(replay)["turns"] == local["turns"]


def test_route_limits_hold_across_ray_workers(ray_local):
    """Four workers share a route limited to one call at a time: their call windows never overlap."""
    import asyncio
    import time

    import ray

    from engine.execute.ray_backend import ActorRouteLimits, RouteLimiter
    from engine.spec.schema import Executor

    limiter = ray.remote(RouteLimiter).options(num_cpus=0).remote(Executor(concurrency={"default": 8, "api": 1}))

    @ray.remote(num_cpus=0.5)  # four at once on the module's two CPUs
    def hold(limiter) -> tuple[float, float]:
        async def once():
            async with ActorRouteLimits(limiter, "worker").slot("api"):
                start = time.time()
                await asyncio.sleep(0.3)
                return start, time.time()
        return asyncio.run(once())

    try:
        windows = sorted(ray.get([hold.remote(limiter) for _ in range(4)]))
    finally:
        ray.kill(limiter)
    assert all(later[0] >= earlier[1] for earlier, later in zip(windows, windows[1:])), windows
