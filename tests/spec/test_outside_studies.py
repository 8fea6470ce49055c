"""A researcher's own study and config groups, kept outside the repository: `--config-dir` (or
Hydra's `hydra.searchpath`) adds their groups beside the shipped ones, and the database and report
go next to their study file unless the command line says otherwise."""

from __future__ import annotations

import shlex
import shutil
import textwrap
from pathlib import Path

import duckdb
import pytest

from engine import load_study
from engine.cli import main
from engine.kernel.errors import SpecError
from engine.kernel.paths import CONFIG_PATH_ENV, REPO_ROOT

STUDY = """\
defaults:
  - base
  - model_set: my_lab
  - scenario: escalation
  - executor: local
  - _self_

name: my_escalation
title: "My lab's escalation check"
design:
  factors:
    agent: [scripted:hawk, scripted:tit_for_tat]
  controls: [{agent: [scripted:null]}]
  seeds: 2
scenario:
  max_turns: 3
report:
  sections: [{type: summary}, {type: headline_table}]
"""


@pytest.fixture(autouse=True)
def clean_search_path(monkeypatch):
    # The CLI puts --config-dir folders in the environment (sweep jobs need them); start and end clean.
    monkeypatch.setenv(CONFIG_PATH_ENV, "")


@pytest.fixture()
def lab(tmp_path, monkeypatch) -> dict[str, Path]:
    """research/my_escalation.yaml, and research-conf/ with a model set naming a model entry of the lab's own."""
    study_dir, conf = tmp_path / "research", tmp_path / "research-conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model_set").mkdir()
    study_dir.mkdir()
    entry = (REPO_ROOT / "conf" / "model" / "smollm2_135m.yaml").read_text()
    (conf / "model" / "lab_tiny.yaml").write_text(entry.replace("display_name: SmolLM2 135M", "display_name: Lab Tiny"))
    (conf / "model_set" / "my_lab.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        defaults:
          - /model@models.lab_tiny: lab_tiny
        model_set: my_lab
        """))
    (study_dir / "my_escalation.yaml").write_text(STUDY)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # run from a folder that is neither the repo nor the study's
    return {"study": study_dir / "my_escalation.yaml", "conf": conf, "cwd": elsewhere, "dir": study_dir}


def test_config_dir_adds_the_users_groups_and_outputs_go_next_to_the_study(lab, capsys):
    assert main(["plan", str(lab["study"]), "--config-dir", str(lab["conf"])]) == 0
    loaded = load_study(str(lab["study"]))
    assert loaded.spec.models["lab_tiny"].display_name == "Lab Tiny"  # from the lab's own model entry
    assert Path(loaded.spec.store.path) == lab["dir"] / "results" / "my_escalation.duckdb"
    assert Path(loaded.spec.report.output_dir) == lab["dir"] / "reports" / "my_escalation"
    assert str(lab["study"]) in loaded.reproduce_command  # a path, not a name in studies/


def test_a_study_outside_the_repo_runs_and_reports_next_to_itself(lab):
    args = ["run", str(lab["study"]), "--config-dir", str(lab["conf"]), "--no-progress", "--formats", "html"]
    assert main(args) == 0
    db = lab["dir"] / "results" / "my_escalation.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:
        done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    finally:
        con.close()
    assert done == 3 * 2  # two scripted agents and one control, two seeds each
    assert (lab["dir"] / "reports" / "my_escalation" / "index.html").is_file()
    assert list(lab["cwd"].iterdir()) == []  # nothing written where the command ran


def test_hydra_searchpath_works_like_config_dir(lab):
    loaded = load_study(str(lab["study"]), [f"hydra.searchpath=[file://{lab['conf']}]"])
    assert "lab_tiny" in loaded.spec.models
    assert "hydra.searchpath" not in " ".join(loaded.overrides)  # absorbed, not replacing the shipped groups
    assert loaded.spec.scenario["name"] == "escalation"  # the shipped groups are still found


def test_without_the_config_dir_the_missing_group_is_a_spec_error(lab, capsys):
    assert main(["plan", str(lab["study"])]) == 2
    err = capsys.readouterr().err
    assert "my_lab" in err and "my_escalation.yaml" in err
    with pytest.raises(SpecError):
        load_study(str(lab["study"]))


def test_a_missing_config_dir_is_a_spec_error(lab, capsys):
    assert main(["plan", str(lab["study"]), "--config-dir", str(lab["dir"] / "nope")]) == 2
    assert "config folder not found" in capsys.readouterr().err
    assert not (lab["dir"] / "results").exists()


def test_command_line_paths_stay_relative_to_the_working_directory(lab, monkeypatch):
    monkeypatch.setenv(CONFIG_PATH_ENV, str(lab["conf"]))
    loaded = load_study(str(lab["study"]), ["store.path=mine.duckdb", "report.output_dir=/tmp/abs-report"])
    assert loaded.spec.store.path == "mine.duckdb"
    assert loaded.spec.report.output_dir == "/tmp/abs-report"


def test_moving_the_study_folder_keeps_its_identity(lab, tmp_path, monkeypatch):
    # The hash is taken over the paths as written, so a moved folder resumes its own database.
    monkeypatch.setenv(CONFIG_PATH_ENV, str(lab["conf"]))
    before = load_study(str(lab["study"]))
    moved = shutil.copytree(lab["dir"], tmp_path / "moved")
    after = load_study(str(moved / "my_escalation.yaml"))
    assert after.spec_hash == before.spec_hash
    assert Path(after.spec.store.path).parent.parent == moved


def test_shipped_studies_keep_their_paths():
    loaded = load_study("model_size")
    assert loaded.spec.store.path == "results/model_size.duckdb"
    assert loaded.spec.report.output_dir == "reports/model_size"


def test_a_sweep_of_a_study_outside_the_repo_finds_the_users_groups_in_every_job(lab):
    args = ["run", str(lab["study"]), "-m", "scenario.max_turns=2,3", "--config-dir", str(lab["conf"]),
            "--no-report"]
    assert main(args) == 0
    db = lab["dir"] / "results" / "my_escalation.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:
        specs = con.execute("SELECT count(*) FROM studies").fetchone()[0]
        done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    finally:
        con.close()
    assert specs == 2 and done == 2 * 3 * 2  # two jobs, each three cells of two seeds


def test_the_reproduce_command_carries_the_config_folders(lab, monkeypatch):
    monkeypatch.setenv(CONFIG_PATH_ENV, str(lab["conf"]))
    loaded = load_study(str(lab["study"]))
    command = loaded.reproduce_command
    assert f"--config-dir {lab['conf']}" in command
    monkeypatch.setenv(CONFIG_PATH_ENV, "")
    # The printed command, run as printed, composes the same spec.
    assert main(["plan", *shlex.split(command.removeprefix("python -m engine run "))]) == 0


def test_a_missing_folder_in_the_environment_is_a_spec_error(lab, monkeypatch, capsys):
    monkeypatch.setenv(CONFIG_PATH_ENV, str(lab["dir"] / "no-such-conf"))
    assert main(["plan", str(lab["study"])]) == 2
    err = capsys.readouterr().err
    assert CONFIG_PATH_ENV in err and "no-such-conf" in err


# Folder names Hydra's override grammar would misread unless quoted: a quote, a comma, brackets.
ODD = "o'brien, [lab] \"x\""


def test_a_config_folder_with_quotes_commas_or_brackets_works(lab, tmp_path, capsys):
    odd = tmp_path / ODD
    shutil.copytree(lab["conf"], odd)
    code = main(["plan", str(lab["study"]), "--config-dir", str(odd)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "My lab's escalation check" in out.out  # composed with the model set found in the odd folder


def test_a_sweep_of_a_study_in_a_folder_with_a_quote_runs_and_merges(lab, tmp_path, capsys):
    # Today: a Hydra grammar error, exit 1, two shards written and advice to rerun that never works.
    folder = tmp_path / ODD
    shutil.copytree(lab["dir"], folder)
    conf = tmp_path / f"conf of {ODD}"
    shutil.copytree(lab["conf"], conf)
    args = ["run", str(folder / "my_escalation.yaml"), "-m", "scenario.max_turns=2,3", "--config-dir", str(conf),
            "--no-report"]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    con = duckdb.connect(str(folder / "results" / "my_escalation.duckdb"), read_only=True)
    try:
        jobs = con.execute("SELECT count(*) FROM sweep_jobs").fetchone()[0]
        done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    finally:
        con.close()
    assert jobs == 2 and done == 2 * 3 * 2


def test_a_colon_in_a_config_folder_names_the_argument_and_the_whole_path(lab, tmp_path, capsys):
    # Today: blamed on ENGINE_CONFIG_PATH, with the path cut at the ':'.
    odd = tmp_path / "lab:conf"
    shutil.copytree(lab["conf"], odd)
    assert main(["plan", str(lab["study"]), "--config-dir", str(odd)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "key '--config-dir'" in err and str(odd) in err and CONFIG_PATH_ENV + ":" not in err
    assert main(["plan", str(lab["study"]), f"hydra.searchpath=[file://{odd}]"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "key 'hydra.searchpath'" in err and str(odd) in err


def test_a_sweep_under_a_folder_hydra_would_interpolate_is_refused_before_writing(lab, tmp_path, capsys):
    folder = tmp_path / "cost ${HOME}"
    shutil.copytree(lab["dir"], folder)
    args = ["run", str(folder / "my_escalation.yaml"), "-m", "scenario.max_turns=2,3", "--config-dir",
            str(lab["conf"]), "--no-report"]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "key 'store.path'" in err and "${" in err
    assert not (folder / "results").exists()
