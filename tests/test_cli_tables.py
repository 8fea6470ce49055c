"""The table `run` and `summary` print reads in a log: where its grid would be wider than the console
(160 columns when the output is not a terminal), each cell gets a block with one metric a line, so
no cell is folded over several lines; a narrow table keeps the grid."""

from __future__ import annotations

from engine.cli import main

SCRIPTED = ["design.factors.agent=[scripted:hawk,scripted:tit_for_tat]", "~design.factors.persona",
            "design.controls=[]", "design.seeds=2", "scenario.max_turns=2"]


def test_a_wide_table_prints_a_block_per_cell_in_a_log(tmp_path, capsys):
    args = [*SCRIPTED, f"store.path={tmp_path / 'w.duckdb'}"]
    assert main(["run", "model_size", *args, "--no-progress", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["summary", "model_size", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 160 for line in out), max(out, key=len)
    assert not any("┃" in line or "│" in line for line in out)  # no grid to fold
    hawk = out.index(next(line for line in out if line.startswith("scripted:hawk")))
    assert out[hawk + 1].split()[0] == "Nuclear" and "(n=2" in out[hawk + 1]


def test_a_narrow_table_keeps_its_grid():
    import io

    import pandas as pd
    from rich.console import Console

    from engine.cli import _print_table

    table = pd.DataFrame([{"Model": "a", "Nuclear": "50% [24%, 76%]", "Nuclear n": "10", "N": "10/10"},
                          {"Model": "b", "Nuclear": "—", "Nuclear n": "0", "N": "0/10"}])
    out = io.StringIO()
    _print_table(Console(file=out, width=160), "t", table)
    text = out.getvalue()
    assert "┃" in text and "50% [24%, 76%] (n=10)" in text
    assert "(n=0)" not in text  # nothing measured: no n


def test_a_database_without_this_specs_trials_is_said_so_not_an_empty_screen(tmp_path, capsys):
    args = [*SCRIPTED, f"store.path={tmp_path / 'w.duckdb'}"]
    assert main(["run", "model_size", *args, "--no-progress", "--no-report"]) == 0
    capsys.readouterr()
    # Other settings that enter the spec hash: the same file holds no trial of this spec.
    assert main(["summary", "model_size", *args, "scenario.max_turns=3"]) == 0
    out = capsys.readouterr().out
    assert "holds no finished trial of this spec" in out and "w.duckdb" in out
