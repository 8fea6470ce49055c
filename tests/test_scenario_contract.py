"""The contract every registered scenario keeps, checked on real (tiny) runs of shipped studies:
plan -> run -> store -> metrics -> report sections.

Each registered scenario's runs are the CASES of its tests/scenarios/<name>/contract_cases.py, so they
go with the scenario's tests; a scenario registered without one fails
`test_every_registered_scenario_has_a_case` (and its own contract test). Cases that run a real local
model (llama.cpp through the `local/` provider) are marked slow.
"""

from __future__ import annotations

import html
import math
import re

import duckdb
import pytest
from shipped import REPO, Case, contract_cases

import engine
from engine.analyze.summary import format_estimate, summary_frame
from engine.kernel.registry import get_scenario, scenario_names
from engine.report.catalog import validate_sections
from engine.report.context import ReportContext
from engine.store.db import StudyStore

CASES: dict[str, list[Case]] = {name: contract_cases(name) for name in scenario_names()}


def contract_params() -> list:
    """One test per registered scenario and case; a scenario without a case gets one that fails."""
    params = []
    for scenario in scenario_names():
        for case in CASES.get(scenario) or [None]:
            marks = [pytest.mark.slow] if case is not None and case.slow else []
            params.append(pytest.param(scenario, case, marks=marks,
                                       id=f"{scenario}/{case.name if case else 'NO-CASE'}"))
    return params


def test_every_registered_scenario_has_a_case():
    # ... and every scenario's cases file is a registered scenario's (none left behind by a deletion).
    assert {p.parent.name for p in (REPO / "tests" / "scenarios").glob("*/contract_cases.py")} <= set(CASES)
    for scenario, cases in CASES.items():
        assert cases, f"scenario {scenario} has no tests/scenarios/{scenario}/contract_cases.py with CASES"
        for case in cases:
            loaded = engine.load_study(case.study, list(case.overrides))
            assert loaded.scenario.name == scenario, (case, loaded.scenario.name)


def test_every_scenario_declares_consistent_metrics():
    for scenario_name in scenario_names():
        scenario = get_scenario(scenario_name)
        names = [m.name for m in scenario.metrics()]
        assert names and len(set(names)) == len(names), scenario_name
        assert set(scenario.headline_metrics) <= set(names), scenario_name
        for metric in scenario.metrics():
            assert metric.kind in ("proportion", "mean") and metric.label and metric.description


# ---------------------------------------------------------------- reading the HTML

def _plain(text: str) -> str:
    return " ".join(html.unescape(text).replace("\u2019", "'").replace("\u2018", "'")
                    .replace("\u201c", '"').replace("\u201d", '"').split())


def html_headings(page: str) -> list[str]:
    body = re.sub(r"<script\b.*?</script>", "", page, flags=re.S | re.I)
    found = re.findall(r"<h([1-6])(\s[^>]*)?>(.*?)</h\1>", body, flags=re.S | re.I)
    return [_plain(re.sub(r"<[^>]+>", "", inner)) for _, attrs, inner in found if 'class="title"' not in (attrs or "")]


def html_text(page: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S | re.I)
    return _plain(re.sub(r"<[^>]+>", " ", body))


def markdown_text(line: str) -> str:
    """What pandoc shows of one line of the sections' Markdown (every punctuation mark is escaped)."""
    line = re.sub(r"^#+\s*", "", line.strip())
    line = re.sub(r"\\(.)", r"\1", line.replace("*", ""))
    return _plain(line)


# ---------------------------------------------------------------- the contract

def check_estimate(row, cell_planned: int, where: str) -> None:
    n, value, low, high = int(row.n), row.value, row.low, row.high
    assert 0 <= n <= cell_planned, where  # the unit of every metric is a trial
    if n == 0:
        assert value is None or math.isnan(value), where  # an explicit N=0: no number shown
        return
    assert math.isfinite(value), where
    if not (math.isnan(low) or math.isnan(high)):
        assert low - 1e-9 <= value <= high + 1e-9, where


@pytest.mark.parametrize(("scenario_name", "case"), contract_params())
def test_scenario_contract(scenario_name, case, tmp_path):
    assert case is not None, f"scenario {scenario_name} has no CASES in tests/scenarios/{scenario_name}/contract_cases.py"
    db, out = tmp_path / "study.duckdb", tmp_path / "report"
    overrides = [*case.overrides, f"store.path={db}", f"report.output_dir={out}"]

    # Plan: unique ids, one trial per cell, item and seed.
    loaded = engine.load_study(case.study, overrides)
    scenario = loaded.scenario
    assert scenario.name == scenario_name
    plan = engine.compile_plan(loaded)
    ids = [t.trial_id for t in plan.trials]
    assert len(set(ids)) == len(ids)
    seeds = loaded.spec.design.seed_list
    items = sum(len(scenario.items(loaded.spec, loaded.scenario_params, c)) for c in plan.cells)
    assert len(plan.trials) == items * len(seeds)
    assert (len(plan.trials) == 0) == case.imports

    # Run: every planned trial ends done or error.
    _, summary, table = engine.run_study(case.study, overrides, show_progress=False)
    assert summary.planned == len(plan.trials) and summary.done + summary.errors == len(plan.trials)
    con = duckdb.connect(str(db), read_only=True)
    try:
        planned = con.execute("SELECT count(*) FROM plan WHERE spec_hash = ?", [loaded.spec_hash]).fetchone()[0]
        ended = dict(con.execute("SELECT t.status, count(*) FROM plan p JOIN trials t USING (trial_id)"
                                 " WHERE p.spec_hash = ? GROUP BY 1", [loaded.spec_hash]).fetchall())
    finally:
        con.close()
    assert planned == len(plan.trials)
    assert set(ended) <= {"done", "error"} and sum(ended.values()) == planned
    assert ended.get("done", 0) == summary.done
    if case.imports:
        assert summary.imported and "imported" in summary.imported

    # Metrics: every metric of the scenario, for every cell, is a finite estimate or an explicit N=0;
    # the summary table shows the same numbers for the headline metrics.
    store = StudyStore(db, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, scenario, str(db))
        cells = ctx.cells
        estimates = ctx.estimates
        # An analysis-only study records no plan, so it has no cells to estimate in.
        assert len(cells) == (0 if case.imports else len(plan.cells))
        assert set(ctx.metrics) == {m.name for m in scenario.metrics()}
        assert len(estimates) == len(cells) * len(ctx.metrics)
        for c in cells.itertuples():
            for name in ctx.metrics:
                rows = estimates[(estimates.cell_id == c.cell_id) & (estimates.metric == name)]
                assert len(rows) == 1, (c.cell_id, name)
                check_estimate(rows.iloc[0], c.planned, f"{name} in {c.cell}")
        if summary.done:
            assert (estimates.n > 0).any()  # the checks above are not all N=0
        frame = summary_frame(store.con, loaded.spec_hash, loaded.spec, scenario)
        assert len(frame) == len(cells)
        for i, c in enumerate(cells.itertuples()):
            assert frame["N"].iloc[i] == f"{c.done}/{c.planned}"
            for name in scenario.headline_metrics:
                metric, est = ctx.metrics[name], ctx.estimate(c.cell_id, name)
                shown = frame[metric.label].iloc[i]
                assert shown == format_estimate(est.value, est.low, est.high, metric.percent), (name, c.cell)
                assert (shown == "—") == (est.n == 0), (name, c.cell)

        # Every listed section renders on its own ...
        sections = validate_sections(loaded.spec.report.sections, scenario)
        assert len(sections) == len(loaded.spec.report.sections)
        rendered = [(section.type, section.render(ctx, options)) for section, options in sections]
    finally:
        store.close(checkpoint=False)
    expected_headings = []
    for kind, r in rendered:
        assert r.markdown.strip(), kind
        expected_headings += [markdown_text(line) for line in r.markdown.splitlines() if line.startswith("#")]

    # ... and in the report, in order.
    report = engine.build_report(case.study, overrides, formats=("html",))
    assert report.outputs.html is not None and report.outputs.html.is_file()
    page = report.outputs.html.read_text()
    assert "Traceback" not in page
    assert html_headings(page) == expected_headings
    text = html_text(page)
    for kind, r in rendered:
        for figure in r.figures:
            assert f'id="{figure.label}"' in page, (kind, figure.label)
        if not any(line.startswith("#") for line in r.markdown.splitlines()) and not r.figures:
            first = next(line for line in r.markdown.splitlines() if line.strip())
            assert markdown_text(first) in text, (kind, first)
