"""A model set written as the README shows it, `models: [a, b]` in conf/model_set/<name>.yaml (the
short form), places the same model entries as the long form (a defaults list of /model@models.<name>),
with the same spec hash; a short form that names no model entry, or a list in the wrong place, is a
spec error naming the model set's file and key, exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine import load_study
from engine.cli import main
from engine.kernel.errors import SpecError
from engine.kernel.paths import CONFIG_PATH_ENV, REPO_ROOT
from engine.spec.load import add_config_dirs

STUDY = (REPO_ROOT / "studies" / "model_size.yaml").read_text().replace("model_set: local_ladder", "model_set: my_lab")


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_PATH_ENV, "")
    conf, studies = tmp_path / "conf", tmp_path / "studies"
    (conf / "model_set").mkdir(parents=True)
    studies.mkdir()
    (studies / "model_size.yaml").write_text(STUDY)
    add_config_dirs([str(conf)])

    def model_set(text: str) -> Path:
        path = conf / "model_set" / "my_lab.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return studies / "model_size.yaml", model_set


def test_the_short_form_places_the_entries_the_long_form_does(lab):
    study, model_set = lab
    model_set("models: [smollm2_135m, gemma3_270m]\n")
    short = load_study(str(study))
    long = load_study("model_size")
    assert list(short.spec.models) == ["smollm2_135m", "gemma3_270m"]
    assert short.spec.models == long.spec.models and short.spec.design == long.spec.design
    assert short.spec.model_set == "my_lab"
    # The model set's name is recorded, so the specs differ by that name only.
    assert {**short.resolved, "model_set": "x", "store": None, "report": None} == \
        {**long.resolved, "model_set": "x", "store": None, "report": None}


def test_the_short_form_in_the_readme_runs_from_the_cli(lab, capsys):
    study, model_set = lab
    model_set("# my lab's models\nmodels: [gemma3_270m]\n")
    assert main(["plan", str(study)]) == 0
    assert "Gemma 3 270M" in capsys.readouterr().out


@pytest.mark.parametrize("text, key, says", [
    ("models: [smollm2_135m, no_such_model]\n", "models.1", "'no_such_model' is not a model entry"),
    ("models: [smollm2_135m, smollm2_135m]\n", "models", "each once"),
    ("models: []\n", "models", "one or more models"),
    ("models: [{smollm2_135m: 1}]\n", "models.0", "is not the name of a conf/model/ entry"),
    ("# @package _global_\nmodels: [smollm2_135m]\n", "model_set", "models: [name, ...]"),
    ("models: {smollm2_135m: {}}\n", "model_set", "models: [name, ...]"),
])
def test_a_bad_short_form_names_the_model_set_file_and_key(lab, capsys, text, key, says):
    study, model_set = lab
    path = model_set(text)
    with pytest.raises(SpecError) as err:
        load_study(str(study))
    assert err.value.key == key and says in err.value.message, err.value
    assert err.value.file is not None and err.value.file.endswith(path.name), err.value.file
    assert main(["plan", str(study)]) == 2
