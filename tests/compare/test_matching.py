"""The parts of a comparison that need no database: the --map, matching cells by their levels, and
the spec diff's classes (what a changed key can do)."""

import pandas as pd
import pytest

from engine.compare.cells import match_cells, parse_mapping
from engine.compare.spec_diff import ABSENT, spec_diff
from engine.kernel.errors import SpecError


def cells(*levels: dict) -> pd.DataFrame:
    return pd.DataFrame({"cell_id": [f"c{i}" for i in range(len(levels))], "cell": list(levels),
                         "planned": 2, "errors": 0})


def units(frame: pd.DataFrame, seeds=(0, 1), prefix: str = "t") -> pd.DataFrame:
    return pd.DataFrame([{"cell_id": c, "seed": s, "item": "", "trial_id": f"{prefix}-{c}-{s}"}
                         for c in frame["cell_id"] for s in seeds])


def test_cells_match_by_levels_after_the_map_in_b_order():
    a = cells({"agent": "gpt4o", "persona": "default"}, {"agent": "gpt4o", "persona": "hawk"},
              {"agent": "scripted:null"})
    b = cells({"agent": "scripted:null"}, {"agent": "gpt4o_2025", "persona": "default"},
              {"agent": "gpt4o_2025", "persona": "dove"})
    m = match_cells(a, b, units(a), units(b, seeds=(1, 2)), parse_mapping(["gpt4o=gpt4o_2025"]))
    assert [x.cell for x in m.cells] == [{"agent": "scripted:null"}, {"agent": "gpt4o_2025", "persona": "default"}]
    assert [x.mapped for x in m.cells] == [False, True] and m.cells[1].a_cell["agent"] == "gpt4o"
    assert [x.shared for x in m.cells] == [1, 1]  # seed 1 only
    assert m.only_a == [{"agent": "gpt4o", "persona": "hawk"}] and m.only_b == [{"agent": "gpt4o_2025", "persona": "dove"}]


def test_same_trial_ids_are_counted():
    a = cells({"agent": "x"})
    m = match_cells(a, a, units(a), units(a), {})
    assert m.cells[0].same_trials == m.cells[0].shared == 2
    assert match_cells(a, a, units(a), units(a, prefix="u"), {}).cells[0].same_trials == 0


@pytest.mark.parametrize("mapping, message", [
    (["gpt4o"], "as A_LEVEL=B_LEVEL"),
    (["a=b", "a=c"], "mapped twice"),
    (["nope=y"], "A has no cell with the level nope"),
    (["x=nope"], "B has no cell with the level nope"),
    (["x=y"], "makes two of A's cells one"),
])
def test_bad_maps_are_spec_errors(mapping, message):
    a, b = cells({"agent": "x"}, {"agent": "y"}), cells({"agent": "y"})
    with pytest.raises(SpecError, match=message):
        match_cells(a, b, units(a), units(b), parse_mapping(mapping))


def test_no_shared_cell_names_the_levels_and_the_map_that_would_match():
    a, b = cells({"agent": "gpt4o", "persona": "default"}), cells({"agent": "gpt4o_2025", "persona": "default"})
    with pytest.raises(SpecError) as err:
        match_cells(a, b, units(a), units(b), {})
    assert "agent: A has gpt4o, B has gpt4o_2025" in str(err.value) and "--map gpt4o=gpt4o_2025" in str(err.value)
    c = cells({"agent": "gpt4o", "temperature": 0.7})
    with pytest.raises(SpecError, match="factors only A has: persona; only B has: temperature"):
        match_cells(a, c, units(a), units(c), {})


def test_spec_diff_classes():
    a = {"name": "s", "scenario": {"fog": 0.3, "situation": "x" * 200}, "models": {"m": {"id": 1}, "spare": {"id": 1}},
         "design": {"seeds": 10, "target_halfwidth": None}, "report": {"sections": [1]}, "executor": {"budget": 1},
         "judges": {"j": {"rubric": "v1"}}, "store": {"path": "a.duckdb"}}
    b = {"name": "s", "scenario": {"fog": 0.5, "situation": "y" * 200}, "models": {"m": {"id": 2}, "spare": {"id": 2},
                                                                                     "new": {"id": 3}},
         "design": {"seeds": 10, "target_halfwidth": 0.1}, "report": {"sections": [2]}, "executor": {"budget": 2},
         "judges": {"j": {"rubric": "v2"}}, "store": {"path": "b.duckdb"}}
    changes = {c.key: c for c in spec_diff(a, b, played_models={"m", "new"})}
    kinds = {k: c.kind for k, c in changes.items()}
    assert kinds == {"scenario.fog": "trials", "scenario.situation": "trials", "models.m.id": "trials",
                     "models.spare.id": "identity", "models.new": "trials", "design.target_halfwidth": "cosmetic",
                     "report.sections": "cosmetic", "executor.budget": "cosmetic", "judges.j.rubric": "grading",
                     "store.path": "identity"}
    assert changes["models.new"].a == ABSENT and changes["models.new"].b == '{"id": 3}'
    assert changes["scenario.situation"].a.endswith("… (200 chars)") and len(changes["scenario.situation"].a) < 100
    assert spec_diff(a, a, set()) == []
