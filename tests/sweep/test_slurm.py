"""Issue 25: sweeps through `hydra/launcher=slurm` on a real single-node Slurm cluster (started by the
`slurm_cluster` fixture in a temporary folder), with scripted agents: no model runs.

Each job is a Slurm array task: its id is recorded in `sweep_jobs.scheduler_jobs` and Slurm's
job-completion log lists it (this cluster has no slurmdbd, so no `sacct`: see slurm_cluster.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import duckdb
import pytest
from conftest import REPO, run_cli
from slurm_cluster import SlurmCluster, missing_reason

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


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_sweep_runs_each_job_as_a_slurm_job_and_merges_them(slurm_cluster, tmp_path):
    out = run_cli("run", *sweep_args(tmp_path, "design.seeds=3", "scenario.max_turns=3,5"), "--formats", "html",
                  timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    db = tmp_path / "study.duckdb"
    jobs = rows(db, "SELECT job_index, swept, scheduler_jobs FROM sweep_jobs ORDER BY job_index")
    assert [json.loads(s) for _, s, _ in jobs] == [{"scenario.max_turns": "3"}, {"scenario.max_turns": "5"}]
    completed = slurm_cluster.completed()
    ids = []
    for _, _, scheduler in jobs:
        (attempt,) = json.loads(scheduler)
        assert attempt["executor"] == "slurm"
        ids.append(attempt["job_id"])
        assert completed[attempt["job_id"]]["JobState"] == "COMPLETED", completed.get(attempt["job_id"])
        assert completed[attempt["job_id"]]["NodeList"] == slurm_cluster.node
    assert len(set(ids)) == 2
    # Merged by the launching process: every planned trial of both jobs is finished in the study database.
    ((planned, done),) = rows(db, "SELECT (SELECT count(*) FROM plan WHERE spec_hash IN (SELECT spec_hash FROM "
                                  "sweep_jobs)), (SELECT count(*) FROM trials WHERE status = 'done')")
    assert planned == done == 2 * 2 * 3
    report = next((tmp_path / "report_sweeps").glob("*/index.html")).read_text()
    assert "scenario.max_turns=3" in report and "scenario.max_turns=5" in report
