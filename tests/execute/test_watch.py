"""Watching a running study from another process: `watch`, and `summary` and `plan` while a run
holds the database, read the snapshot the run publishes beside it (engine/analyze/live.py).

A real run (a subprocess: DuckDB's one-writer rule is between processes) of a few hundred
single-call trials against the loopback chat server (bench/loopback_server.py, a fixed latency),
two models on two routes, so two design cells and two pools of slots.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from fixtures import loopback_server  # noqa: E402

from engine.cli import main  # noqa: E402
from engine.store.snapshot import read_snapshot, snapshot_path  # noqa: E402

STUDY = str(REPO / "bench" / "studies" / "gateway_bench.yaml")
CANARY = "sk-canary-watch-0123456789abcdef"
PLANNED = 400  # 50 behaviours x 4 seeds x 2 models
FACTOR = 1.5


def study_args(server, db: Path) -> list[str]:
    second = ("+models.second={litellm_id: openai/loopback-chat, display_name: Second, provider: Loopback,"
              " family: Loopback, route: second, params: {total_b: 2}, price: {input_per_mtok: 1, output_per_mtok: 1},"
              f" api_base: {server.api_base}, api_key_env: LOOPBACK_API_KEY}}")
    return [STUDY, f"models.loopback.api_base={server.api_base}", f"store.path={db}", "design.seeds=4", second,
            "design.factors.model=[loopback,second]", "executor.concurrency.loopback=2",
            "+executor.concurrency.second=2", f"title=Watched {CANARY}"]


def start_run(args: list[str], *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "run", *args, "--no-report", *flags], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LOOPBACK_API_KEY": CANARY})


def cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def stored_by_cell(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT cell_id, count(*) FILTER (WHERE status = 'done') FROM trials GROUP BY 1")
                    .fetchall())
    finally:
        con.close()


def test_watch_follows_a_run_with_counts_that_only_grow_to_the_databases_and_summary_reads_it(tmp_path, capsys):
    db = tmp_path / "watched.duckdb"
    seen: list[tuple[int, dict[str, int]]] = []  # (trials watch printed, stored per cell in the snapshot)
    etas: list[tuple[float, float, int]] = []  # (trials clock, ETA, trials finished) while the trials run
    summary_live = plan_live = None
    with loopback_server(0.2) as server:
        args = study_args(server, db)
        # progress where there is no terminal: the steps before the trials, then a line every second
        run = start_run(args, "executor.progress_every_s=1")
        try:
            while run.poll() is None:
                code, out = cli(capsys, "watch", *args, "--once")
                snap = read_snapshot(db)
                if code == 0 and snap is not None:
                    assert CANARY not in out and CANARY.encode() not in snapshot_path(db).read_bytes()
                    trials = (snap.data["progress"] or {}).get("trials")
                    m = re.search(r"^trials (\d+)/(\d+)", out, re.M)
                    if trials is not None and m:
                        assert int(m[2]) == PLANNED
                        seen.append((int(m[1]), {c["id"]: c["done"] for c in snap.data.get("cells") or []}))
                        if snap.running and trials["eta_s"] is not None and trials["finished"] < PLANNED:
                            etas.append((trials["elapsed_s"], trials["eta_s"], trials["finished"]))
                    if summary_live is None and snap.running and snap.data.get("table"):
                        code, summary_live = cli(capsys, "summary", *args)
                        assert code == 0, summary_live
                        code, plan_live = cli(capsys, "plan", *args)
                        assert code == 0, plan_live
                time.sleep(0.3)
        finally:
            if run.poll() is None:
                run.kill()
            output = run.communicate()[0]
    assert run.returncode == 0, output
    lines = output.splitlines()
    steps = [i for i, line in enumerate(lines) if line == "importing the provider libraries ..."]
    progress = [line for line in lines if line.startswith("trials ")]
    assert steps and steps[0] < lines.index(progress[0])
    assert len(progress) >= 5 and all(not line.endswith("ETA ?") for line in progress[1:]), progress

    # watch saw the run under way, with counts that only grow, per cell and in all
    assert len({n for n, _ in seen if 0 < n < PLANNED}) >= 3, seen
    for (n0, cells0), (n1, cells1) in zip(seen, seen[1:]):
        assert n1 >= n0 and all(cells1.get(c, 0) >= k for c, k in cells0.items())
    # summary, while the run held the database, printed the snapshot's table and said so
    assert summary_live is not None and "live snapshot of a running study, updated" in summary_live
    assert "Second" in summary_live, summary_live  # the second model's row
    assert "database not read: live snapshot of a running study, updated" in plan_live

    # at the end: the run's last snapshot says it ended, with exactly what the database holds
    code, out = cli(capsys, "watch", *args, "--once")
    assert code == 0 and "the run ended (finished)" in out and f"trials {PLANNED}/{PLANNED}" in out
    final = read_snapshot(db)
    assert not final.running and final.data["state"] == "finished"
    assert {c["id"]: c["done"] for c in final.data["cells"]} == stored_by_cell(db)
    assert sum(stored_by_cell(db).values()) == PLANNED
    assert CANARY.encode() not in snapshot_path(db).read_bytes()

    # the ETA, once a tenth of the trials are done, was within a factor of 1.5 of the time left
    total = final.data["progress"]["trials"]["elapsed_s"]
    checked = [(t, eta, total - t) for t, eta, n in etas if n >= PLANNED / 10 and total - t >= 2.0]
    assert len(checked) >= 3, etas
    for t, eta, left in checked:
        assert left / FACTOR <= eta <= left * FACTOR, f"at {t:.1f}s of {total:.1f}s: ETA {eta:.1f}s, {left:.1f}s left"


def test_a_run_killed_with_sigkill_is_reported_as_not_running_and_the_rerun_replaces_its_snapshot(
        tmp_path, capsys, monkeypatch):
    db = tmp_path / "killed.duckdb"
    with loopback_server(0.1) as server:  # 400 trials in about 10 s: killed at a fifth
        args = study_args(server, db)
        run = start_run(args, "--no-progress")
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and run.poll() is None:
                snap = read_snapshot(db)
                trials = snap and (snap.data.get("progress") or {}).get("trials")
                if trials and trials["finished"] >= PLANNED // 5:
                    break
                time.sleep(0.2)
            assert run.poll() is None, "the run ended before it could be killed"
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
            run.communicate()
        killed = orjson.loads(snapshot_path(db).read_bytes())

        code, out = cli(capsys, "watch", *args, "--once")
        assert code == 0 and "not running" in out and "Rerun the study to resume it" in out
        assert f"pid {killed['writer']['pid']}" in out
        # the database is free again: summary reads it, not the snapshot
        code, out = cli(capsys, "summary", *args)
        assert code == 0 and "live snapshot" not in out

        # The resume, in this process (a writer pid of its own all the same), against a server no longer slow.
        server.set_latency(0.01)
        monkeypatch.setenv("LOOPBACK_API_KEY", CANARY)
        code, out = cli(capsys, "run", *args, "--no-report", "--no-progress")
    assert code == 0, out
    final = read_snapshot(db)
    assert final.data["writer"]["pid"] != killed["writer"]["pid"] and final.data["state"] == "finished"
    assert {c["id"]: c["done"] for c in final.data["cells"]} == stored_by_cell(db)
    assert sum(stored_by_cell(db).values()) == PLANNED
