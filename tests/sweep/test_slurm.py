"""Issue 25: sweeps through `hydra/launcher=slurm` on a real single-node Slurm cluster (started by the
`slurm_cluster` fixture in a temporary folder), with scripted agents: no model runs.

Each job is a Slurm array task: its id is recorded in `sweep_jobs.scheduler_jobs`, and Slurm's
accounting (`sacct`, through slurmdbd) and job-completion log list it."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import rows
from slurm_cluster import SlurmCluster, missing_reason
from test_one_writer import (ENV, FAST_S, LATENCY_S, QUIET, STUDY, SWEEP, TRIALS_PER_JOB, loopback_server, output,
                             paid_calls_on_record, start, study_args, wait_for)

from engine.plan.compile import compile_plan
from engine.sweep import expand_sweep

SCRIPTED = ["design.factors.agent=[scripted:hawk,scripted:random]", "~design.factors.persona", "design.controls=[]"]
# Tiny jobs: the machine has 2 cores; one CPU each, no memory request (the node has no RealMemory set).
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)  # sbatch, squeue, scancel of this process find it
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def sweep_args(tmp: Path, *extra: str) -> list[str]:
    return ["model_size", "-m", *SCRIPTED, f"store.path={tmp}/study.duckdb", f"report.output_dir={tmp}/report",
            *SLURM, *extra]



def test_a_sweep_runs_each_job_as_a_slurm_job_and_merges_them(slurm_cluster, tmp_path, run_main):
    # Launched in this process (its jobs are real Slurm jobs): what is checked is Slurm's, not the launch.
    out = run_main("run", *sweep_args(tmp_path, "design.seeds=3", "scenario.max_turns=3,5"), "--formats", "html")
    assert out.returncode == 0, out.stderr[-3000:]
    db = tmp_path / "study.duckdb"
    jobs = rows(db, "SELECT job_index, swept, scheduler_jobs FROM sweep_jobs ORDER BY job_index")
    assert [json.loads(s) for _, s, _ in jobs] == [{"scenario.max_turns": "3"}, {"scenario.max_turns": "5"}]
    ids = []
    for _, _, scheduler in jobs:
        (attempt,) = json.loads(scheduler)
        assert attempt["executor"] == "slurm" and attempt["host"] == slurm_cluster.node
        ids.append(attempt["job_id"])
    assert len(set(ids)) == 2
    accounted, completed = slurm_cluster.sacct(*ids), slurm_cluster.completed()
    for job_id in ids:
        assert accounted[job_id]["State"] == "COMPLETED" and accounted[job_id]["NodeList"] == slurm_cluster.node
        assert completed[job_id]["JobState"] == "COMPLETED"
    # Merged by the launching process: every planned trial of both jobs is finished in the study database.
    ((planned, done),) = rows(db, "SELECT (SELECT count(*) FROM plan WHERE spec_hash IN (SELECT spec_hash FROM "
                                  "sweep_jobs)), (SELECT count(*) FROM trials WHERE status = 'done')")
    assert planned == done == 2 * 2 * 3
    report = next((tmp_path / "report_sweeps").glob("*/index.html")).read_text()
    assert "scenario.max_turns=3" in report and "scenario.max_turns=5" in report


def attempts_of(tmp: Path) -> dict[str, list[dict]]:
    """Shard name -> the attempt lines its jobs wrote (engine/sweep/attempts.py)."""
    found = {}
    for path in tmp.glob("*.sweeps/*/shards/*.attempts.jsonl"):
        found[path.name.split(".")[0]] = [json.loads(ln) for ln in path.read_text().splitlines()]
    return found


def per_trial(db: Path) -> dict[str, tuple[str, int]]:
    """trial id -> (status, calls logged for it)."""
    return {t: (s, n) for t, s, n in rows(db, "SELECT t.trial_id, t.status, count(c.trial_id) FROM trials t"
                                              " LEFT JOIN calls c USING (trial_id) GROUP BY ALL")}


@pytest.mark.slow
def test_a_cancelled_slurm_job_is_named_and_the_same_command_resumes_it(slurm_cluster, tmp_path, run_main):
    """Two jobs of 34 one-call trials against the loopback server; job 1 is scancel'ed mid-run."""
    cut = tmp_path / "cancelled"
    with loopback_server(LATENCY_S) as server:
        # What an uninterrupted sweep stores: every trial its jobs' compiled plans hold, done with its one call.
        sweep = expand_sweep(STUDY, [*study_args(server, cut)[1:], *SWEEP[1:]])
        planned = {t.trial_id: ("done", 1) for job in sweep.jobs for t in compile_plan(job.loaded).trials}
        command = ["run", *study_args(server, cut), *SWEEP, *SLURM, *QUIET]
        first = start(tmp_path, "first", *command)
        try:
            # Job 1 is the second of the shards' attempts files to appear only by chance: find it by its id.
            wait_for(lambda: len(attempts_of(cut)) == 2 and server.stats()["requests"] >= 24,
                     "both Slurm jobs calling the server", first)
            job_1 = next(a[0]["job_id"] for a in attempts_of(cut).values() if a[0]["job_id"].endswith("_1"))
            assert job_1 in slurm_cluster.jobs()
            slurm_cluster.run("scancel", job_1)
            # Once job 1 has left the queue (submitit's job outlives the SIGTERM until Slurm's SIGKILL),
            # job 0's calls left need not be slow.
            deadline = time.monotonic() + 60
            while job_1 in slurm_cluster.jobs() and time.monotonic() < deadline:
                time.sleep(0.2)
            server.set_latency(FAST_S)
            first.wait(timeout=180)
        finally:
            if first.poll() is None:
                first.kill()
        said = output(tmp_path, "first")
        assert first.returncode != 0
        # Which job, and why: its Slurm id, and Slurm's cancellation from its log.
        assert re.search(rf"job 1 \(generation\.max_tokens=48\): slurm job {job_1} on \S+ stopped without "
                         rf"finishing", said), said[-3000:]
        assert "CANCELLED" in said and "rerun the same command to resume" in said, said[-3000:]
        assert slurm_cluster.sacct(job_1)[job_1]["State"] == "CANCELLED"
        (shard_1,) = [cut.glob(f"*.sweeps/*/shards/{name}.duckdb") for name, a in attempts_of(cut).items()
                      if a[0]["job_id"] == job_1][0]
        partial = rows(shard_1, "SELECT count(*) FROM trials WHERE status = 'done'")[0][0]
        assert 0 < partial < TRIALS_PER_JOB, partial  # cancelled mid-run

        again = run_main(*command, env=ENV)
        assert again.returncode == 0, again.stderr[-3000:]
        requests = server.stats()["requests"]
    # Nothing lost or doubled: the same trials, each with the same calls, as the uninterrupted sweep.
    assert per_trial(cut / "study.duckdb") == planned
    assert len(planned) == 2 * TRIALS_PER_JOB
    responses, calls, spent, cost = paid_calls_on_record(cut / "study.duckdb")
    assert responses == calls == 2 * TRIALS_PER_JOB and spent == pytest.approx(cost)
    # Paid again: at most the calls job 1 made in the writer's last interval before the cancel (as for a kill).
    assert 0 <= requests - 2 * TRIALS_PER_JOB <= 4
    # The cancelled attempt and the one that resumed it are both on record for job 1.
    ((scheduler,),) = rows(cut / "study.duckdb", "SELECT scheduler_jobs FROM sweep_jobs WHERE job_index = 1")
    ids = [a["job_id"] for a in json.loads(scheduler)]
    assert len(ids) == 2 and ids[0] == job_1 and ids[1] != job_1
    assert slurm_cluster.sacct(ids[1])[ids[1]]["State"] == "COMPLETED"


@pytest.mark.slow  # about 45 s: two jobs' imports on 2 cores
def test_a_job_that_fails_on_its_node_is_named_with_its_slurm_id_and_error(slurm_cluster, tmp_path, run_main):
    """The API key is set where the sweep is launched but not on the node (the sbatch script unsets it):
    the job raises there, before any call."""
    with loopback_server(0.02) as server:
        out = run_main("run", *study_args(server, tmp_path), *SWEEP, *SLURM, *QUIET,
                       "hydra.launcher.setup=['unset LOOPBACK_API_KEY']", env=ENV)
        assert server.stats()["requests"] == 0
    said = out.stdout + out.stderr
    assert out.returncode != 0
    job = re.search(r"job 0 \(generation\.max_tokens=64\): slurm job (\d+_0) on \S+ raised (.*)\n\s+\(log: (\S+)\)",
                    said)
    assert job, said[-3000:]
    job_id, error, log = job.groups()
    assert "LOOPBACK_API_KEY" in error
    assert job_id in slurm_cluster.sacct(job_id)  # (COMPLETED to Slurm: submitit catches what the job raised)
    assert Path(log).parent.name == job_id and "LOOPBACK_API_KEY" in Path(log).read_text()  # the error in its log
    assert "rerun the same command to resume" in said
    db = tmp_path / "study.duckdb"
    assert not db.exists() or rows(db, "SELECT count(*) FROM sweep_jobs") == [(0,)]  # nothing merged
