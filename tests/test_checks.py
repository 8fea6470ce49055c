"""The checks across stages (engine/checks.py): what a study may name is its scenario's or the
engine's, and every mistake is a spec error naming the file and key, before anything is written."""

from __future__ import annotations

import pytest
from conftest import ANALYSIS_ONLY_ARGS, REPO
from shipped import studies_by_scenario, study_choices

from engine import load_study
from engine.kernel.errors import SpecError
from engine.kernel.registry import REGISTRY, scenario_names
from engine.plan.compile import compile_plan
from engine.plan.generation import generation_settings
from engine.spec.load import load_spec as load_own_fields


def spec_error(study: str, overrides: list[str]) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_study(study, overrides)
    return info.value


@pytest.mark.parametrize("name", ["transcripts", "escalation/transcripts"])
def test_another_scenarios_section_is_a_spec_error(name):
    err = spec_error("provider_vs_size", [f"report.sections=[{{type:summary}},{{type:'{name}'}}]"])
    assert err.key == "report.sections.1.type"
    assert "belongs to scenario escalation" in err.message and "jailbreak" in err.message
    assert "asr_by_model" in err.message  # the error lists what this study may use
    assert err.file == "the command line (override 'report.sections=[{type:summary},{type:'" + name + "'}]')"


def test_a_scenarios_own_section_may_be_named_in_full():
    loaded = load_study("provider_vs_size", ["report.sections=[{type:summary},{type:jailbreak/asr_by_model}]"])
    assert [s["type"] for s in loaded.spec.report.sections] == ["summary", "jailbreak/asr_by_model"]


def test_unknown_section_lists_the_scenarios_and_the_engines_sections():
    err = spec_error("model_size", ["report.sections=[{type:no_such_section}]"])
    assert "unknown section type 'no_such_section'" in err.message
    assert "transcripts" in err.message and "summary" in err.message and "asr_by_model" not in err.message


# Judge kinds a scenario owns (from the registry); provider_vs_size's judge `smollm2` may use none of another's.
OWNED_JUDGE_KINDS = [e for e in REGISTRY.entries("judge") if e.owner and e.owner != "jailbreak"]


@pytest.mark.parametrize("entry", OWNED_JUDGE_KINDS, ids=lambda e: e.full_name)
def test_another_scenarios_judge_kind_is_a_spec_error(entry):
    err = spec_error("provider_vs_size", [f"judges.smollm2.kind={entry.name}"])
    assert err.key == "judges.smollm2.kind"
    assert f"belongs to scenario {entry.owner}" in err.message
    assert "llm" in err.message and "refusal_heuristic" in err.message


def test_spec_stage_checks_only_its_own_fields():
    # The spec stage alone accepts a section it cannot know about; the study loader refuses it.
    overrides = ["report.sections=[{type:transcripts}]"]
    assert load_own_fields("provider_vs_size", overrides).scenario.name == "jailbreak"
    with pytest.raises(SpecError):
        load_study("provider_vs_size", overrides)


def test_wrong_scenario_section_exits_2_and_writes_nothing(run_main, tmp_path):
    db = tmp_path / "never.duckdb"
    result = run_main("run", "provider_vs_size", "report.sections=[{type:transcripts}]", f"store.path={db}",
                     "--no-progress")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "report.sections.0.type" in result.stderr and "belongs to scenario escalation" in result.stderr
    assert not db.exists()


# Per scenario, a study that runs models (an analysis-only study has no design to vary): the one picking
# the scenario's own conf option (model_size's `scenario: escalation`), else the first.
RUN_STUDIES = {scenario: min((s for s in studies if s not in ANALYSIS_ONLY_ARGS),
                             key=lambda s: (study_choices(REPO / "studies" / f"{s}.yaml")["scenario"] != scenario, s))
               for scenario, studies in studies_by_scenario().items()}


@pytest.mark.parametrize("study", RUN_STUDIES.values(), ids=list(RUN_STUDIES))
def test_a_temperature_factor_sets_each_cells_temperature_in_every_scenario(study):
    assert set(RUN_STUDIES) == set(scenario_names())
    loaded = load_study(study, ["+design.factors.temperature=[0.3,0.9]", "generation.temperature=0.5"])
    plan = compile_plan(loaded)
    seen = {t.cell["temperature"]: t.inputs for t in plan.trials if "temperature" in t.cell}
    assert set(seen) == {0.3, 0.9}, study
    for temperature, inputs in seen.items():
        generations = [inputs["generation"]] if "generation" in inputs else [
            v["generation"] for v in inputs.values() if isinstance(v, dict) and "generation" in v]
        assert generations and all(g["temperature"] == temperature for g in generations), (study, inputs)


def test_methods_table_shows_a_temperature_factor_not_the_unused_study_temperature():
    loaded = load_study("temperature_deception")
    shown = dict(generation_settings(loaded.spec))["temperature"]
    levels = loaded.spec.design.factors["temperature"]
    assert all(f"{float(v):g}" in str(shown) for v in levels)
    plain = dict(generation_settings(load_study("model_size").spec))["temperature"]
    assert plain == load_study("model_size").spec.generation.temperature


# -- report.claims: checked at load, against the values an estimate can take and the design -----

RATE_DIFFERENCE = "{claim: x, test: difference, metric: nuclear_rate, a: {persona: adversarial}, b: {persona: default}"


@pytest.mark.parametrize("claim, key, says", [
    (RATE_DIFFERENCE + ", range: [nan, 1]}", "report.claims.0.range.0", "finite"),
    (RATE_DIFFERENCE + ", range: [0, inf]}", "report.claims.0.range.1", "finite"),
    (RATE_DIFFERENCE + ", range: [0.5, 0.2]}", "report.claims.0.range", "low < high"),
    (RATE_DIFFERENCE + ", range: [40, 60]}", "report.claims.0.range", "[-1, 1]"),  # percent for a fraction
    (RATE_DIFFERENCE + ", direction: positive, effect: 20}", "report.claims.0.effect", "[-1, 1]"),
    (RATE_DIFFERENCE + ", direction: positive, effect: inf}", "report.claims.0.effect", "finite"),
    ("{claim: x, test: reduction, metric: nuclear_rate, control: {persona: default}, treated: {persona: adversarial},"
     " range: [0.5, 1.5]}", "report.claims.0.range", "[-inf, 1]"),
    ("{claim: x, test: difference, metric: nuclear_rate, a: {persona: hawkish}, b: {persona: default},"
     " direction: positive}", "report.claims.0.a.persona", "no cells with persona=hawkish"),
    ("{claim: x, test: trend, metric: nuclear_rate, where: {temper: calm}, direction: positive}",
     "report.claims.0.where.temper", "no factor 'temper'"),
], ids=["nan", "inf", "reversed", "percent range", "percent effect", "inf effect", "reduction above 1",
        "missing level", "missing factor"])
def test_a_claim_the_design_could_never_decide_is_a_spec_error(claim, key, says):
    err = spec_error("model_size", [f"+report.claims=[{claim}]"])
    assert err.key == key and says in err.message
    assert err.file.startswith("the command line (override '+report.claims=")


def test_a_bad_claim_in_a_study_file_names_the_file(tmp_path):
    study = tmp_path / "claims.yaml"
    text = (REPO / "studies" / "model_size.yaml").read_text()
    study.write_text(text.replace("      effect: 0.10\n", "      range: [.nan, 1]\n", 1).replace(
        "      direction: positive\n      range", "      range", 1))
    err = spec_error(str(study), [])
    assert err.key == "report.claims.0.range.0" and err.file == str(study)
    level = tmp_path / "level.yaml"
    level.write_text(text.replace("b: {persona: default}", "b: {persona: calm}"))
    err = spec_error(str(level), [])
    assert err.key == "report.claims.2.b.persona" and err.file == str(level)


def test_a_quick_run_on_fewer_levels_keeps_the_files_claims():
    # model_size's claims compare the personas; a run on one persona cannot decide them, and says so
    # in the report rather than refusing the run.
    loaded = load_study("model_size", ["design.factors.persona=[default]"])
    assert loaded.spec.design.factors["persona"] == ["default"] and len(loaded.spec.report.claims) == 4
