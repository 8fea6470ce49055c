"""A study that lists no `report.sections` gets its scenario's default sections (results included:
the headline table, the transcripts); a list without any section that shows results is said at plan
time (and at the start of a run), a complete one is not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine import load_study
from engine.cli import main
from engine.kernel.contracts import DEFAULT_SECTIONS
from engine.report.catalog import validate_sections

STUDY = """\
defaults:
  - base
  - model_set: local_ladder
  - scenario: escalation
  - executor: local
  - _self_

name: my_first_study
title: "A first study"
design:
  factors:
    agent: [scripted:hawk, scripted:tit_for_tat]
  seeds: 2
scenario:
  max_turns: 3
"""


@pytest.fixture()
def study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(extra: str = "") -> str:
        path = tmp_path / "my_first_study.yaml"
        path.write_text(STUDY + textwrap.dedent(extra))
        return str(path)

    return write


def test_no_section_list_gets_the_scenarios_defaults(study, capsys):
    loaded = load_study(study())
    types = [s["type"] for s in loaded.spec.report.sections]
    assert types == [s["type"] for s in DEFAULT_SECTIONS if s["type"] != "claims"]
    assert any(section.shows_results for section, _ in validate_sections(loaded.spec.report.sections, loaded.scenario))
    assert main(["plan", study()]) == 0
    assert "warning" not in capsys.readouterr().out


def test_defaults_include_the_claims_section_when_the_study_makes_claims(study):
    loaded = load_study(study("""\
        report:
          claims:
            - claim: "Hawks escalate more"
              test: difference
              metric: nuclear_rate
              a: {agent: "scripted:hawk"}
              b: {agent: "scripted:tit_for_tat"}
              direction: positive
        """))
    assert "claims" in [s["type"] for s in loaded.spec.report.sections]


def test_a_list_without_results_is_warned_about_at_plan_time(study, capsys):
    path = study("""\
        report:
          sections: [{type: summary}, {type: design}, {type: caveats}]
        """)
    assert main(["plan", path]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning report.sections lists no section that shows results (summary, design, caveats)" in out
    assert "headline_table" in out and "fog_control" in out  # the scenario's results sections are named


def test_the_default_report_shows_a_table_and_the_transcripts(study):
    path = study()
    assert main(["run", path, "--no-progress", "--formats", "html"]) == 0
    html = (Path(load_study(path).spec.report.output_dir) / "index.html").read_text()
    assert "<table" in html and "scripted:hawk" in html  # the headline table's rows
    assert 'id="transcript-browser' in html or "transcript-browser" in html


def test_the_abstract_says_when_the_models_are_the_offline_stand_ins():
    from engine.report.sections.builtin import stand_in_note

    local = load_study("model_size")
    note = stand_in_note(local.spec, list(local.spec.models))
    assert note and "offline stand-ins (SmolLM2 135M, Gemma 3 270M †)" in note and "larger models" in note
    api = load_study("model_size", ["model_set=openrouter_size_paper"])
    assert stand_in_note(api.spec, list(api.spec.models)) is None
    # One real model among them: not a stand-in study.
    mixed = load_study("model_size", ["+model@models.gpt4o=gpt4o"])
    assert stand_in_note(mixed.spec, list(mixed.spec.models)) is None


def test_the_claims_section_says_which_write_up_claims_are_not_tested_and_why(study):
    path = study("""\
        report:
          sections: [{type: claims}]
          untested_claims:
            - claim: "Hawks <script>alert(1)</script> escalate because they are hawks"
              why: "an explanation, not a quantity"
        """)
    assert main(["run", path, "--no-progress", "--formats", "html"]) == 0
    html = (Path(load_study(path).spec.report.output_dir) / "index.html").read_text()
    assert "does not test, and why" in html and "an explanation, not a quantity" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_an_untested_claim_needs_its_reason(study):
    from engine.kernel.errors import SpecError

    with pytest.raises(SpecError) as err:
        load_study(study("""\
            report:
              untested_claims: [{claim: "x"}]
            """))
    assert "key 'report.untested_claims.0.why'" in str(err.value)
