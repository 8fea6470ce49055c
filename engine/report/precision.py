"""The methods section's precision and power: what the design could resolve, at its planned N,
with the base rates and correlations the data show (the same figures `plan` prints), and, for a
target half-width, the seeds it needs and whether they fit the study's budget."""

from __future__ import annotations

from engine.analyze.design_power import (Budget, cells_display, comparisons_display, plan_precision,
                                         precision_preamble, target_lines)
from engine.analyze.plan_cost import estimate_plan
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
             escape(f"Standard errors are clustered on the randomised unit: {many} cluster on {pp.unit}; model "
                    f"comparisons pair {many} that share their condition, seed and item. "
                    + " ".join(precision_preamble(pp)))]
    parts.append(bullet_list(escape(b.statement()) for b in pp.bases))
    cells = cells_display(pp)
    if not cells.empty:
        shown = cells.head(MAX_CELL_ROWS)
        note = f" First {MAX_CELL_ROWS} of {len(cells)} cells." if len(cells) > MAX_CELL_ROWS else ""
        parts.append(table(list(shown.columns), shown.itertuples(index=False),
                           f"Expected (mean over studies) 95% half-width per design cell at the planned N.{note}",
                           "tbl-precision", ["l"] + ["r"] * (len(shown.columns) - 1)))
    comparisons = comparisons_display(pp)
    if not comparisons.empty:
        parts.append(table(list(comparisons.columns), comparisons.itertuples(index=False),
                           "Minimum detectable difference per comparison family (80% power, alpha 0.05, each "
                           "comparison before Holm's correction); a range spans the family's comparisons.",
                           "tbl-power", ["l", "l", "r", "l", "r", "l"]))
    if pp.target is not None:
        est = estimate_plan(plan)
        budget = ctx.loaded.spec.executor.budget
        lines = target_lines(pp.target, est.calls, est.prompt_tokens + est.completion_tokens, est.usd,
                             Budget(budget.max_usd, budget.max_tokens))
        parts.append(escape(lines[0][0].upper() + lines[0][1:] + ":"))
        parts.append(bullet_list(("**" + escape(line.strip()) + "**") if line.strip().startswith("OVER BUDGET")
                                 else escape(line.strip()) for line in lines[1:]))
    return "\n\n".join(parts)
