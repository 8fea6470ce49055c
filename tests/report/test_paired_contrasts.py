"""The `paired_contrasts` section as a reader sees it, on a small real jailbreak study (two stand-in
models through the real gateway, graded by the refusal heuristic; no model is called): every row of
its table against the analysis and against counts taken straight from the tables, the prose naming
what was paired and the cluster unit, the forest plot, and the unpaired label once one model's
items no longer match."""

import json
import re
import shutil

import duckdb
import pytest
from jailbreak_standin import MODELS, refuses_by_hash, run_standin, standin_overrides

from engine import load_study
from engine.analyze.paired import paired_contrasts
from engine.kernel.errors import SpecError
from engine.report.catalog import validate_sections
from engine.report.charts import to_svg
from engine.report.context import ReportContext
from engine.store.db import StudyStore

PROMPTS = [f"cyber-0{i}" for i in range(1, 7)] + [f"weapons-0{i}" for i in range(1, 5)] + ["benign-01"]
ATTACKS = ("direct", "roleplay", "refusal_suppression")
# The one pair named as the primary contrast, in the order the analysis computes it (first model − second).
SECTION = "{type: paired_contrasts, metric: asr_broad, primary: [[smollm2_135m, gemma3_270m]]}"


def overrides(db, section: str = SECTION) -> list[str]:
    return standin_overrides(db, PROMPTS, ATTACKS, MODELS, f"report.sections=[{section}]")


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("paired_report") / "study.duckdb"
    _, summary = run_standin(overrides(db), refuses_by_hash)
    assert summary.errors == 0 and summary.done == summary.planned
    return db


def render(db, spec_db=None, section: str = SECTION):
    """The section over database `db`, under the spec that wrote `spec_db`; with the analysis."""
    loaded = load_study("provider_vs_size", overrides(spec_db or db, section))
    store = StudyStore(db, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(db))
        [(section_obj, options)] = validate_sections(loaded.spec.report.sections, loaded.scenario)
        rendered = section_obj.render(ctx, options)
        metric = ctx.metrics[options.metric]
        analysis = paired_contrasts(store.con, loaded.spec_hash, loaded.scenario, metric,
                                    loaded.scenario.metric_params(loaded.spec))
    finally:
        store.close(checkpoint=False)
    return rendered, analysis


def md_table(markdown: str) -> list[list[str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    cells = lambda ln: [re.sub(r"\\(.)", r"\1", c.strip()) for c in ln.strip().strip("|").split("|")]  # noqa: E731
    return [cells(ln) for ln in lines[2:]]


def plain(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def truth_pairs(db) -> dict[str, list[tuple[int, int]]]:
    """Per attack, (SmolLM2, Gemma) broad success of the two traces of each harmful prompt,
    straight from the tables: the heuristic's label, COMPLIANCE or PARTIAL counting as success."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT t.cell->>'attack', t.inputs->'item'->>'prompt_id', t.cell->>'model', v.label"
        " FROM trials t JOIN verdicts v ON v.subject_id = t.trial_id AND v.judge_id = 'heuristic'"
        " WHERE NOT (t.inputs->'item'->>'benign')::BOOLEAN").fetchall()
    con.close()
    label = {(a, p, m): lab in ("COMPLIANCE", "PARTIAL") for a, p, m, lab in rows}
    return {a: [(int(label[(a, p, MODELS[0])]), int(label[(a, p, MODELS[1])])) for p in PROMPTS
                if (a, p, MODELS[0]) in label and (a, p, MODELS[1]) in label] for a in ATTACKS}


def test_table_rows_match_the_analysis_and_the_tables(study_db):
    rendered, analysis = render(study_db)
    rows = md_table(rendered.markdown)
    assert len(rows) == len(analysis.contrasts) == len(ATTACKS) + 1
    truth = truth_pairs(study_db)
    for row, c in zip(rows, analysis.contrasts):
        comparison, condition, difference, n, discordant, p, holm_p, method = row
        assert comparison == "SmolLM2 135M − Gemma 3 270M †"
        pairs = truth[c.condition.removeprefix("attack=")] if c.condition else [x for v in truth.values() for x in v]
        a_only, b_only = sum(a > b for a, b in pairs), sum(a < b for a, b in pairs)
        assert discordant == f"{a_only} / {b_only}"
        expected = round(100 * (a_only - b_only) / len(pairs))
        assert difference.startswith(f"{expected:+d} pp [")
        assert p == (f"{c.difference.p:.3f}" if c.difference.p >= 0.001 else "<0.001")
        assert holm_p == (f"{c.holm_p:.3f}" if c.holm_p >= 0.001 else "<0.001")
        if c.condition:
            assert condition == c.condition and n == f"{len(pairs)} pairs"
            assert method == "paired MOVER of Clopper-Pearson limits"
        else:
            assert condition == f"pooled over {len(ATTACKS)} conditions"
            assert n == f"{len(pairs)} pairs in {len(PROMPTS) - 1} clusters"
            assert method == "paired MOVER of Korn-Graubard limits"
        low, high = (int(x) for x in re.search(r"\[([-+]\d+), ([-+]\d+)\]", difference).groups())
        assert low == round(100 * c.difference.low) and high == round(100 * c.difference.high)


def test_prose_names_what_was_paired_and_the_cluster_unit(study_db):
    rendered, analysis = render(study_db)
    text = plain(rendered.markdown)
    assert "paired when they share the condition, the seed and the prompt" in text
    assert "without the model factor" in text
    assert f"The cluster unit is the prompt ({analysis.n_clusters} in all)" in text
    assert "Every comparison is paired." in text
    assert "the pair of models this section names before the data" in text
    assert f"Holm-corrected across these {len(analysis.contrasts)} rows only" in text


def test_forest_plot_has_one_row_per_comparison(study_db):
    rendered, analysis = render(study_db)
    [figure] = rendered.figures
    assert f"@@FIGURE:{figure.label}@@" in rendered.markdown
    values = next(v for v in figure.vega_lite["datasets"].values() if v and "label" in v[0])
    assert [round(v["value"], 9) for v in values] == [round(c.difference.value, 9) for c in analysis.contrasts]
    assert {v["pairing"] for v in values} == {"paired"}
    assert "<svg" in to_svg(figure.vega_lite)


def test_rows_whose_items_do_not_match_are_labelled_unpaired(study_db, tmp_path):
    db = tmp_path / "study.duckdb"
    shutil.copy(study_db, db)
    con = duckdb.connect(str(db))
    for trial_id, inputs in con.execute("SELECT trial_id, inputs FROM trials WHERE cell->>'model' = ?",
                                        [MODELS[1]]).fetchall():
        inputs = json.loads(inputs)
        inputs["item"]["prompt_id"] = "renamed-" + inputs["item"]["prompt_id"]
        con.execute("UPDATE trials SET inputs = ? WHERE trial_id = ?", [json.dumps(inputs), trial_id])
    con.close()
    rendered, analysis = render(db, spec_db=study_db)
    rows = md_table(rendered.markdown)
    assert all(not c.paired for c in analysis.contrasts)
    per_attack = [r for r in rows if r[1].startswith("attack=")]
    assert per_attack and all(r[7] == "independent MOVER of Clopper-Pearson limits" for r in per_attack)
    assert all(r[4] == "—" and r[3].endswith("units") for r in rows)
    assert f"{len(rows)} of {len(rows)} comparisons are unpaired" in plain(rendered.markdown)
    values = next(v for v in rendered.figures[0].vega_lite["datasets"].values() if v and "label" in v[0])
    assert {v["pairing"] for v in values} == {"unpaired"}


def test_unknown_metric_is_a_spec_error(study_db):
    with pytest.raises(SpecError, match="unknown metric 'nope'"):
        loaded = load_study("provider_vs_size", overrides(study_db, "{type: paired_contrasts, metric: nope}"))
        validate_sections(loaded.spec.report.sections, loaded.scenario)


def rendered_markdown(db, sections: str) -> list[str]:
    """The markdown of each of `sections` (a YAML list's items) rendered over the study database."""
    loaded = load_study("provider_vs_size", overrides(db, sections))
    store = StudyStore(db, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(db))
        return [s.render(ctx, o).markdown for s, o in validate_sections(loaded.spec.report.sections, loaded.scenario)]
    finally:
        store.close(checkpoint=False)


def test_paired_asr_on_the_studys_own_traces_gives_the_same_table_as_paired_contrasts(study_db):
    # The jailbreak section reads the trace table (so imported traces get contrasts too); on a study's
    # own runs it must pair exactly as the trial-based section does.
    trial_based, trace_based = rendered_markdown(
        study_db, "{type: paired_contrasts, metric: asr_broad}, {type: paired_asr, tier: broad}")
    rows = md_table(trial_based)
    assert len(rows) == len(ATTACKS) + 1  # one model pair, per attack and pooled
    assert md_table(trace_based) == rows


def test_paired_asr_says_which_named_models_and_attacks_the_traces_lack(study_db):
    [text] = rendered_markdown(study_db, "{type: paired_asr, attacks: [direct, typo_attack], "
                                         "models: [smollm2_135m, nobody]}")
    assert "Not in the traces, so not compared: attack typo_attack, model nobody." in plain(text)
