"""The write-up's own scale: `python -m engine run provider_vs_size_import` on 21 models of 12
providers under six attacks (tests/data/traces_provider_panel.csv) renders its report, HTML and PDF,
exit 0, in reasonable time. The paired contrasts show a primary family (each model against the
first, 20 comparisons, drawn as a forest plot) and summarise the 190 other pairs as exploratory
(their own Holm correction, the rows with the smallest p, a histogram), instead of 1,470
Holm-corrected comparisons in one figure too large to draw."""

from __future__ import annotations

import csv
import importlib.util
import re
import time

from conftest import REPO

TRACES = REPO / "tests" / "data" / "traces_provider_panel.csv"


def test_the_fixture_is_what_its_seeded_generator_writes():
    generator = REPO / "tests" / "data" / "make_provider_panel_traces.py"
    spec = importlib.util.spec_from_file_location("make_panel", generator)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with TRACES.open(newline="") as f:
        written = list(csv.DictReader(f))
    assert written == [{k: str(v) for k, v in row.items()} for row in module.rows()]
    assert len({r["model"] for r in written}) == 21 and len({r["provider"] for r in written}) == 12


def test_a_21_model_panel_renders_its_report_with_primary_and_exploratory_contrasts(run_main, tmp_path):
    db, out = tmp_path / "panel.duckdb", tmp_path / "report"
    started = time.perf_counter()
    result = run_main("run", "provider_vs_size_import", f"scenario.traces_file.path={TRACES}", f"store.path={db}",
                     f"report.output_dir={out}", "--no-progress")
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert seconds < 300, f"took {seconds:.0f} s"
    assert "imported 3696 traces of 21 models" in result.stdout
    for name in ("index.html", "index.pdf"):
        assert (out / name).stat().st_size > 0
    qmd = " ".join(re.sub(r"\\(.)", r"\1", (out / "index.qmd").read_text()).split())
    assert "This chart is not drawn" not in qmd
    assert ("the primary family is each model against one reference, gemma-3-12b-it (the first model of the "
            "study): 20 comparisons of models instead of all 210 pairs") in qmd
    assert "Holm-corrected across these 140 rows only" in qmd  # 20 pairs x (6 attacks + pooled)
    assert "The other 190 pairs of models were not named before the data: they are exploratory" in qmd
    assert "Holm-corrected across these 190 rows, a family of its own" in qmd
    assert "The table lists the 20 rows with the smallest p-values" in qmd
    figures = {p.name for p in (out / "figures").glob("fig-paired-*.svg")}
    assert len(figures) == 2  # the primary forest plot and the exploratory histogram, both drawn
    assert "registered before any data on" in qmd and "before the traces were imported" in qmd
