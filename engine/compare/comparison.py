"""Two finished spec versions side by side: read both databases (read-only), match their cells,
compute B - A per cell and metric, and list what differs between the specs. Everything is read
and checked before anything is written; the report is rendered from the result alone."""

from __future__ import annotations

from dataclasses import dataclass

from engine.analyze.metrics import plan_cells
from engine.compare.cells import Matching, match_cells, parse_mapping, planned_units
from engine.compare.differences import MetricDifferences, metric_differences, with_holm
from engine.compare.sides import COMMAND_LINE, Side, finished_side, locate, opened
from engine.compare.spec_diff import KeyChange, spec_diff
from engine.kernel.contracts import Metric
from engine.kernel.errors import SpecError


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    matching: Matching
    results: list[MetricDifferences]
    changes: list[KeyChange]
    family: int  # comparisons with a p-value: Holm's family

    @property
    def slug(self) -> str:
        """A folder name: 'model_size-7a1fc8bb-vs-model_size-5193fd3f'."""
        return f"{self.a.name}-{self.a.spec_hash[:8]}-vs-{self.b.name}-{self.b.spec_hash[:8]}"

    @property
    def unit(self) -> tuple[str, str]:
        return self.a.scenario.unit


def chosen_metrics(side: Side, names: list[str] | None) -> list[Metric]:
    """The metrics named (`--metric`), else the scenario's headline metrics, in that order."""
    known = {m.name: m for m in side.scenario.metrics()}
    wanted = list(dict.fromkeys(names or side.scenario.headline_metrics or list(known)))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SpecError(f"unknown metric '{unknown[0]}' for scenario {side.scenario.name} (known: "
                        f"{', '.join(known)})", file=COMMAND_LINE, key="--metric")
    return [known[n] for n in wanted]


def played_models(sides: tuple[Side, Side], cells: list[dict]) -> set[str]:
    return {m for side in sides for cell in cells for m in side.scenario.cell_models(cell)}


def compare_studies(a: str, b: str, *, overrides: list[str] | tuple[str, ...] = (),
                    a_overrides: list[str] | tuple[str, ...] = (), b_overrides: list[str] | tuple[str, ...] = (),
                    mapping: list[str] | tuple[str, ...] = (), metrics: list[str] | None = None,
                    seed: int = 0) -> Comparison:
    """A and B as the command line names them (see engine/compare/sides.py), `overrides` for both
    when they are studies. SpecError (exit 2) for nonsense: a bad argument, a map naming no level,
    two scenarios, the same version twice, no shared cell; FileNotFoundError, StoreBusy or
    ReportError (exit 1) for a database missing, being written or not finished."""
    levels = parse_mapping(list(mapping))
    located = (locate("A", a, [*overrides, *a_overrides]), locate("B", b, [*overrides, *b_overrides]))
    with opened([loc.db_path for loc in located]) as cons:
        con_a, con_b = (cons[loc.db_path.resolve()] for loc in located)
        side_a, side_b = finished_side(located[0], con_a), finished_side(located[1], con_b)
        if side_a.scenario.name != side_b.scenario.name:
            raise SpecError(f"A is a study of scenario {side_a.scenario.name}, B of {side_b.scenario.name}: only "
                            "studies of one scenario share cells and metrics", file=COMMAND_LINE, key="B")
        if (side_a.db_path, side_a.spec_hash) == (side_b.db_path, side_b.spec_hash):
            raise SpecError(f"A and B are the same spec version ({side_a.short} in {side_a.db_path}): give B other "
                            "overrides (--b KEY=VALUE), another study or another version (STUDY:HASH)",
                            file=COMMAND_LINE, key="B")
        cells_a, cells_b = plan_cells(con_a, side_a.spec_hash), plan_cells(con_b, side_b.spec_hash)
        if cells_a.empty or cells_b.empty:
            empty = "A" if cells_a.empty else "B"
            raise SpecError(f"{empty} plans no trials (an analysis-only study imports its data): it has no design "
                            "cells to compare", file=COMMAND_LINE, key=empty)
        matching = match_cells(cells_a, cells_b, planned_units(con_a, side_a.spec_hash),
                               planned_units(con_b, side_b.spec_hash), levels)
        chosen = chosen_metrics(side_b, metrics)
        results = [metric_differences((con_a, con_b), (side_a, side_b), matching, m, seed) for m in chosen]
    results, family = with_holm(results)
    everything = [*cells_a["cell"], *cells_b["cell"]]
    changes = spec_diff(side_a.stored, side_b.stored, played_models((side_a, side_b), everything))
    return Comparison(side_a, side_b, matching, results, changes, family)
