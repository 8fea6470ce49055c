"""Bad input, whatever its kind, is a spec error naming the file and the key: exit code 2, before
anything is written, at once; never a traceback, an abort or a hang (issue 19). In process through
`engine.cli.main`, on the shipped scripted study model_size."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.kernel.paths import CONFIG_PATH_ENV, REPO_ROOT
from engine.sweep.expand import MAX_JOBS_ENV, MAX_SWEEP_JOBS


@pytest.fixture(autouse=True)
def clean_search_path(monkeypatch):
    monkeypatch.setenv(CONFIG_PATH_ENV, "")
    monkeypatch.delenv(MAX_JOBS_ENV, raising=False)


def files_under(*folders: Path) -> set[Path]:
    return {Path(d) / f for folder in folders for d, _, fs in os.walk(folder) for f in fs}


def refused(capsys, tmp_path: Path, *args: str, outputs: bool = True) -> str:
    """Run `python -m engine <args>` in process, outputs placed in tmp_path; assert a spec error that
    wrote nothing, within seconds; return what it printed on stderr."""
    shipped = files_under(REPO_ROOT / "results", REPO_ROOT / "reports")
    placed = [f"store.path={tmp_path}/out/study.duckdb", f"report.output_dir={tmp_path}/out/report"] if outputs else []
    started = time.perf_counter()
    code = main([*args, *placed])
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("spec error") and "Traceback" not in err
    assert seconds < 20, f"took {seconds:.0f} s"
    assert not (tmp_path / "out").exists() and files_under(REPO_ROOT / "results", REPO_ROOT / "reports") == shipped
    return " ".join(err.split())


# -- the class: malformed overrides of a shipped study --------------------------------------------

MALFORMED = [  # (override, the key the error must name)
    ("executor.concurrency.local=0", "executor.concurrency.local"),
    ("executor.concurrency.local=-1", "executor.concurrency.local"),
    ("executor.concurrency.default=0", "executor.concurrency.default"),
    ("executor.concurrency.openrouter=true", "executor.concurrency.openrouter"),
    ("executor.concurrency.local=100000000", "executor.concurrency.local"),
    ("executor.concurrency=5", "executor.concurrency"),
    ("executor.max_concurrent_trials=0", "executor.max_concurrent_trials"),
    ("executor.max_concurrent_trials=1000000000", "executor.max_concurrent_trials"),
    ("executor.timeout_s=inf", "executor.timeout_s"),
    ("executor.timeout_s=nan", "executor.timeout_s"),
    ("executor.commit_interval_s=0", "executor.commit_interval_s"),
    ("executor.progress_every_s=inf", "executor.progress_every_s"),
    ("executor.max_retries=1000000000", "executor.max_retries"),
    ("executor.backoff_initial_s=1e12", "executor.backoff_initial_s"),
    ("executor.backoff_max_s=inf", "executor.backoff_max_s"),
    ("executor.retry_after_max_s=-1", "executor.retry_after_max_s"),
    ("executor.parse_retries=1000000", "executor.parse_retries"),
    ("executor.local_threads=0", "executor.local_threads"),
    ("executor.local_threads=100000", "executor.local_threads"),
    ("executor.budget.max_usd=nan", "executor.budget.max_usd"),
    ("executor.budget.max_tokens=true", "executor.budget.max_tokens"),
    ("design.seeds=100000000000", "design.seeds"),
    ("design.seeds=[99999999999]", "design.seeds"),
    ("design.seeds=abc", "design.seeds"),
    ("design.seeds={a: 1}", "design.seeds"),
    ("design.seeds=range(1,3,0)", "design.seeds"),
    ("design.factors.persona=[]", "design.factors"),
    ("design.factors.persona=[{a: 1}]", "design.factors.persona.0"),
    ("design.target_halfwidth=nan", "design.target_halfwidth"),
    ("design.assumed_icc=2", "design.assumed_icc"),
    ("generation.max_tokens=100000000000000000000", "generation.max_tokens"),
    ("generation.temperature=nan", "generation.temperature"),
    ("design=5", "design"),
    ("model_set=5", "model_set"),
    ("nope=1", "nope"),
    ("+design.nope=1", "design.nope"),
    ("title=???", "title"),
    ("title=${nope}", "title"),
    ("+deep=" + "[" * 300 + "]" * 300, "deep"),
    ("design.seeds=[1,2", "design.seeds"),
    ("report.claims=5", "report.claims"),
    ("report.sections=[{type: nope}]", "report.sections.0.type"),
    ("scenario.max_turns=1000000000", "scenario.max_turns"),
]


@pytest.mark.parametrize("override, key", MALFORMED, ids=[o[:60] for o, _ in MALFORMED])
def test_a_malformed_override_is_a_spec_error_naming_it(capsys, tmp_path, override, key):
    err = refused(capsys, tmp_path, "plan", "model_size", override)
    assert f"key '{key}'" in err and f"the command line (override '{override}')" in err


SWEEPS = [  # (sweep override, the key the error must name, what it must say)
    ("design.seeds=range(1,3,0)", "design.seeds", "step of 0"),
    ("design.seeds=range(0,1,0.0)", "design.seeds", "step of 0"),
    ("design.seeds=range(3,1)", "design.seeds", "no values"),
    ("design.seeds=range(0,inf)", "design.seeds", "finite"),
    ("design.seeds=interval(1,3)", "design.seeds", "range(start, stop, step)"),
    ("design.seeds=glob(*)", "design.seeds", "not supported"),
    ("design.seeds=1,,2", "design.seeds", "cannot be parsed"),
    ("design.seeds=choice()", "design.seeds", "empty choice"),
    ("executor.concurrency.local=0,1", "executor.concurrency.local", "greater than or equal to 1"),
    ("design=5,6", "design", "Config group"),
]


@pytest.mark.parametrize("override, key, says", SWEEPS, ids=[o for o, _, _ in SWEEPS])
def test_a_malformed_sweep_is_a_spec_error_naming_its_override(capsys, tmp_path, override, key, says):
    err = refused(capsys, tmp_path, "plan", "model_size", "-m", override)
    assert f"key '{key}'" in err and says in err and "the command line (override '" in err


# -- the cases of issue 19 ------------------------------------------------------------------------

def test_a_sweep_of_too_many_jobs_is_refused_before_it_is_expanded(capsys, tmp_path):
    # Today: every one of the 99,999 jobs composed and validated, for minutes, printing nothing.
    err = refused(capsys, tmp_path, "plan", "model_size", "-m", "design.seeds=range(1,100000)",
                  "scenario.max_turns=2,3")
    assert "key 'design.seeds'" in err and "199,998 jobs" in err and f"limit of {MAX_SWEEP_JOBS}" in err
    assert MAX_JOBS_ENV in err


def test_the_sweep_job_limit_is_a_setting(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_JOBS_ENV, "2")
    err = refused(capsys, tmp_path, "plan", "model_size", "-m", "scenario.max_turns=2,3,4")
    assert "3 jobs" in err and "limit of 2" in err and "scenario.max_turns" in err
    monkeypatch.setenv(MAX_JOBS_ENV, "lots")
    err = refused(capsys, tmp_path, "plan", "model_size", "-m", "scenario.max_turns=2,3")
    assert MAX_JOBS_ENV in err and "'lots'" in err


def test_a_zero_step_range_names_the_override(capsys, tmp_path):
    err = refused(capsys, tmp_path, "plan", "model_size", "-m", "design.seeds=range(1,3,0)")
    assert "the command line (override 'design.seeds=range(1,3,0)'): key 'design.seeds'" in err


def swept_study(tmp_path: Path, params: str) -> Path:
    study = tmp_path / "swept.yaml"
    source = (REPO_ROOT / "studies" / "model_size.yaml").read_text()
    study.write_text(source + textwrap.dedent(f"""
        hydra:
          sweeper:
            params:
              {params}
        """))
    return study


@pytest.mark.parametrize("params, key", [
    ("generation.temprature: 0,0.7", "generation.temprature"),  # a typo of a key
    ("scenario.max_turns: 3,-1", "scenario.max_turns"),  # a bad value
    ("scenario.max_turns: 3,,4", "scenario.max_turns"),  # a malformed sweep
    ("design.seeds: range(1,3,0)", "design.seeds"),
])
def test_a_mistake_in_the_studys_sweeper_params_names_the_study_file(capsys, tmp_path, params, key):
    study = swept_study(tmp_path, params)
    err = refused(capsys, tmp_path, "plan", str(study), "-m")
    assert f"{study} (hydra.sweeper.params: '" in err and f"key '{key}'" in err
    assert "the command line" not in err


def test_the_command_line_still_wins_over_the_studys_sweeper_params(capsys, tmp_path):
    study = swept_study(tmp_path, "generation.temperature: 0,0.7")
    err = refused(capsys, tmp_path, "plan", str(study), "-m", "generation.temperature=0,5")
    assert "the command line (override 'generation.temperature=5')" in err and "key 'generation.temperature'" in err


def test_a_missing_required_value_names_its_file_and_key(capsys, tmp_path):
    # A model entry of the user's own that leaves its id unset: today accepted as the id '???'.
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model_set").mkdir()
    entry = (REPO_ROOT / "conf" / "model" / "smollm2_135m.yaml").read_text()
    (conf / "model" / "unset.yaml").write_text(
        "\n".join("litellm_id: ???" if ln.startswith("litellm_id:") else ln for ln in entry.splitlines()))
    (conf / "model_set" / "with_unset.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        defaults:
          - /model@models.unset: unset
        model_set: with_unset
        """))
    err = refused(capsys, tmp_path, "plan", "model_size", "model_set=with_unset", "--config-dir", str(conf))
    assert f"{conf / 'model' / 'unset.yaml'}: key 'models.unset.litellm_id'" in err and "???" in err
    # An analysis-only study run without its data: the study file's own ??? (today the file was '???').
    err = refused(capsys, tmp_path, "plan", "provider_vs_size_import")
    assert "studies/provider_vs_size_import.yaml: key 'scenario.traces_file.path'" in err
    assert "spec error ???" not in err


@pytest.mark.parametrize("text, says", [
    ("bomb: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"b{i}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)), "100,000 values"),
    ("deep: " + "[" * 500 + "]" * 500 + "\n", "nests deeper"),
])
def test_a_yaml_bomb_in_a_study_file_is_refused_at_once(capsys, tmp_path, text, says):
    study = tmp_path / "bomb.yaml"
    study.write_text((REPO_ROOT / "studies" / "model_size.yaml").read_text() + text)
    err = refused(capsys, tmp_path, "plan", str(study))
    assert f"spec error {study}: " in err and says in err


def test_a_study_path_that_is_no_regular_file_is_refused_at_once(capsys, tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")  # would never finish reading
    for name in ("folder.yaml", "zero.yaml"):
        err = refused(capsys, tmp_path, "plan", str(tmp_path / name))
        assert f"{tmp_path / name} is not a regular file" in err


def test_a_yaml_bomb_in_a_config_folder_names_its_file(capsys, tmp_path):
    option = tmp_path / "conf" / "model_set" / "bomb.yaml"
    option.parent.mkdir(parents=True)
    option.write_text("# @package _global_\nmodel_set: bomb\nx: " + "[" * 200 + "]" * 200 + "\n")
    err = refused(capsys, tmp_path, "plan", "model_size", "model_set=bomb", "--config-dir", str(tmp_path / "conf"))
    assert f"spec error {option}: its YAML nests deeper" in err


@pytest.mark.parametrize("folder", ["", "/no/such/folder"])
def test_a_config_folder_that_is_not_one_is_refused(capsys, tmp_path, folder):
    err = refused(capsys, tmp_path, "plan", "model_size", "--config-dir", folder)
    assert "key '--config-dir'" in err and f"config folder not found: {folder!r}" in err
