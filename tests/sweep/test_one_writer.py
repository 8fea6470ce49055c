"""Issue 19, process-level safety: one study has one running writer, whatever the command; and the
jobs of a local sweep stop when the process that launched them is killed.

The studies call the loopback chat server (bench/loopback_server.py) in its own process: it answers
slowly, so a run stays busy long enough for a second command to meet it, and it counts every request
it was paid for, which the database must account for."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from conftest import REPO, rows

sys.path.insert(0, str(REPO / "bench"))
from fixtures import Loopback, loopback_server  # noqa: E402

from engine.cli import main  # noqa: E402

STUDY = str(REPO / "bench" / "studies" / "gateway_bench.yaml")
LATENCY_S = 0.3
FAST_S = 0.01  # once the second command has met the first, or the kill is over: the calls left
# 17 behaviours x 2 seeds = 34 single-call trials per job, one call at a time: about 10 s per job.
SMALL = ["scenario.select.per_category=2", "scenario.select.benign=1", "design.seeds=2",
         "executor.concurrency.loopback=1", "executor.backoff_initial_s=0.05", "executor.backoff_max_s=0.2"]
TRIALS_PER_JOB = 34
SWEEP = ["-m", "generation.max_tokens=64,48"]  # job 0 plays exactly the trials of a plain run
ENV = {"LOOPBACK_API_KEY": "k-test", "PYTHONUNBUFFERED": "1"}


def study_args(server: Loopback, tmp: Path) -> list[str]:
    return [STUDY, f"models.loopback.api_base={server.api_base}", f"store.path={tmp / 'study.duckdb'}",
            f"report.output_dir={tmp / 'report'}", *SMALL]


QUIET = ["--no-report", "--no-progress"]


def start(tmp: Path, name: str, *args: str) -> subprocess.Popen:
    """`python -m engine ...` in the background, its output in files under tmp."""
    out, err = (open(tmp / f"{name}.{s}", "w") for s in ("out", "err"))
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=REPO, stdout=out, stderr=err,
                            env={**os.environ, **ENV})


def output(tmp: Path, name: str) -> str:
    return (tmp / f"{name}.out").read_text() + (tmp / f"{name}.err").read_text()


def lock_is_held(db: Path) -> bool:
    """Whether some process holds an flock on the file beside the database (the lock's documented place)."""
    path = db.with_name(db.name + ".lock")
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_for(condition, what: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the command ended (rc {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f} s"
        time.sleep(0.1)



def paid_calls_on_record(db: Path) -> tuple[int, int, float, float]:
    """(live replies cached, live calls logged, spend the store reports, cost of the logged live calls)."""
    ((responses, spent),) = rows(db, "SELECT count(*), coalesce(sum(cost_usd), 0) FROM responses")
    ((calls, cost),) = rows(db, "SELECT count(*), coalesce(sum(cost_usd), 0) FROM calls WHERE NOT cache_hit")
    return responses, calls, spent, cost


def refused(capsys, *argv: str) -> str:
    """A command run in this process while another holds the study: exit 1 with the lock's message."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 1, err
    return " ".join(err.split())


@contextmanager
def finished(process: subprocess.Popen, timeout_s: float = 180.0) -> Iterator[subprocess.Popen]:
    try:
        yield process
        process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_run_report_export_or_second_sweep_is_refused_while_a_sweep_writes_the_study(tmp_path, capsys,
                                                                                      monkeypatch):
    for name, value in ENV.items():  # what the refused commands would need to run
        monkeypatch.setenv(name, value)
    db = tmp_path / "study.duckdb"
    with loopback_server(LATENCY_S) as server:
        args = study_args(server, tmp_path)
        with finished(start(tmp_path, "sweep", "run", *args, *SWEEP, *QUIET)) as sweep:
            wait_for(lambda: server.stats()["requests"] > 0, "call of the sweep", sweep)
            message = refused(capsys, "run", *args, *QUIET)
            assert "being written by `run -m` (pid " + str(sweep.pid) in message
            assert lock_is_held(db)  # where the message says: beside the database
            assert "Nothing was run or written" in message and "wait for that command to finish" in message
            assert "`run -m`" in refused(capsys, "run", *args, *SWEEP, *QUIET)
            assert "`run -m`" in refused(capsys, "report", *args, "--formats", "html")
            assert "`run -m`" in refused(capsys, "export", "inspect", *args, "--out", str(tmp_path / "logs"))
            assert sweep.poll() is None, "the sweep ended before the refusals could meet it: slow the server down"
            server.set_latency(FAST_S)  # met: the rest of the sweep need not be slow
        assert sweep.returncode == 0, output(tmp_path, "sweep")[-3000:]
        requests = server.stats()["requests"]
    assert not (tmp_path / "report").exists() and not (tmp_path / "logs").exists()  # the refused wrote nothing
    # Every paid reply is on record: nothing played twice, nothing dropped by the merge.
    responses, calls, spent, cost = paid_calls_on_record(db)
    assert requests == responses == calls == 2 * TRIALS_PER_JOB
    assert spent == pytest.approx(cost) and spent > 0
    assert rows(db, "SELECT count(*) FROM trials WHERE status = 'done'") == [(2 * TRIALS_PER_JOB,)]


def test_a_sweep_judge_or_report_is_refused_while_a_run_writes_the_study(tmp_path, capsys):
    db = tmp_path / "study.duckdb"
    with loopback_server(LATENCY_S) as server:
        args = study_args(server, tmp_path)
        with finished(start(tmp_path, "run", "run", *args, *QUIET)) as run:
            wait_for(lambda: server.stats()["requests"] > 0, "call of the run", run)
            message = refused(capsys, "run", *args, *SWEEP, *QUIET)
            assert f"being written by `run` (pid {run.pid}" in message
            assert lock_is_held(db)
            assert "`run`" in refused(capsys, "judge", *args, "--no-progress")
            assert "`run`" in refused(capsys, "report", *args, "--formats", "html")
            assert run.poll() is None, "the run ended before the refusals could meet it: slow the server down"
            server.set_latency(FAST_S)
        assert run.returncode == 0, output(tmp_path, "run")[-3000:]
        requests = server.stats()["requests"]
    assert not (tmp_path / "gateway_bench.sweeps").exists()  # the refused sweep seeded no shard
    assert not (tmp_path / "report").exists()
    responses, calls, spent, cost = paid_calls_on_record(db)
    assert requests == responses == calls == TRIALS_PER_JOB
    assert spent == pytest.approx(cost) and spent > 0


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        below = [p for p, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc (Linux)")
@pytest.mark.parametrize("launcher", ["parallel", "slurm_local"])
def test_local_sweep_jobs_stop_when_the_launching_process_is_killed(tmp_path, launcher, run_main):
    """joblib's workers are children of the launching process; submitit's local jobs its grandchildren
    (through a controller process meant to outlive it)."""
    with loopback_server(LATENCY_S) as server:
        command = ["run", *study_args(server, tmp_path), *SWEEP, f"hydra/launcher={launcher}", *QUIET]
        parent = start(tmp_path, "sweep", *command)
        workers: list[int] = []
        try:
            wait_for(lambda: server.stats()["requests"] >= 4, "calls from the workers", parent)
            workers = descendants(parent.pid)
            assert workers, "the launcher started no process"
            os.kill(parent.pid, signal.SIGKILL)  # the parent only, not its process group
            parent.wait()
            killed_at = time.monotonic()
            while any(alive(w) for w in workers) and time.monotonic() - killed_at < 10:
                time.sleep(0.1)
            stopped_after = time.monotonic() - killed_at
            settled = server.stats()["requests"]
            time.sleep(3 * LATENCY_S + 2)
            later = server.stats()["requests"]
        finally:
            for w in workers:  # a worker that did not stop must not outlive the test
                if alive(w):
                    os.kill(w, signal.SIGKILL)
        assert not any(alive(w) for w in workers), f"workers still running {stopped_after:.1f} s after the kill"
        assert stopped_after < 3.0
        assert later == settled, f"{later - settled} more calls after the workers should have stopped"
        assert settled < 2 * TRIALS_PER_JOB  # killed mid-sweep

        server.set_latency(FAST_S)  # the rerun only resumes
        rerun = run_main(*command, env=ENV)  # in this process: what is checked is the resume, not the launch
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        requests = server.stats()["requests"]
    db = tmp_path / "study.duckdb"
    # Every trial exactly once, each with its one call; every reply on record paid for once.
    assert rows(db, "SELECT count(*), count(DISTINCT trial_id), count(*) FILTER (WHERE status = 'done')"
                    " FROM trials") == [(2 * TRIALS_PER_JOB,) * 3]
    assert rows(db, "SELECT max(n), min(n) FROM (SELECT count(*) AS n FROM calls GROUP BY trial_id)") == [(1, 1)]
    responses, calls, spent, cost = paid_calls_on_record(db)
    assert responses == calls == 2 * TRIALS_PER_JOB and spent == pytest.approx(cost)
    # The kill lost at most the calls each worker had in flight or not yet committed (one batch).
    assert 0 <= requests - responses <= 2 * 4


def test_a_parallel_sweep_runs_in_the_environment_of_its_own_launch(tmp_path, run_main):
    """joblib keeps its worker processes for the next call, with the environment they started in: a second
    sweep from the same process, whose model reads a key exported after the first, must still find it."""
    tiny = ["scenario.select.per_category=1", "scenario.select.benign=0", "design.seeds=1"]
    one_job = ["-m", "generation.max_tokens=64"]  # still through joblib's workers
    with loopback_server(FAST_S) as server:
        first = run_main("run", *study_args(server, tmp_path / "first"), *tiny, *one_job, "hydra/launcher=parallel",
                         *QUIET, env=ENV)
        assert first.returncode == 0, first.stderr[-3000:]
        second = run_main("run", *study_args(server, tmp_path / "second"), *tiny, *one_job,
                          "hydra/launcher=parallel", "models.loopback.api_key_env=KEY_EXPORTED_LATER", *QUIET,
                          env={"KEY_EXPORTED_LATER": "k-later"})
        assert second.returncode == 0, second.stderr[-3000:]
    assert rows(tmp_path / "second" / "study.duckdb", "SELECT count(*) FROM calls WHERE status = 'ok'")[0][0] > 0
