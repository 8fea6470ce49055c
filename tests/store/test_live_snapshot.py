"""The live snapshot beside a study database (engine/store/snapshot.py): replaced whole, read
without trust, and its writer told alive or gone. And what `watch` prints of one that is not a
running study's: a killed run, another version's file, hostile text, no snapshot at all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import orjson
import pytest

from engine.cli import main
from engine.store.lock import lock_path, study_lock
from engine.store.snapshot import read_snapshot, snapshot_path, this_process, write_snapshot

STUDY = "bench/studies/gateway_bench.yaml"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_snapshot_is_replaced_whole_and_names_this_process_as_alive(tmp_path):
    db = tmp_path / "s.duckdb"
    write_snapshot(db, {"state": "running", "writer": this_process(), "n": 1})
    write_snapshot(db, {"state": "running", "writer": this_process(), "n": 2})
    snap = read_snapshot(db)
    assert snap.data["n"] == 2 and snap.alive and snap.running and snap.age_s < 5
    assert [p.name for p in tmp_path.iterdir()] == [snapshot_path(db).name]  # no temporary file left
    write_snapshot(db, {"state": "finished", "writer": this_process()})
    assert read_snapshot(db).alive and not read_snapshot(db).running


def test_a_writer_that_is_gone_or_whose_pid_was_reused_is_not_alive(tmp_path):
    db = tmp_path / "s.duckdb"
    write_snapshot(db, {"state": "running", "writer": {**this_process(), "pid": dead_pid()}})
    assert not read_snapshot(db).alive
    # this pid, but started at another time: another process that got the dead writer's pid
    write_snapshot(db, {"state": "running", "writer": {**this_process(), "process_start": "1"}})
    assert not read_snapshot(db).alive


def test_another_hosts_writer_is_alive_while_its_snapshot_is_fresh(tmp_path):
    db = tmp_path / "s.duckdb"
    elsewhere = {"pid": 1, "host": socket.gethostname() + "-other", "process_start": None}
    write_snapshot(db, {"state": "running", "writer": elsewhere})
    assert read_snapshot(db).alive
    data = orjson.loads(snapshot_path(db).read_bytes())
    snapshot_path(db).write_bytes(orjson.dumps({**data, "written_at": time.time() - 3600}))
    assert not read_snapshot(db).alive


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]", b'{"format": 99, "written_at": 1}',
                                  b'{"format": 1, "written_at": "yesterday"}'])
def test_a_file_that_is_not_a_snapshot_reads_as_none(tmp_path, body):
    db = tmp_path / "s.duckdb"
    snapshot_path(db).write_bytes(body)
    assert read_snapshot(db) is None


def watch_once(capsys, db, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["watch", STUDY, f"store.path={db}", *extra, "--once"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_watch_without_a_snapshot_says_why(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    code, out = watch_once(capsys, db)
    assert code == 1 and "it has not been run yet" in out
    with study_lock(db, "report"):
        code, out = watch_once(capsys, db)
    assert code == 1 and f"`report` (pid {os.getpid()}" in out and "publishes no snapshot" in out
    assert not lock_path(db).exists()


def snapshot(db, **fields) -> None:
    write_snapshot(db, {"study": "s", "title": "T", "spec_hash": "h", "db": str(db), "state": "running",
                        "phase": "playing trials", "writer": this_process(), "started_at": time.time(),
                        "progress": {"trials": {"what": "trials", "finished": 5, "planned": 10, "errors": 1,
                                                "elapsed_s": 12.0, "eta_s": 30.0}},
                        "cells": [{"id": "c1", "label": {"Model": "A"}, "planned": 10, "done": 4, "errors": 1}],
                        "errors_by_kind": {"provider": 1}, "table": None, **fields})


def test_watch_prints_a_running_study_and_a_killed_one_as_not_running(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    snapshot(db, gateway={"live_calls": 7, "cache_hits": 2, "retries": 1, "rate_limited": 3, "timeouts": 0},
             spend={"usd": 0.5, "tokens": 1200, "max_usd": 5.0, "max_tokens": None},
             routes={"openrouter": {"slots": 32, "open": 8, "in_flight": 8, "paused_s": 4.0, "rate_limited": 3,
                                    "halved": 2, "min_slots": 8}})
    code, out = watch_once(capsys, db)
    assert code == 0
    assert "running: playing trials" in out and "trials 5/10 · errors 1 · elapsed 0m12s · ETA 0m30s" in out
    assert "spent $0.5000 of the $5 cap" in out and "429s 3" in out
    assert "route openrouter: 8/32 slots open, 8 in flight · 3 × 429, halved 2× (down to 8) · paused 4 s" in out
    assert "errors by kind: provider 1" in out and "4/10" in out

    snapshot(db, writer={**this_process(), "pid": dead_pid()})
    code, out = watch_once(capsys, db)
    assert code == 0 and "not running" in out and "Rerun the study to resume it" in out and "ETA" not in out


def test_watch_shows_hostile_text_of_a_snapshot_inert(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    snapshot(db, title="T\x1b[2J[bold red]boom[/]", phase="playing \x1b]0;owned\x07trials",
             cells=[{"id": "c1", "label": {"Model": "\x1b[31mA\u202e"}, "planned": 1, "done": 0, "errors": 0}])
    code, out = watch_once(capsys, db)
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "[bold red]boom[/]" in out  # printed as written, not as markup


def test_watch_says_when_a_snapshot_is_not_of_this_engines_making(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    snapshot(db, progress={"trials": "not a mapping"})
    code, out = watch_once(capsys, db)
    assert code == 1 and "could not be read" in out and "The next run replaces it" in out
