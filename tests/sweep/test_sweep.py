"""Hydra multirun sweeps: jobs into shards, merged into one database, one sweep report; launchers."""

import contextlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Callable

import duckdb
import pytest
from conftest import REPO

from engine.kernel.errors import SpecError
from engine.kernel.records import CachedResponse
from engine.store.db import StudyStore
from engine.sweep import expand_sweep
from engine.sweep.merge import copy_results

SCRIPTED = ["design.factors.agent=[scripted:hawk,scripted:random]", "~design.factors.persona", "design.controls=[]",
            "design.seeds=4"]


def sweep_args(tmp: Path, *extra: str) -> list[str]:
    return [*SCRIPTED, f"store.path={tmp}/study.duckdb", f"report.output_dir={tmp}/report", *extra]


def nuclear_by_job(db: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(swept max_turns, agent) -> (games with nuclear use, games), straight from the episode table."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT j.swept ->> '$.\"scenario.max_turns\"', p.cell ->> '$.agent', sum(e.nuclear::INT), count(*)"
        " FROM sweep_jobs j JOIN plan p ON p.spec_hash = j.spec_hash JOIN escalation_episodes e USING (trial_id)"
        " GROUP BY ALL").fetchall()
    con.close()
    return {(turns, agent): (int(n), int(total)) for turns, agent, n, total in rows}


def section_table(qmd: str, metric_label: str) -> dict[str, dict[str, str]]:
    """The sweep table of one metric section: cell -> column -> text (markdown escapes removed)."""
    section = qmd.split(f"## {metric_label} across ", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    unescape = lambda text: re.sub(r"\\(.)", r"\1", text.strip())  # noqa: E731
    header = [unescape(c) for c in lines[0].strip("|").split("|")]
    rows = [[unescape(c) for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return {r[0]: dict(zip(header[1:], r[1:])) for r in rows}


LAUNCHERS = ("basic", "parallel", "slurm_local")


@pytest.fixture(scope="module")
def sweep_of(tmp_path_factory) -> Callable[[str], Path]:
    """launcher -> the folder of one two-job sweep (max_turns 3 and 6, with its HTML report) run through
    it, once for the module and only read by the tests. Launched in this process: the launchers start
    their own processes (joblib's workers, submitit's jobs)."""
    from engine.cli import main

    folders: dict[str, Path] = {}

    def sweep(launcher: str) -> Path:
        if launcher not in folders:
            target = tmp_path_factory.mktemp(f"sweep-{launcher}")
            args = sweep_args(target, "scenario.max_turns=3,6", f"hydra/launcher={launcher}")
            err = io.StringIO()
            with contextlib.chdir(REPO), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(["run", "model_size", "-m", *args, "--formats", "html"])
            assert code == 0, err.getvalue()[-3000:]
            folders[launcher] = target
        return folders[launcher]

    return sweep


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_job_sweep_lands_in_one_database_with_one_report(sweep_of, launcher, run_main):
    tmp_path = sweep_of(launcher)
    db = tmp_path / "study.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    jobs = con.execute("SELECT job_index, swept, spec_hash FROM sweep_jobs ORDER BY job_index").fetchall()
    assert [json.loads(s) for _, s, _ in jobs] == [{"scenario.max_turns": "3"}, {"scenario.max_turns": "6"}]
    planned = con.execute("SELECT count(*) FROM plan WHERE spec_hash IN (SELECT spec_hash FROM sweep_jobs)").fetchone()[0]
    done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    max_turn = dict(con.execute(
        "SELECT j.swept ->> '$.\"scenario.max_turns\"', max(t.turn) FROM sweep_jobs j JOIN plan p USING (spec_hash)"
        " JOIN escalation_turns t USING (trial_id) GROUP BY ALL").fetchall())
    con.close()
    assert planned == done == 2 * 2 * 4  # 2 jobs x 2 agents x 4 seeds
    assert int(max_turn["6"]) > int(max_turn["3"])  # each job really ran its own setting

    # One sweep report: the swept setting on the x axis, one section (chart + table) per metric.
    report = next((tmp_path / "report_sweeps").glob("*/index.html"))
    html = report.read_text()
    assert "scenario.max_turns=3" in html and "scenario.max_turns=6" in html
    qmd = (report.parent / "index.qmd").read_text()
    assert len(re.findall(r"^## .* across scenario\\\.max\\_turns$", qmd, re.M)) >= 4
    table = section_table(qmd, "Nuclear")
    for (turns, agent), (n, total) in nuclear_by_job(db).items():
        cell = table[agent][f"scenario.max_turns={turns}"]
        # = the episode table; its own n, flagged when below 5 (4 seeds here)
        assert cell.startswith(f"{n / total:.0%} [") and cell.endswith(
            f"(n={total}, low n)" if total < 5 else f"(n={total})"), cell

    # A job run alone afterwards finds its trials finished: the merged results are that spec's results.
    alone = run_main("run", "model_size", *sweep_args(tmp_path, "scenario.max_turns=6"), "--no-report",
                     "--no-progress")
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert re.search(r"trials: 8 planned, 8 already finished, 0 done now", alone.stdout), alone.stdout[-1500:]


def test_sweep_results_do_not_depend_on_the_launcher(sweep_of):
    results = {launcher: nuclear_by_job(sweep_of(launcher) / "study.duckdb") for launcher in LAUNCHERS}
    assert results["basic"] == results["parallel"] == results["slurm_local"] and len(results["basic"]) == 4


def test_study_file_sweeper_params_and_command_line(tmp_path):
    study = tmp_path / "swept.yaml"
    source = (REPO / "studies" / "model_size.yaml").read_text()
    study.write_text(source + "\nhydra:\n  sweeper:\n    params:\n      scenario.max_turns: 3,4,5\n")
    sweep = expand_sweep(str(study), SCRIPTED)
    assert sweep.keys == ("scenario.max_turns",)
    assert [j.swept["scenario.max_turns"] for j in sweep.jobs] == ["3", "4", "5"]
    assert len({j.loaded.spec_hash for j in sweep.jobs}) == 3
    # The command line adds a second swept key (crossed) and can pin the study's one.
    crossed = expand_sweep(str(study), [*SCRIPTED, "design.seeds=2,3"])
    assert len(crossed.jobs) == 6 and set(crossed.keys) == {"scenario.max_turns", "design.seeds"}
    pinned = expand_sweep(str(study), [*SCRIPTED, "scenario.max_turns=4"])
    assert [j.swept for j in pinned.jobs] == [{}] and pinned.jobs[0].loaded.scenario_params.max_turns == 4


def test_a_bad_setting_in_a_sweep_fails_before_any_job_runs(run_main, tmp_path):
    out = run_main("run", "model_size", "-m", *sweep_args(tmp_path, "scenario.max_turns=3,-1"))
    assert out.returncode == 2, out.stderr
    assert "scenario.max_turns" in out.stderr
    assert not any(tmp_path.iterdir())  # no database, no shard, no report
    broken = run_main("run", "model_size", "-m", *sweep_args(tmp_path, "scenario.max_turns=3,,"))
    assert broken.returncode == 2 and "sweep overrides" in broken.stderr


def test_sweeping_the_database_path_is_refused():
    with pytest.raises(SpecError, match="store.path"):
        expand_sweep("model_size", [*SCRIPTED, "store.path=a.duckdb,b.duckdb"])


def test_merge_is_idempotent_and_an_error_gives_way_to_a_finished_trial(tmp_path):
    shard, main = tmp_path / "shard.duckdb", tmp_path / "main.duckdb"
    for path, status in ((shard, "done"), (main, "error")):
        store = StudyStore(path)
        store.commit_trial({"trial_id": "t1", "scenario": "x", "cell_id": "c", "cell": {}, "seed": 0, "inputs": {},
                            "status": status, "attempt": 1}, [], {})
        store.put_response("h1", "m", CachedResponse("text", None, 1, 1, 0.0, 0.1))
        store.close()
    store = StudyStore(main)
    first = copy_results(store.con, shard)
    again = copy_results(store.con, shard)
    status = store.con.execute("SELECT status FROM trials WHERE trial_id = 't1'").fetchone()[0]
    store.close()
    assert first["trials"] == 0 and status == "done"  # replaced, not duplicated
    assert all(n == 0 for n in again.values())
    assert first["responses"] == 0  # the same response is not stored twice


def test_launcher_presets_compose():
    from hydra import compose, initialize_config_dir

    from engine.kernel.paths import CONF_DIR, STUDIES_DIR, hydra_searchpath_override

    targets = {"parallel": "JoblibLauncher", "slurm": "SlurmLauncher", "slurm_local": "LocalLauncher"}
    for preset in sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")):
        with initialize_config_dir(config_dir=str(STUDIES_DIR), version_base="1.3"):
            cfg = compose("model_size", overrides=[hydra_searchpath_override(), f"hydra/launcher={preset}"],
                          return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith(targets[preset]), preset


def test_a_sweep_only_section_in_a_study_is_a_spec_error():
    from engine import load_study

    with pytest.raises(SpecError, match="sweep reports"):
        load_study("model_size", ["report.sections=[{type: sweep_metric, metric: nuclear_rate}]"])


def test_report_of_a_sweep_that_never_ran_is_a_clear_error(run_main, tmp_path):
    out = run_main("report", "model_size", "-m", *sweep_args(tmp_path, "scenario.max_turns=3,6"))
    assert out.returncode == 1 and "run the sweep first" in out.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_jobs_that_share_trials_each_keep_their_whole_plan(run_main, tmp_path):
    """Scripted agents ignore the temperature: both jobs play the same trials, and both specs must
    still have every planned trial (and N) in the study database and the sweep report."""
    out = run_main("run", "model_size", "-m", *sweep_args(tmp_path, "generation.temperature=0,0.7"), "--formats", "html")
    assert out.returncode == 0, out.stderr[-3000:]
    con = duckdb.connect(str(tmp_path / "study.duckdb"), read_only=True)
    per_job = con.execute("SELECT j.job_index, count(p.trial_id), count(t.trial_id) FROM sweep_jobs j"
                          " JOIN plan p USING (spec_hash) LEFT JOIN trials t USING (trial_id) GROUP BY ALL"
                          " ORDER BY 1").fetchall()
    con.close()
    assert per_job == [(0, 8, 8), (1, 8, 8)]
    qmd = next((tmp_path / "report_sweeps").glob("*/index.qmd")).read_text()
    table = section_table(qmd, "Nuclear")
    assert all(text.endswith("(n=4, low n)") for row in table.values() for text in row.values()), table


def test_a_sweep_replays_nothing_already_in_the_study_database(run_main, tmp_path):
    alone = run_main("run", "model_size", *sweep_args(tmp_path, "scenario.max_turns=3"), "--no-report",
                    "--no-progress")
    assert alone.returncode == 0, alone.stderr[-2000:]
    db = tmp_path / "study.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    first_played = dict(con.execute("SELECT trial_id, started_at FROM trials").fetchall())
    con.close()
    out = run_main("run", "model_size", "-m", *sweep_args(tmp_path, "scenario.max_turns=3,6"), "--no-report")
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = expand_sweep("model_size", sweep_args(tmp_path, "scenario.max_turns=3,6"))
    shard = duckdb.connect(str(sweep.shard(sweep.jobs[0])), read_only=True)
    in_shard = dict(shard.execute("SELECT trial_id, started_at FROM trials").fetchall())
    shard.close()
    assert in_shard == first_played  # seeded from the study database, not played again
    con = duckdb.connect(str(db), read_only=True)
    assert dict(con.execute("SELECT trial_id, started_at FROM trials WHERE trial_id IN (SELECT unnest(?))",
                            [list(first_played)]).fetchall()) == first_played
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 16
    con.close()


def test_unknown_sweep_metric_and_ray_client_are_spec_errors_naming_the_key():
    from engine import load_study

    with pytest.raises(SpecError, match="report.sweep_metrics.0.*unknown metric 'nope'"):
        load_study("model_size", ["+report.sweep_metrics=[nope]"])
    with pytest.raises(SpecError, match="executor.ray.address.*Ray Client"):
        load_study("model_size", ["executor=ray", "executor.ray.address=ray://head:10001"])


def test_the_study_budget_is_shared_by_the_jobs_of_a_sweep(tmp_path):
    """Each job runs into its own shard, blind to its siblings' spend: at launch every job gets its
    part of what the study has left, on top of the spend its shard already holds."""
    from engine.execute.gateway import Gateway
    from engine.kernel.records import CachedResponse
    from engine.store.db import StudyStore
    from engine.sweep.launch import seed

    study = StudyStore(tmp_path / "study.duckdb")
    study.put_response("h", "openai/x", CachedResponse("r", None, 10, 10, 2.0, 0.1))  # $2 already spent
    study.close()
    sweep = expand_sweep("model_size", sweep_args(tmp_path, "executor.budget.max_usd=5", "scenario.max_turns=3,6"))
    seed(sweep)
    for job in sweep.jobs:
        shard = StudyStore(sweep.shard(job))
        gateway = Gateway(job.loaded.spec.executor, shard)
        # $3 left, two jobs: each may spend $1.50 past the $2 its seeded cache holds
        assert gateway.budget.max_usd == pytest.approx(3.5) and gateway.budget.spent_usd == pytest.approx(2.0)
        shard.close()
