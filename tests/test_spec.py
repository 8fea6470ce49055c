"""Composition of every study and config group, and spec errors with file, key and exit code 2."""

from pathlib import Path

import pytest
from conftest import REPO, run_cli

from engine.errors import SpecError
from engine.plan.compile import compile_plan
from engine.spec.load import load_spec

STUDIES = sorted(p.stem for p in (REPO / "studies").glob("*.yaml"))
MODEL_SETS = sorted(p.stem for p in (REPO / "conf" / "model_set").glob("*.yaml"))
PERSONAS = sorted(p.stem for p in (REPO / "conf" / "persona").glob("*.yaml"))


JUDGE_SETS = sorted(p.stem for p in (REPO / "conf" / "judge_set").glob("*.yaml"))
# Analysis-only studies need the file to analyse.
STUDY_ARGS = {"provider_vs_size_import": [f"scenario.traces_file.path={REPO / 'tests/data/traces_small.csv'}"]}


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_composes_and_compiles(study):
    loaded = load_spec(study, STUDY_ARGS.get(study, []))
    plan = compile_plan(loaded)
    if loaded.scenario_params.model_dump().get("traces_file"):
        assert plan.trials == []  # analysis-only: nothing to run
    else:
        assert plan.trials and len({t.trial_id for t in plan.trials}) == len(plan.trials)


@pytest.mark.parametrize("judge_set", JUDGE_SETS)
def test_every_judge_set_composes_with_its_study(judge_set):
    study = "blackmail_subfrontier" if judge_set.startswith("blackmail") else "provider_vs_size"
    spec = load_spec(study, [f"judge_set={judge_set}"]).spec
    assert spec.judge_set == judge_set and spec.primary_judge in spec.judges


def test_provider_panel_has_21_models_from_12_providers_with_moe_counts():
    spec = load_spec("provider_vs_size", ["model_set=openrouter_provider_panel"]).spec
    assert len(spec.models) == 21
    assert len({m.provider for m in spec.models.values()}) == 12
    deepseek = spec.models["deepseek_r1"].params
    assert (deepseek.total_b, deepseek.active_b) == (671, 37)


@pytest.mark.parametrize("model_set", MODEL_SETS)
def test_every_model_set_composes_with_the_model_size_study(model_set):
    loaded = load_spec("model_size", [f"model_set={model_set}"])
    assert loaded.spec.model_set == model_set
    assert set(loaded.spec.design.factors["agent"]) == set(loaded.spec.models)


def test_write_up_model_set_has_six_models_8b_to_405b():
    spec = load_spec("model_size", ["model_set=openrouter_size_paper"]).spec
    sizes = sorted(m.params.total_b for m in spec.models.values())
    assert sizes == [8, 24, 70, 100, 200, 405]
    assert {k for k, m in spec.models.items() if m.params.estimated} == {"gpt41_mini", "claude_sonnet4"}
    assert all(m.litellm_id.startswith("openrouter/") for m in spec.models.values())


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_persona_is_usable(persona):
    loaded = load_spec("model_size", [f"design.factors.persona=[{persona}]"])
    assert loaded.scenario_params.personas[persona].text


def spec_error(overrides, study="model_size") -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(study, overrides)
    return info.value


def test_unknown_key_names_file_and_key():
    err = str(spec_error(["+design.seedz=3"]))
    assert "design.seedz" in err and "unknown key" in err and "command-line override" in err


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
    assert "model_set/nope" in err and "studies/model_size.yaml" in err


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
    err = str(spec_error(["design.seeds=[1,2"]))
    assert err.startswith("command-line overrides:") and "[1,2" in err


def test_unknown_study():
    err = str(spec_error([], study="no_such_study"))
    assert "no study named 'no_such_study'" in err and "model_size" in err


def test_cli_spec_error_exits_2_and_writes_nothing(tmp_path):
    db = tmp_path / "never.duckdb"
    result = run_cli("run", "model_size", "design.seeds=ten", f"store.path={db}", "--no-progress")
    assert result.returncode == 2
    assert "design.seeds" in result.stderr and "'ten'" in result.stderr
    assert not db.exists() and not Path(str(db) + ".wal").exists()


def test_dry_run_prints_estimates_and_calls_nothing(tmp_path):
    db = tmp_path / "never.duckdb"
    result = run_cli("run", "model_size", "--dry-run", f"store.path={db}")
    assert result.returncode == 0, result.stderr
    assert "cells 10" in result.stdout and "trials 100" in result.stdout and "model calls ≤ 640" in result.stdout
    assert not db.exists()


def test_plan_prices_api_models_from_registry():
    result = run_cli("plan", "model_size", "model_set=openrouter_size_paper")
    assert result.returncode == 0, result.stderr
    assert "cost ≤ $0.00" not in result.stdout and "claude_sonnet4" in result.stdout
