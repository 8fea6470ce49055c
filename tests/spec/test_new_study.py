"""`python -m engine new STUDY --scenario S [--dir DIR]` writes a commented starting study and its model
set from the scenario's starter; each plans as written on the local models, runs (slow test), and
nothing is ever overwritten; a bad name, an unknown scenario or an existing study is exit 2 with
nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine import load_study
from engine.cli import main
from engine.kernel.paths import CONFIG_PATH_ENV
from engine.spec.load import add_config_dirs
from engine.spec.new_study import LOCAL_MODELS, starters

SCENARIOS = sorted(starters())


@pytest.fixture(autouse=True)
def clean_search_path(monkeypatch):
    monkeypatch.setenv(CONFIG_PATH_ENV, "")


def test_every_scenario_has_a_starter():
    from engine.kernel.registry import scenario_names

    assert SCENARIOS == sorted(scenario_names())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_new_study_plans_as_written_on_the_local_models(scenario, tmp_path, capsys):
    assert main(["new", "my_study", "--scenario", scenario, "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    study, model_set = tmp_path / "my_study.yaml", tmp_path / "conf" / "model_set" / "my_study_models.yaml"
    assert study.is_file() and model_set.is_file()
    assert f"--config-dir {tmp_path / 'conf'}" in " ".join(out.split())
    assert yaml.safe_load(model_set.read_text()) == {"models": list(LOCAL_MODELS)}
    assert "#" in study.read_text()  # commented for the reader
    assert main(["plan", str(study), "--config-dir", str(tmp_path / "conf")]) == 0
    add_config_dirs([str(tmp_path / "conf")])
    loaded = load_study(str(study))
    assert loaded.scenario.name == scenario and list(loaded.spec.models) == list(LOCAL_MODELS)
    assert all(m.route == "local" for m in loaded.spec.models.values())  # no API key needed
    assert loaded.spec.name == "my_study" and loaded.spec.report.sections  # the scenario's defaults


@pytest.mark.parametrize("args, says", [
    (["new", "My Study", "--scenario", "escalation"], "is not a study name"),
    (["new", "my_study", "--scenario", "no_such_scenario"], "unknown scenario 'no_such_scenario'"),
])
def test_bad_arguments_are_exit_2_and_write_nothing(args, says, tmp_path, capsys):
    assert main([*args, "--dir", str(tmp_path)]) == 2
    assert says in " ".join(capsys.readouterr().err.split())
    assert not any(tmp_path.iterdir())


def test_an_existing_study_is_never_overwritten(tmp_path, capsys):
    assert main(["new", "mine", "--scenario", SCENARIOS[0], "--dir", str(tmp_path)]) == 0
    (tmp_path / "mine.yaml").write_text("my edits\n")
    assert main(["new", "mine", "--scenario", SCENARIOS[-1], "--dir", str(tmp_path)]) == 2
    assert (tmp_path / "mine.yaml").read_text() == "my edits\n"
    assert "exists" in capsys.readouterr().err


@pytest.mark.slow
def test_the_escalation_starter_runs_on_the_local_models(tmp_path, capsys):
    assert main(["new", "first", "--scenario", "escalation", "--dir", str(tmp_path)]) == 0
    conf = str(tmp_path / "conf")
    # One seed and one turn: the starter as written (both models, both personas, the controls), only shorter.
    code = main(["run", str(tmp_path / "first.yaml"), "--config-dir", conf, "design.seeds=1", "scenario.max_turns=1",
                 "--no-progress", "--formats", "html"])
    assert code == 0
    assert (tmp_path / "reports" / "first" / "index.html").is_file()


def test_a_study_that_cannot_be_written_leaves_no_model_set_behind(tmp_path, capsys, monkeypatch):
    real_write = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "blocked.yaml":
            raise OSError(28, "No space left on device", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    assert main(["new", "blocked", "--scenario", SCENARIOS[0], "--dir", str(tmp_path)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "conf" / "model_set" / "blocked_models.yaml").exists()
