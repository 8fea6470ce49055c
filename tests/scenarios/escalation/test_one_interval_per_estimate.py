"""Issue 21, Rule 5: an estimate printed in two sections is computed once and read by both. The random
baseline's divergence (absolute and signed) appears in the controls table and in the caveats; before,
the caveats recomputed it with another bootstrap seed (4.060 [3.096, 4.950] in one, [3.110, 5.013] in
the other). Scripted sides only: no model is called."""

from __future__ import annotations

import re

import pytest

from engine.kernel.registry import get_scenario
from engine.report.catalog import validate_sections
from engine.report.context import ReportContext
from engine.store.db import StudyStore
from engine.study import run_study


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    db = tmp_path_factory.mktemp("one_interval") / "study.duckdb"
    overrides = ["design.factors.agent=[scripted:hawk]", "~design.factors.persona",
                 "design.controls=[{agent: [scripted:random]}]", "design.seeds=12", "scenario.max_turns=4",
                 f"store.path={db}", "report.sections=[{type: headline_table, rows: controls, metrics: "
                 "[divergence, divergence_signed]}, {type: caveats}]"]
    loaded, summary, _ = run_study("model_size", overrides, show_progress=False)
    assert summary.errors == 0 and summary.done == summary.planned == 24
    store = StudyStore(db, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, get_scenario("escalation"), str(db))
        out = [section.render(ctx, options).markdown.replace("\\", "")
               for section, options in validate_sections(loaded.spec.report.sections, ctx.scenario)]
        cells = list(ctx.cells.cell_id)
        pooled = ctx.estimate_over(cells, "divergence")
        assert ctx.estimate_over(list(reversed(cells)), "divergence") is pooled  # computed once per report
    finally:
        store.close(checkpoint=False)
    return out


def test_the_random_baselines_divergence_is_one_interval_in_the_table_and_the_caveats(rendered):
    table, caveats = rendered
    row = next(line for line in table.splitlines() if line.startswith("| scripted:random"))
    absolute, signed = [c.strip() for c in row.strip("|").split("|")][3:5]
    assert re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \(n=12\)", absolute), row  # an interval is printed
    assert "[" in signed
    assert (f"Random baseline (scripted:random, in its cell): divergence {absolute}, signed divergence {signed}, "
            "per game") in caveats
