"""The methods section's precision and power: what the design could resolve, at its planned N,
with the base rates and correlations the data show (the same figures `plan` prints)."""

from __future__ import annotations

from engine.analyze.design_power import cells_display, comparisons_display, plan_precision
from engine.plan.compile import compile_plan
from engine.report.markdown import bullet_list, escape, table

# More cells than this are summarised: the table would drown the methods.
MAX_CELL_ROWS = 40


def precision_markdown(ctx) -> str:
    plan = compile_plan(ctx.loaded)
    if not plan.trials:  # analysis-only studies plan no trials
        return ""
    pp = plan_precision(plan, ctx.con)
    one, many = ctx.scenario.unit
    parts = ["### Precision and power",
             escape(f"Expected 95% interval half-width of each headline estimate at the planned N per design cell, "
                    f"and the minimum detectable difference (MDD) of each comparison at 80% power and alpha "
                    f"0.05 (two-sided normal approximation). Standard errors are clustered on the randomised unit: "
                    f"{many} cluster on {pp.unit}, with the design effect 1 + (m - 1) ICC; model comparisons "
                    f"pair {many} that share their condition, seed and item.")]
    parts.append(bullet_list(escape(b.statement()) for b in pp.bases))
    cells = cells_display(pp)
    if not cells.empty:
        shown = cells.head(MAX_CELL_ROWS)
        note = f" First {MAX_CELL_ROWS} of {len(cells)} cells." if len(cells) > MAX_CELL_ROWS else ""
        parts.append(table(list(shown.columns), shown.itertuples(index=False),
                           f"Expected 95% half-width per design cell at the planned N.{note}", "tbl-precision",
                           ["l"] + ["r"] * (len(shown.columns) - 1)))
    comparisons = comparisons_display(pp)
    if not comparisons.empty:
        parts.append(table(list(comparisons.columns), comparisons.itertuples(index=False),
                           "Minimum detectable difference per comparison family (80% power, alpha 0.05); a range "
                           "spans the family's comparisons.", "tbl-power",
                           ["l", "r", "r", "l"] + ["r"] * (len(comparisons.columns) - 4)))
    return "\n\n".join(parts)
