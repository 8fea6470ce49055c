"""The agentic-misalignment scenario's config groups as users type them: its judge sets and variant
resolve as overrides, an error in its rubric names the file in its conf/ folder, and the commands its
studies document (run on Inspect's scenario source) are found (moved here from tests/spec/test_configs.py)."""

import pytest
from shipped import documented_commands

from engine.kernel.paths import REPO_ROOT
from engine.spec.load import Sources, compose

CONF = REPO_ROOT / "engine" / "scenarios" / "agentic_misalignment" / "conf"


@pytest.mark.parametrize(("study", "overrides", "check"), [
    ("blackmail_subfrontier", ["judge_set=blackmail_openrouter"],
     lambda c: c["judges"]["blackmail_llm"]["model"]["litellm_id"].endswith("gpt-4.1-mini")),
    ("blackmail_subfrontier", ["scenario=agentic_misalignment_leaking", "judge_set=leaking_local"],
     lambda c: c["scenario"]["variant"] == "leaking" and c["primary_judge"] == "leak_llm"),
    ("leaking_subfrontier", ["judge_set=leaking_openrouter"], lambda c: c["judge_set"] == "leaking_openrouter"),
])
def test_agentic_groups_resolve_as_overrides(study, overrides, check):
    container, _ = compose(study, overrides)
    assert check(container)


def test_file_for_names_the_agentic_folder_that_holds_the_rubric():
    file = CONF / "rubric" / "blackmail_structure_v1.yaml"
    assert file.is_file()
    sources = Sources(REPO_ROOT / "studies" / "model_size.yaml",
                      {"rubric@judges.structure.rubric": "blackmail_structure_v1"}, ())
    assert sources.file_for("judges.structure.rubric.labels") == str(file.relative_to(REPO_ROOT))


def test_the_documented_inspect_evals_commands_are_found():
    # A study comment's bare ARGS="scenario.source=inspect_evals ..." (no `make ... STUDY=`) is that study's.
    found = {study for _, study, args in documented_commands() if args[:1] == ["scenario.source=inspect_evals"]}
    assert found == {"blackmail_subfrontier", "leaking_subfrontier"}
