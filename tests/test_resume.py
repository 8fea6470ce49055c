"""Kill a run with SIGKILL, restart it, and check every trial is stored exactly once."""

import os
import re
import signal
import subprocess
import sys
import time

import duckdb
from conftest import REPO

SCRIPTED = ["design.factors.agent=[scripted:hawk, scripted:random, scripted:tit_for_tat]",
            "~design.factors.persona", "design.controls=[]", "design.seeds=3000"]
PLANNED = 9000


def finished_counts(stdout: str) -> tuple[int, int, int]:
    m = re.search(r"trials: (\d+) planned, (\d+) already finished, (\d+) done now", stdout)
    assert m, f"no summary line in output:\n{stdout[-3000:]}"
    return int(m[1]), int(m[2]), int(m[3])


def test_sigkill_then_rerun_completes_every_trial_exactly_once(tmp_path, run_main):
    db = tmp_path / "resume.duckdb"
    args = ["run", "model_size", *SCRIPTED, f"store.path={db}", "--no-report"]
    # Output is a pipe, so progress comes as lines (here every 0.1 s): "trials N/9000 · ...".
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args, "executor.progress_every_s=0.1"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    # Wait until a few thousand trials have finished (group commit writes them every 0.5 s), then
    # kill without warning.
    finished = 0
    for line in proc.stdout:
        m = re.match(r"trials (\d+)/", line)
        if m and int(m[1]) >= 2000:
            finished = int(m[1])
            break
    time.sleep(1.0)
    assert proc.poll() is None and finished < PLANNED, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    rerun = run_main(*args, "--no-progress")  # in this process: what is checked is the resume, not the launch
    assert rerun.returncode == 0, rerun.stderr
    planned, already, now = finished_counts(rerun.stdout)
    assert planned == PLANNED
    assert 0 < already < planned  # the killed run had committed some trials, not all
    assert already + now == planned  # the rerun played only the missing ones

    con = duckdb.connect(str(db), read_only=True)
    trials = con.execute("SELECT count(*), count(DISTINCT trial_id), count(*) FILTER (WHERE status='done') "
                         "FROM trials").fetchone()
    assert trials == (planned, planned, planned)
    episodes = con.execute("SELECT count(*), sum(turns_played) FROM escalation_episodes").fetchone()
    turns = con.execute("SELECT count(*) / 2 FROM escalation_turns").fetchone()[0]
    assert episodes[0] == planned and turns == episodes[1]
    con.close()  # DuckDB allows one writer; the next run needs the file

    again = run_main(*args, "--no-progress")
    assert finished_counts(again.stdout) == (planned, planned, 0)


def test_a_database_held_by_another_process_is_a_clear_error(tmp_path):
    db = tmp_path / "held.duckdb"
    holder = duckdb.connect(str(db))
    result = subprocess.run([sys.executable, "-m", "engine", "run", "model_size", *SCRIPTED[:3], "design.seeds=1",
                             f"store.path={db}", "--no-progress", "--no-report"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    holder.close()
    assert result.returncode == 1
    assert "in use by another process" in result.stderr and str(db) in result.stderr.replace("\n", "")
