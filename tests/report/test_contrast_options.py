"""The primary contrasts a study names (the `primary` and `reference` options of the paired_contrasts
and paired_asr sections) are checked at load: a model the study does not have, in its spec or in
the imported file, is a spec error naming the key (exit 2, nothing written); so are a pair of one
model and both options at once. The section then shows the named pairs as the primary family."""

from __future__ import annotations

import re

import pytest
from jailbreak_standin import MODELS, refuses_by_hash, run_standin, standin_overrides

from engine.cli import main
from engine.kernel.errors import SpecError
from engine.report.catalog import validate_sections
from engine.report.context import ReportContext
from engine.store.db import StudyStore
from engine.study import load_study

PROMPTS = [f"cyber-0{i}" for i in range(1, 7)]
SMALL_TRACES = "scenario.traces_file.path=tests/data/traces_small.csv"  # models m1, m2, m3


def standin(db, section: str) -> list[str]:
    return standin_overrides(db, PROMPTS, ("direct", "roleplay"), MODELS, f"report.sections=[{section}]")


@pytest.mark.parametrize(("section", "key", "message"), [
    ("{type: paired_contrasts, metric: asr_broad, primary: [[smollm2_135m, gpt5]]}",
     "report.sections.0.primary.0.1", "'gpt5' is not a model of this study"),
    ("{type: paired_contrasts, metric: asr_broad, reference: nobody}", "report.sections.0.reference",
     "'nobody' is not a model of this study"),
    ("{type: paired_asr, primary: [[gemma3_270m, smollm2_135m], [gemma3_270m, gemma3_270m]]}",
     "report.sections.0.primary.1", "two different models"),
    ("{type: paired_asr, primary: [[gemma3_270m, smollm2_135m]], reference: gemma3_270m}",
     "report.sections.0.reference", "not both"),
])
def test_bad_primary_contrasts_are_spec_errors_naming_the_key(tmp_path, section, key, message):
    with pytest.raises(SpecError) as info:
        load_study("provider_vs_size", standin(tmp_path / "db.duckdb", section))
    assert info.value.key == key and message in info.value.message


def test_a_model_the_imported_traces_lack_is_a_spec_error_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["plan", "provider_vs_size_import", SMALL_TRACES, f"store.path={out}/db.duckdb",
                 f"report.output_dir={out}/report", "report.sections=[{type: paired_asr, primary: [[m1, m9]]}]"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert "report.sections.0.primary.0.1" in err and "'m9' is not a model of this study" in err
    assert "m1, m2, m3" in err  # the models the file has
    assert not out.exists()


def test_named_pairs_are_the_primary_family(tmp_path):
    section = "{type: paired_contrasts, metric: asr_broad, primary: [[gemma3_270m, smollm2_135m]]}"
    overrides = standin(tmp_path / "db.duckdb", section)
    run_standin(overrides, refuses_by_hash)
    loaded = load_study("provider_vs_size", overrides)
    store = StudyStore(tmp_path / "db.duckdb", read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(tmp_path / "db.duckdb"))
        [(obj, options)] = validate_sections(loaded.spec.report.sections, loaded.scenario)
        text = re.sub(r"\\(.)", r"\1", obj.render(ctx, options).markdown)
    finally:
        store.close(checkpoint=False)
    assert "The primary contrasts are the pair of models this section names before the data" in text
    rows = [line for line in text.splitlines() if line.startswith("| Gemma")]
    # Gemma − SmolLM2 as named (the order of the models would give SmolLM2 − Gemma), per attack and pooled.
    assert len(rows) == 3 and all(r.startswith("| Gemma 3 270M † − SmolLM2 135M |") for r in rows)
    assert "Exploratory" not in text  # two models: no other pair
