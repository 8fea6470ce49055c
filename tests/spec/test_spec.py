"""Composition of every study and config group, and spec errors with file, key and exit code 2."""

import os
from pathlib import Path

import pytest
from conftest import ANALYSIS_ONLY_ARGS, REPO, analysis_only_args, run_cli
from shipped import studies_by_scenario, study_choices

from engine.kernel.errors import SpecError
from engine.plan.compile import compile_plan
from engine import load_study
from engine.kernel.paths import config_search_path

STUDIES = sorted(p.stem for p in (REPO / "studies").glob("*.yaml"))


def options(group: str) -> list[str]:
    """Every option of a config group, across conf/ and the scenarios' conf/ folders."""
    return sorted(p.stem for folder in config_search_path() for p in (folder / group).glob("*.yaml"))


MODEL_SETS = options("model_set")
PERSONAS = options("persona")
JUDGE_SETS = options("judge_set")
# Analysis-only studies need the file to analyse.
STUDY_ARGS = {study: analysis_only_args(study, REPO) for study in ANALYSIS_ONLY_ARGS}


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_composes_and_compiles(study):
    loaded = load_study(study, STUDY_ARGS.get(study, []))
    plan = compile_plan(loaded)
    if study in ANALYSIS_ONLY_ARGS:
        assert plan.trials == []  # analysis-only: nothing to run
    else:
        assert plan.trials and len({t.trial_id for t in plan.trials}) == len(plan.trials)


def study_for_judge_set(judge_set: str) -> str:
    """A study of the scenario whose conf/judge_set/ folder holds `judge_set`: of those with a judge set of
    their own, the one whose own judge set shares the longest prefix with it (a scenario's `x_openrouter`
    goes with the study defaulting to its `x_local`)."""
    (file,) = [f for folder in config_search_path() for f in (folder / "judge_set").glob(f"{judge_set}.yaml")]
    studies = studies_by_scenario()[file.parents[2].name]
    own = {s: study_choices(REPO / "studies" / f"{s}.yaml").get("judge_set", "") for s in studies}
    return max((s for s in studies if own[s]), key=lambda s: (len(os.path.commonprefix([own[s], judge_set])), s))


@pytest.mark.parametrize("judge_set", JUDGE_SETS)
def test_every_judge_set_composes_with_its_study(judge_set):
    study = study_for_judge_set(judge_set)
    spec = load_study(study, [f"judge_set={judge_set}"]).spec
    assert spec.judge_set == judge_set and spec.primary_judge in spec.judges


def test_provider_panel_has_21_models_from_12_providers_with_moe_counts():
    spec = load_study("provider_vs_size", ["model_set=openrouter_provider_panel"]).spec
    assert len(spec.models) == 21
    assert len({m.provider for m in spec.models.values()}) == 12
    deepseek = spec.models["deepseek_r1"].params
    assert (deepseek.total_b, deepseek.active_b) == (671, 37)


@pytest.mark.parametrize("model_set", MODEL_SETS)
def test_every_model_set_composes_with_the_model_size_study(model_set):
    loaded = load_study("model_size", [f"model_set={model_set}"])
    assert loaded.spec.model_set == model_set
    assert set(loaded.spec.design.factors["agent"]) == set(loaded.spec.models)


def test_write_up_model_set_has_six_models_8b_to_405b():
    spec = load_study("model_size", ["model_set=openrouter_size_paper"]).spec
    sizes = sorted(m.params.total_b for m in spec.models.values())
    assert sizes == [8, 24, 70, 100, 200, 405]
    assert {k for k, m in spec.models.items() if m.params.estimated} == {"gpt41_mini", "claude_sonnet4"}
    assert all(m.litellm_id.startswith("openrouter/") for m in spec.models.values())


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_persona_is_usable(persona):
    loaded = load_study("model_size", [f"design.factors.persona=[{persona}]"])
    assert loaded.scenario_params.personas[persona].text


def spec_error(overrides, study="model_size") -> SpecError:
    with pytest.raises(SpecError) as info:
        load_study(study, overrides)
    return info.value


def test_unknown_key_names_file_and_key():
    err = str(spec_error(["+design.seedz=3"]))
    assert "design.seedz" in err and "unknown key" in err and "the command line (override '+design.seedz=3')" in err


def test_unknown_key_in_study_file_names_the_study_file(tmp_path):
    study = tmp_path / "typo.yaml"
    study.write_text((REPO / "studies" / "model_size.yaml").read_text().replace("seeds: 10", "seeds: 10\n  sedes: 3"))
    err = str(spec_error([], study=str(study)))
    assert str(study) in err and "design.sedes" in err and "unknown key" in err


def test_wrong_type_names_key_and_value():
    err = str(spec_error(["design.seeds=ten"]))
    assert "design.seeds" in err and "'ten'" in err


def test_wrong_type_in_group_file_names_the_group_file():
    err = str(spec_error(["scenario.max_turns=many"]))
    assert "scenario.max_turns" in err and "'many'" in err


def test_unknown_model_lists_known_ones():
    err = str(spec_error(["design.factors.agent=[gpt5_ultra]"]))
    assert "unknown model 'gpt5_ultra'" in err and "design.factors.agent" in err and "smollm2_135m" in err


def test_unknown_model_set_is_an_error():
    err = str(spec_error(["model_set=nope"]))
    assert "model_set/nope" in err and "the command line (override 'model_set=nope')" in err
    assert "local_ladder" in err  # the options it could be


def test_unknown_persona():
    err = str(spec_error(["design.factors.persona=[pirate]"]))
    assert "unknown persona 'pirate'" in err and "design.factors.persona" in err


def test_unknown_scripted_policy():
    err = str(spec_error(["design.controls=[{agent: [scripted:bogus]}]"]))
    assert "unknown scripted policy 'bogus'" in err


def test_setting_ignored_by_scripted_agents_is_an_error():
    err = str(spec_error(["design.factors.agent=[scripted:hawk]"]))
    assert "would be ignored for scripted agents" in err and "design.factors.persona" in err


def test_inert_lever_is_an_error():
    err = str(spec_error(["scenario.ceasefire_turns=50"]))
    assert "could never end a game" in err and "scenario" in err


def test_lever_out_of_range_is_an_error():
    err = str(spec_error(["scenario.levers.circuit_breaker=12"]))
    assert "scenario.levers.circuit_breaker" in err


def test_unknown_factor_is_an_error():
    err = str(spec_error(["+design.factors.weather=[sunny]"]))
    assert "unknown factor 'weather'" in err


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    study = tmp_path / "broken.yaml"
    study.write_text("defaults:\n  - base\nname: [oops\n")
    err = str(spec_error([], study=str(study)))
    assert "invalid YAML" in err and str(study) in err and "line 3" in err


def test_override_syntax_error_points_at_the_command_line():
    err = str(spec_error(["generation.top_p=1", "design.seeds=[1,2"]))
    assert err.startswith("the command line (override 'design.seeds=[1,2'):") and "top_p" not in err


def test_unknown_study():
    err = str(spec_error([], study="no_such_study"))
    assert "no study named 'no_such_study'" in err and "model_size" in err


def test_cli_spec_error_exits_2_and_writes_nothing(run_main, tmp_path):
    db = tmp_path / "never.duckdb"
    result = run_main("run", "model_size", "design.seeds=ten", f"store.path={db}", "--no-progress")
    assert result.returncode == 2
    assert "design.seeds" in result.stderr and "'ten'" in result.stderr
    assert not db.exists() and not Path(str(db) + ".wal").exists()


def test_dry_run_prints_estimates_and_calls_nothing(run_main, tmp_path):
    db = tmp_path / "never.duckdb"
    result = run_main("run", "model_size", "--dry-run", f"store.path={db}")
    assert result.returncode == 0, result.stderr
    assert "cells 11" in result.stdout and "trials 110" in result.stdout and "model calls ≤ 640" in result.stdout
    assert not db.exists()


def test_plan_prices_api_models_from_registry(run_main):
    result = run_main("plan", "model_size", "model_set=openrouter_size_paper")
    assert result.returncode == 0, result.stderr
    assert "cost ≤ $0.00" not in result.stdout and "claude_sonnet4" in result.stdout


# -- design.seeds --------------------------------------------------------------------------------

@pytest.mark.parametrize("override", ["design.seeds=0", "design.seeds=-3", "design.seeds=[]", "design.seeds=[-1,2]",
                                      "design.seeds=[1,1]"])
def test_invalid_seeds_are_spec_errors_before_any_call(run_main, override):
    result = run_main("plan", "model_size", override)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "spec error" in result.stderr and "design.seeds" in result.stderr
    assert "Traceback" not in result.stderr and "trials" not in result.stdout


@pytest.mark.parametrize("seeds, message", [
    (0, ">= 1"), (-3, ">= 1"), ([], "empty"), ([-1, 2], "-1"), ([3, 1, 3], "seed 3 is repeated"),
    (True, "not True"), (1.5, "not 1.5"), ([1, 2.0], "not 2.0"), ([1, False], "not False"),
])
def test_design_rejects_bad_seeds(seeds, message):
    from pydantic import ValidationError

    from engine.spec.schema import Design

    with pytest.raises(ValidationError) as info:
        Design.model_validate({"factors": {"agent": ["a"]}, "seeds": seeds})
    (err,) = info.value.errors()
    assert err["loc"][0] == "seeds" and message in err["msg"]


def test_seed_list_of_valid_seeds_is_unchanged():
    from engine.spec.schema import Design

    def seed_list(seeds):
        return Design.model_validate({"factors": {"agent": ["a"]}, "seeds": seeds}).seed_list
    assert seed_list(3) == [0, 1, 2] and seed_list(1) == [0]
    assert seed_list([5, 0, 2]) == [5, 0, 2] and seed_list(["4"]) == [4]


# -- store.path and report.output_dir ------------------------------------------------------------

# A study that plays one scripted game (no model call): if a bad path got past validation, the run
# would write its database and report within seconds.
ONE_SCRIPTED_GAME = ["design.factors.agent=[scripted:hawk]", "~design.factors.persona", "design.controls=[]",
                     "design.seeds=1", "--no-progress", "--formats=html"]


def assert_spec_error_writing_nothing(result, key, *paths):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "spec error" in result.stderr and f"key '{key}'" in result.stderr
    assert "Traceback" not in result.stderr
    for path in paths:
        assert not Path(path).exists(), path


def test_store_path_under_a_regular_file_is_a_spec_error(run_main, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    db, rep = tmp_path / "afile" / "x.duckdb", tmp_path / "rep"
    result = run_main("run", "model_size", f"store.path={db}", f"report.output_dir={rep}", *ONE_SCRIPTED_GAME)
    assert_spec_error_writing_nothing(result, "store.path", rep, tmp_path / "results")
    assert "is a file, not a folder" in result.stderr and (tmp_path / "afile").read_text() == "not a folder"


def test_store_path_that_is_a_folder_is_a_spec_error(run_main, tmp_path):
    folder, rep = tmp_path / "db_folder", tmp_path / "rep"
    folder.mkdir()
    result = run_main("run", "model_size", f"store.path={folder}", f"report.output_dir={rep}", *ONE_SCRIPTED_GAME)
    assert_spec_error_writing_nothing(result, "store.path", rep)
    assert "is a folder" in result.stderr and list(folder.iterdir()) == []


def test_store_path_under_proc_is_a_spec_error(run_main, tmp_path):
    rep = tmp_path / "rep"
    result = run_main("run", "model_size", "store.path=/proc/x/y.duckdb", f"report.output_dir={rep}",
                     *ONE_SCRIPTED_GAME)
    assert_spec_error_writing_nothing(result, "store.path", rep)
    assert "/proc" in result.stderr


@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_report_output_dir_that_is_or_is_under_a_file_is_a_spec_error(run_main, tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    out = afile if where == "is_a_file" else afile / "rep"
    db = tmp_path / "x.duckdb"
    result = run_main("run", "model_size", f"store.path={db}", f"report.output_dir={out}", *ONE_SCRIPTED_GAME)
    assert_spec_error_writing_nothing(result, "report.output_dir", db, str(db) + ".wal")
    assert afile.read_text() == "not a folder"


def test_output_path_checks_create_nothing(tmp_path, monkeypatch):
    from engine.spec.load import check_output_path

    monkeypatch.chdir(tmp_path)
    check_output_path("results/a/b/study.duckdb", "store.path", folder=False)
    check_output_path("reports/a/b", "report.output_dir", folder=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SpecError, match="read-only"):
        monkeypatch.setattr("os.statvfs", lambda p: type("V", (), {"f_flag": os.ST_RDONLY})())
        check_output_path("results/study.duckdb", "store.path", folder=False)
    with pytest.raises(SpecError, match="/sys"):
        check_output_path("/sys/kernel/x", "report.output_dir", folder=True)


# -- which file an error is blamed on ----------------------------------------------------------------

def study_with_design(tmp_path, design_yaml: str) -> Path:
    study = tmp_path / "listy.yaml"
    text = (REPO / "studies" / "model_size.yaml").read_text()
    assert "design:\n  seeds: 10\n" in text
    study.write_text(text.replace("design:\n  seeds: 10\n", design_yaml))
    return study


def test_bad_factor_inside_a_controls_list_names_the_study_file(tmp_path):
    study = study_with_design(tmp_path, "design:\n  seeds: 10\n  controls:\n"
                                        "    - agent: [scripted:hawk]\n      bogus_factor: [1]\n")
    err = str(spec_error([], study=str(study)))
    assert err.startswith(str(study)) and "design.controls.0.bogus_factor" in err and "unknown factor" in err
    assert "conf/design" not in err


def test_wrong_type_inside_a_list_item_names_the_study_file(tmp_path):
    study = study_with_design(tmp_path, "design:\n  seeds: 10\n  controls:\n    - agent: [{x: 1}]\n")
    err = str(spec_error([], study=str(study)))
    assert "design.controls.0.agent.0" in err and "conf/design" not in err
    assert all(line.startswith(str(study)) for line in err.splitlines())


def test_wrong_type_of_a_scalar_in_the_study_file_names_the_study_file(tmp_path):
    study = study_with_design(tmp_path, "design:\n  seeds: ten\n")
    err = str(spec_error([], study=str(study)))
    assert "design.seeds" in err and "conf/design" not in err
    assert all(line.startswith(str(study)) for line in err.splitlines())


def test_errors_in_group_files_still_name_the_group_file():
    from engine.spec.load import Sources, _has_path

    assert _has_path({"a": [{"b": 1}, {"c": [2]}]}, ["a", "1", "c", "0"])
    assert _has_path({"a": [{"b": 1}]}, ["a", "0", "b", "int"])  # a union member below a scalar the file sets
    assert not _has_path({"a": [{"b": 1}]}, ["x", "0"]) and not _has_path({"a": {"b": 1}}, ["a", "c"])
    sources = Sources(REPO / "studies" / "model_size.yaml",
                      {"design": "mirror_matches", "model@models.smollm2_135m": "smollm2_135m"}, ())
    assert sources.file_for("design.controls.0.agent") == "engine/scenarios/escalation/conf/design/mirror_matches.yaml"
    assert sources.file_for("models.smollm2_135m.price.input_per_mtok") == "conf/model/smollm2_135m.yaml"
    assert sources.file_for("design.seeds") == "studies/model_size.yaml"


@pytest.mark.parametrize("override", [
    "model_set=does_not_exist", "scenario=nope", "+design.bogus=1", "design.factors.nope=[1]",
    "generation.temperature=hot", "executor.max_retries=-1", "design.seeds=[1,", "hydra/launcher=nope",
    "store.path=${nope}", "design.controls=[{agent: [{x: 1}]}]",
])
def test_a_bad_override_is_blamed_on_the_command_line(override):
    err = str(spec_error(["generation.top_p=1", override, "design.seeds=3"]))
    lines = err.splitlines()
    assert lines and all(line.startswith(f"the command line (override '{override}')") for line in lines), err
    assert "studies/model_size.yaml" not in err


def test_a_bad_group_option_in_the_study_file_is_still_blamed_on_the_study_file(tmp_path):
    study = tmp_path / "nogroup.yaml"
    study.write_text((REPO / "studies" / "model_size.yaml").read_text().replace("scenario: escalation",
                                                                                 "scenario: nope"))
    err = str(spec_error(["design.seeds=3"], study=str(study)))
    assert err.startswith(str(study)) and "scenario/nope" in err


def test_cli_bad_override_names_the_command_line(run_main):
    result = run_main("plan", "model_size", "design.factors.nope=[1]")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the command line (override 'design.factors.nope=[1]')" in " ".join(result.stderr.split())


# -- model entries: api_base, api_key_env, extra_params --------------------------------------------------

MODEL = {"litellm_id": "openai/my-model", "display_name": "Mine", "provider": "Me", "family": "M", "route": "mine",
         "params": {"total_b": 8}, "price": {"input_per_mtok": 0, "output_per_mtok": 0}}


def model_error(**fields) -> dict:
    from pydantic import ValidationError

    from engine.spec.schema import ModelEntry

    with pytest.raises(ValidationError) as info:
        ModelEntry.model_validate({**MODEL, **fields})
    (err,) = info.value.errors()
    return err


def test_model_entry_new_fields_default_to_nothing_and_keep_trial_ids():
    from engine.spec.schema import ModelEntry

    entry = ModelEntry.model_validate(MODEL)
    assert entry.api_base is None and entry.api_key_env is None and entry.extra_params == {}
    full = ModelEntry.model_validate({**MODEL, "api_base": "https://llm.example.org/v1", "api_key_env": "MY_KEY",
                                      "extra_params": {"reasoning_effort": "low", "extra_headers": {"X-A": "1"}}})
    assert full.api_base == "https://llm.example.org/v1" and full.api_key_env == "MY_KEY"
    assert full.extra_params["extra_headers"] == {"X-A": "1"}
    loaded = load_study("model_size", ["design.seeds=2"])
    with_fields = load_study("model_size", ["design.seeds=2", "+models.smollm2_135m.extra_params={n_probs: 1}"])
    assert ({t.trial_id for t in compile_plan(loaded).trials}
            == {t.trial_id for t in compile_plan(with_fields).trials})


def test_api_base_must_be_an_http_url():
    assert "http://" in model_error(api_base="llm.example.org:8000")["msg"]
    assert model_error(api_base="ftp://llm.example.org")["loc"] == ("api_base",)


@pytest.mark.parametrize("value, message", [
    ("sk-or-v1-abcdef", "takes the NAME of an environment variable, not the key"),
    ("A" * 41, "takes the NAME of an environment variable, not the key"),
    ("1KEY", "name of an environment variable"), ("MY-KEY", "name of an environment variable"),
])
def test_api_key_env_takes_a_variable_name(value, message):
    err = model_error(api_key_env=value)
    assert err["loc"] == ("api_key_env",) and message in err["msg"]


def test_an_api_key_in_a_model_entry_is_refused_without_echoing_it():
    err = model_error(api_key="sk-secret-123")
    assert "put the key in an environment variable and name it in api_key_env" in err["msg"]
    text = str(spec_error(["+models.smollm2_135m.api_key=sk-secret-123"]))
    assert "key 'models.smollm2_135m.api_key'" in text and "api_key_env" in text and "sk-secret" not in text
    text = str(spec_error(["+models.smollm2_135m.extra_params={api_key: sk-secret-123}"]))
    assert "api_key_env" in text and "sk-secret" not in text


def test_cli_key_in_api_key_env_is_a_spec_error_that_does_not_print_it():
    result = run_cli("plan", "model_size", "+models.smollm2_135m.api_key_env=sk-or-v1-0123456789abcdef")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    stderr = " ".join(result.stderr.split())
    assert "models.smollm2_135m.api_key_env" in stderr and "not the key" in stderr
    assert "0123456789abcdef" not in result.stderr
