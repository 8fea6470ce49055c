"""The study's one-writer lock (engine/store/lock.py): who holds it, that a kill -9 frees it, that the
processes its holder started do not keep it, and that a command leaves nothing of it behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO

from engine.cli import main
from engine.kernel.errors import StoreBusy
from engine.store.lock import lock_path, study_lock

HOLDER = """
import subprocess, sys, time
from engine.store.lock import study_lock

with study_lock(sys.argv[1], "run -m"):
    # A process it starts (as a sweep starts its jobs) and that outlives it.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print(child.pid, flush=True)
    time.sleep(120)
"""


def running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads process states from /proc (Linux)")
def test_a_second_writer_is_refused_naming_the_holder_and_a_kill_9_frees_the_lock(tmp_path):
    db = tmp_path / "study.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(holder.stdout.readline())
        with pytest.raises(StoreBusy) as refused:
            with study_lock(db, "run"):
                pytest.fail("the lock was granted while another process held it")
        message = str(refused.value)
        assert f"is being written by `run -m` (pid {holder.pid} on " in message
        assert "Nothing was run or written" in message and "rerun this one" in message
        assert not db.exists()

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert lock_path(db).exists()  # the dead holder's file stays: it blocks nobody
        with study_lock(db, "run"):  # while the holder's child still runs: it never held the lock
            assert running(child)
            assert json.loads(lock_path(db).read_text())["pid"] == os.getpid()
    finally:
        for pid in (holder.pid, child):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        holder.wait(timeout=30)
    assert not lock_path(db).exists()


def test_the_lock_is_reentrant_in_its_process_and_leaves_nothing_behind(tmp_path):
    db = tmp_path / "new" / "deeper" / "study.duckdb"
    with study_lock(db, "run"):
        with study_lock(db, "report"):  # the run's own report step
            assert json.loads(lock_path(db).read_text())["command"] == "run"
        assert lock_path(db).exists()
    assert not (tmp_path / "new").exists()  # the folders made for the lock only are gone too
    with pytest.raises(RuntimeError):
        with study_lock(db, "run"):
            raise RuntimeError("the command failed before writing")
    assert list(tmp_path.iterdir()) == []
    with study_lock(db, "run"):
        db.write_text("a database")
    assert [p.name for p in db.parent.iterdir()] == ["study.duckdb"]  # its folder is kept, the lock is not


def test_a_spec_error_under_the_lock_writes_nothing(tmp_path, monkeypatch, capsys):
    """A missing key variable is found after the run took the lock: still exit 2, and no folder, lock or
    database is left."""
    monkeypatch.delenv("LOOPBACK_API_KEY", raising=False)
    study = str(REPO / "bench" / "studies" / "gateway_bench.yaml")
    db = tmp_path / "fresh" / "study.duckdb"
    assert main(["run", study, f"store.path={db}", f"report.output_dir={tmp_path / 'report'}", "--no-progress"]) == 2
    assert "LOOPBACK_API_KEY" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
