"""Rows follow the design's order, never storage order: each planned trial's position is stored (the
parallel insert does not keep rows in order), and the summary table, the transcript browser and the
export read it; a database planned before positions existed gets them on the next run."""

from __future__ import annotations

import json

import duckdb

from engine.plan.compile import compile_plan
from engine.report.context import ReportContext
from engine.report.transcript_data import TRIALS_SQL
from engine.store.db import StudyStore
from engine.study import run_study

AGENTS = ["scripted:tit_for_tat", "scripted:hawk", "scripted:dove", "scripted:calculating", "scripted:random"]


def args(tmp_path) -> list[str]:
    return [f"design.factors.agent=[{','.join(AGENTS)}]", "~design.factors.persona", "design.controls=[]",
            "design.seeds=12", "scenario.max_turns=2", f"store.path={tmp_path / 'order.duckdb'}"]


def test_stored_trials_and_tables_follow_the_design(tmp_path):
    loaded, _, table = run_study("model_size", args(tmp_path), show_progress=False)
    order = [t.trial_id for t in compile_plan(loaded).trials]
    con = duckdb.connect(str(tmp_path / "order.duckdb"), read_only=True)
    try:
        stored = [t for (t,) in con.execute("SELECT trial_id FROM plan WHERE spec_hash = ? ORDER BY position",
                                            [loaded.spec_hash]).fetchall()]
        assert stored == order
        rows = con.execute(TRIALS_SQL, {"spec_hash": loaded.spec_hash}).fetchall()
        # The transcript browser's games: agent as the design lists them, then seed 0, 1, 2, ...
        assert [(json.loads(c)["agent"], s) for _, c, s, _, _ in rows] == [(a, s) for a in AGENTS for s in range(12)]
    finally:
        con.close()
    assert list(table["agent"] if "agent" in table else table.iloc[:, 0]) == AGENTS  # the summary table's rows


def test_a_database_planned_without_positions_gets_them_on_the_next_run(tmp_path):
    loaded, _, _ = run_study("model_size", args(tmp_path), show_progress=False)
    con = duckdb.connect(str(tmp_path / "order.duckdb"))
    con.execute("UPDATE plan SET position = NULL")
    con.close()
    run_study("model_size", args(tmp_path), show_progress=False)  # a rerun: nothing to play
    store = StudyStore(tmp_path / "order.duckdb", read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(tmp_path / "order.duckdb"))
        placed = ctx.con.execute("SELECT trial_id FROM plan WHERE spec_hash = ? ORDER BY position",
                                 [loaded.spec_hash]).fetchall()
    finally:
        store.close(checkpoint=False)
    assert [t for (t,) in placed] == [t.trial_id for t in compile_plan(loaded).trials]


def test_a_database_from_before_the_migration_reads_read_only_and_migrates_on_the_next_run(tmp_path):
    from engine.study import study_summary

    loaded, _, table = run_study("model_size", args(tmp_path), show_progress=False)
    con = duckdb.connect(str(tmp_path / "order.duckdb"))
    con.execute("ALTER TABLE plan DROP COLUMN position")
    con.execute("DELETE FROM schema_migrations WHERE component = 'core' AND version = 8")
    con.close()
    # Read-only (summary, report, export) cannot migrate: the missing column is read as storage order,
    # so the rows and their estimates are there (a resampled interval may differ in its last digit).
    _, summary, _ = study_summary("model_size", args(tmp_path))
    points = lambda t: sorted(tuple(str(v).split(" [")[0] for v in row) for row in t.to_numpy())  # noqa: E731
    assert len(summary) == len(table) and points(summary) == points(table)
    run_study("model_size", args(tmp_path), show_progress=False)  # a writer migrates and places the rows
    con = duckdb.connect(str(tmp_path / "order.duckdb"), read_only=True)
    try:
        placed = [t for (t,) in con.execute("SELECT trial_id FROM plan ORDER BY position").fetchall()]
    finally:
        con.close()
    assert placed == [t.trial_id for t in compile_plan(loaded).trials]
