"""Which design cells of A and B are the same cell: matched by their factor levels, after renaming
A's levels by the `--map` given (a model key that differs between the two, `gpt4o=gpt4o_2025_08`).
Within a matched cell, trials pair on the seed and the item."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from engine.analyze.paired import condition_label
from engine.kernel.errors import SpecError

COMMAND_LINE = "the command line"
SHOWN_CELLS = 6  # cells named in an error message


@dataclass(frozen=True)
class CellMatch:
    """One cell both specs have: B's levels (A's renamed by the map), A's own, and what pairs."""

    cell: dict[str, Any]    # B's factor levels
    a_cell: dict[str, Any]  # A's, before the map
    a_cell_id: str
    b_cell_id: str
    a_planned: int
    b_planned: int
    a_errors: int
    b_errors: int
    shared: int        # (seed, item) units planned in both
    same_trials: int   # of them, the very same trial (same id) in both: nothing that decides it changed

    @property
    def label(self) -> str:
        return condition_label(self.cell)

    @property
    def mapped(self) -> bool:
        return self.a_cell != self.cell


@dataclass(frozen=True)
class Matching:
    cells: list[CellMatch]          # in B's plan order
    only_a: list[dict[str, Any]]    # A's cells (its own levels) without a partner
    only_b: list[dict[str, Any]]
    mapping: dict[str, str]


def parse_mapping(entries: list[str]) -> dict[str, str]:
    """`--map OLD=NEW` (repeatable, or comma-separated): A's level OLD is B's level NEW."""
    out: dict[str, str] = {}
    for entry in (e for given in entries for e in given.split(",") if e.strip()):
        old, eq, new = (part.strip() for part in entry.partition("="))
        if not eq or not old or not new:
            raise SpecError(f"give a level of A and the level of B it is, as A_LEVEL=B_LEVEL (e.g. "
                            f"gpt4o=gpt4o_2025_08), not {entry!r}", file=COMMAND_LINE, key="--map")
        if old in out and out[old] != new:
            raise SpecError(f"A's level {old} is mapped twice ({out[old]}, {new})", file=COMMAND_LINE, key="--map")
        out[old] = new
    return out


def _key(cell: dict[str, Any]) -> str:
    return json.dumps({k: str(v) for k, v in cell.items()}, sort_keys=True)


def _levels(cells: list[dict[str, Any]]) -> set[str]:
    return {str(v) for cell in cells for v in cell.values()}


def planned_units(con: duckdb.DuckDBPyConnection, spec_hash: str) -> pd.DataFrame:
    """Every planned trial: cell_id, seed, item (a hash of the trial's item, '' without one), trial_id."""
    frame = con.execute(
        "SELECT p.cell_id, p.seed, coalesce(md5(CAST(json_extract(t.inputs, '$.item') AS VARCHAR)), '') AS item,"
        " p.trial_id FROM plan p LEFT JOIN trials t ON t.trial_id = p.trial_id WHERE p.spec_hash = $spec_hash",
        {"spec_hash": spec_hash}).df()
    return frame


def match_cells(a_cells: pd.DataFrame, b_cells: pd.DataFrame, a_units: pd.DataFrame, b_units: pd.DataFrame,
                mapping: dict[str, str]) -> Matching:
    """A's cells against B's (frames of `plan_cells`: cell_id, cell, planned, errors; units of
    `planned_units`). A SpecError (exit 2) for a map that names a level neither has, or when no cell
    is shared, naming the levels that differ."""
    a_list, b_list = list(a_cells["cell"]), list(b_cells["cell"])
    a_levels, b_levels = _levels(a_list), _levels(b_list)
    for old, new in mapping.items():
        if old not in a_levels:
            raise SpecError(f"A has no cell with the level {old} (its levels: {', '.join(sorted(a_levels))})",
                            file=COMMAND_LINE, key="--map")
        if new not in b_levels:
            raise SpecError(f"B has no cell with the level {new} (its levels: {', '.join(sorted(b_levels))})",
                            file=COMMAND_LINE, key="--map")
    renamed = [{k: mapping.get(str(v), v) for k, v in cell.items()} for cell in a_list]
    a_by_key: dict[str, int] = {}
    for i, cell in enumerate(renamed):
        first = a_by_key.setdefault(_key(cell), i)
        if first != i:
            raise SpecError(f"the map makes two of A's cells one ({condition_label(a_list[first])} and "
                            f"{condition_label(a_list[i])}): map a level only to one A does not have",
                            file=COMMAND_LINE, key="--map")
    matches, matched_a = [], set()
    for j, b_row in enumerate(b_cells.itertuples()):
        i = a_by_key.get(_key(b_row.cell))
        if i is None:
            continue
        matched_a.add(i)
        a_row = a_cells.iloc[i]
        ua = a_units[a_units["cell_id"] == a_row["cell_id"]]
        ub = b_units[b_units["cell_id"] == b_row.cell_id]
        pairs = ua.merge(ub, on=["seed", "item"], suffixes=("_a", "_b"))
        matches.append(CellMatch(b_row.cell, a_list[i], str(a_row["cell_id"]), str(b_row.cell_id),
                                 int(a_row["planned"]), int(b_row.planned), int(a_row["errors"]), int(b_row.errors),
                                 len(pairs), int((pairs["trial_id_a"] == pairs["trial_id_b"]).sum())))
    if not matches:
        raise SpecError(_no_shared_cells(renamed, b_list, mapping), file=COMMAND_LINE, key="B")
    only_a = [a_list[i] for i in range(len(a_list)) if i not in matched_a]
    matched_b = {m.b_cell_id for m in matches}
    only_b = [row.cell for row in b_cells.itertuples() if row.cell_id not in matched_b]
    return Matching(matches, only_a, only_b, mapping)


def _no_shared_cells(a: list[dict[str, Any]], b: list[dict[str, Any]], mapping: dict[str, str]) -> str:
    """Why no cell matched: the factors one spec has and the other lacks, the levels of each
    factor that only one has (a model key that differs: a hint for --map)."""
    shown = lambda cells: "; ".join(condition_label(c) for c in cells[:SHOWN_CELLS]) + (  # noqa: E731
        f"; and {len(cells) - SHOWN_CELLS} more" if len(cells) > SHOWN_CELLS else "")
    why = []
    fa, fb = {k for c in a for k in c}, {k for c in b for k in c}
    if fa != fb:
        why.append(f"factors only A has: {', '.join(sorted(fa - fb)) or 'none'}; only B has: "
                   f"{', '.join(sorted(fb - fa)) or 'none'}")
    hints = []
    for factor in sorted(fa & fb):
        la = {str(c[factor]) for c in a if factor in c}
        lb = {str(c[factor]) for c in b if factor in c}
        if la - lb and lb - la:
            why.append(f"{factor}: A has {', '.join(sorted(la - lb))}, B has {', '.join(sorted(lb - la))}")
            if len(la - lb) == len(lb - la) == 1:
                hints.append(f"--map {next(iter(la - lb))}={next(iter(lb - la))}")
    hint = (f" If they are versions of one model (or level), match them with {' '.join(hints)}." if hints else "")
    mapped = f" (after the map {', '.join(f'{k}={v}' for k, v in mapping.items())})" if mapping else ""
    return (f"A and B share no design cell{mapped}: {'; '.join(why) or 'their cells differ'}. A's cells: {shown(a)}. "
            f"B's cells: {shown(b)}.{hint}")
