"""Chart legends show the colours the marks use (a grey legend of shapes cannot be matched to the
points), and a caption says "log scale" only when the axis is logarithmic."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from engine.report.charts import OKABE_ITO, estimate_chart, forest_chart, to_svg


def legend_fills(svg: str) -> list[str]:
    legend = svg[svg.index("role-legend"):]
    symbols = re.findall(r'role-legend-symbol"[^>]*>(.*?)</g>', legend, re.S)
    return [re.search(r'fill="([^"]+)"', s)[1] for s in symbols for _ in [0] if re.search(r'fill="([^"]+)"', s)]


def points(groups: list[str]) -> pd.DataFrame:
    rows = [{"params": x, "value": 0.1 * i + 0.01 * x, "low": 0.0, "high": 0.9, "label": f"{g} {x}", "n": 10,
             "persona": g} for i, g in enumerate(groups) for x in (0.1, 1.0)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("log_x", [True, False])
def test_an_estimate_charts_legend_is_in_the_points_colours(log_x):
    groups = ["default", "adversarial", "hawkish"]
    svg = to_svg(estimate_chart(points(groups), x="params", x_title="p", y_title="rate", color="persona",
                                log_x=log_x, percent=True))
    assert sorted(legend_fills(svg)) == sorted(OKABE_ITO[:len(groups)])


def test_a_forest_plots_legend_is_in_the_points_colours():
    data = pd.DataFrame([{"label": f"a{i} − b", "value": 0.1 * i, "low": -0.1, "high": 0.3, "n": "10", "p": "0.5",
                          "holm_p": "1", "pairing": pairing} for i, pairing in enumerate(["paired", "unpaired"])])
    svg = to_svg(forest_chart(data, x_title="difference", percent=True))
    assert sorted(legend_fills(svg)) == sorted(OKABE_ITO[:2])


def test_log_scale_is_said_only_for_a_log_axis(tmp_path, monkeypatch):
    from engine import load_study
    from engine.report.context import ReportContext
    from engine.report.sections.builtin import Chart
    from engine.store.db import StudyStore
    from engine.study import run_study

    args = ["design.factors.agent=[scripted:hawk,scripted:dove]", "~design.factors.persona", "design.controls=[]",
            "design.seeds=2", "scenario.max_turns=2", f"store.path={tmp_path / 'c.duckdb'}"]
    loaded, _, _ = run_study("model_size", args, show_progress=False)
    store = StudyStore(tmp_path / "c.duckdb", read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(tmp_path / "c.duckdb"))
        captions = {}
        for x, log_x in (("max_turns", None), ("max_turns", False)):
            options = Chart.Options(type="chart", metric="nuclear_rate", x=x, rows="all", log_x=log_x)
            rendered = Chart().render(ctx, options)
            captions[(x, log_x)] = rendered.figures[0].caption if rendered.figures else rendered.markdown
    finally:
        store.close(checkpoint=False)
    assert all("log scale" not in c for c in captions.values()), captions
    assert load_study("model_size").spec.name == "model_size"
