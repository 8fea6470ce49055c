"""The comparison report's sections: Section plug-ins (the report writer renders them like a study's),
rendered from a computed Comparison; no database is open. They are not registered, so a study's
`report.sections` cannot list them: they need two studies."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from engine.analyze.paired_stats import methods_prose
from engine.analyze.stats import Estimate
from engine.analyze.summary import format_estimate
from engine.compare.cells import CellMatch
from engine.compare.comparison import Comparison
from engine.compare.differences import MetricDifferences, Row
from engine.compare.sides import Side
from engine.compare.spec_diff import KIND_TITLES
from engine.kernel.contracts import Figure, NoOptions, Rendered, Section
from engine.kernel.records import Strict
from engine.report.sections.builtin import cell_label
from engine.report.charts import forest_chart
from engine.report.markdown import bullet_list, code_block, escape, table
from engine.report.sections.paired_contrasts import difference_text, discordant_text, method_text, n_text, p_text


@dataclass
class CompareContext:
    """What the comparison sections read: the comparison, computed before rendering."""

    comparison: Comparison

    @property
    def unit(self) -> tuple[str, str]:
        return self.comparison.unit

    def cell_name(self, side: Side, cell: dict) -> str:
        return cell_label(side.scenario.describe_cell(cell, side.spec))

    def row_name(self, row: Row) -> str:
        """A matched cell by B's description (A's own in brackets when the map renamed it), or pooled."""
        if row.cell is None:
            return f"pooled over {len(self.comparison.matching.cells)} cells"
        return self.match_name(row.cell)

    def match_name(self, match: CellMatch) -> str:
        c = self.comparison
        name = self.cell_name(c.b, match.cell)
        return f"{name} (A: {self.cell_name(c.a, match.a_cell)})" if match.mapped else name


def estimate_text(est: Estimate, percent: bool, without_interval: bool = False) -> str:
    """A side's estimate with its 95% interval and n; `without_interval` for a pooled mean (the pooled
    difference carries the interval) or the terminal's narrow table."""
    if est.n == 0:
        return "— (n=0)"
    if without_interval:
        return f"{format_estimate(est.value, math.nan, math.nan, percent)} (n={est.n})"
    return format_estimate(est.value, est.low, est.high, percent, n=est.n)


def change_text(row: Row, percent: bool) -> str:
    if row.contrast is not None:
        return difference_text(row.contrast, percent)
    missing = [side for side, est in (("A", row.a), ("B", row.b)) if est.n == 0]
    if len(missing) == 2:
        return "— (no units on either side)"
    return f"— (no units in {missing[0]})" if missing else "—"


def metric_table_rows(ctx: CompareContext, result: MetricDifferences) -> list[list[str]]:
    percent = result.metric.percent
    out = []
    for row in result.rows:
        c = row.contrast
        pooled = row.cell is None
        out.append([ctx.row_name(row), estimate_text(row.a, percent, pooled), estimate_text(row.b, percent, pooled),
                    change_text(row, percent), n_text(c) if c else "—", discordant_text(c) if c else "—",
                    p_text(c.difference.p) if c else "—", p_text(c.holm_p) if c else "—",
                    method_text(c) if c else "—"])
    return out


def short_sha(sha: str | None) -> str:
    """A recorded commit as its first 12 hex digits (and '-dirty' when it had uncommitted changes)."""
    if not sha:
        return "—"
    return sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


ALPHA = 0.05


def significant(comparison: Comparison) -> list[tuple[MetricDifferences, Row]]:
    """The comparisons whose Holm-adjusted p is below ALPHA, in report order."""
    return [(r, row) for r in comparison.results for row in r.rows
            if row.contrast is not None and row.contrast.holm_p < ALPHA]


def summary_sentence(comparison: Comparison) -> str:
    found = significant(comparison)
    if not found:
        return (f"No difference between A and B is significant at {ALPHA:.0%} after Holm's correction across the "
                f"{comparison.family} comparisons; the intervals below say how large a difference the data rule out.")
    return (f"{len(found)} of the {comparison.family} comparisons differ at {ALPHA:.0%} after Holm's correction "
            "across all of them")


class CompareSummary(Section):
    """The differences that hold after Holm's correction: what a regression check reads first."""

    type = "compare_summary"
    Options = NoOptions

    def render(self, ctx: CompareContext, options) -> Rendered:  # type: ignore[override]
        c = ctx.comparison
        items = [escape(f"{r.metric.label} {'' if row.cell is None else 'in '}{ctx.row_name(row)}: "
                        f"{change_text(row, r.metric.percent)} "
                        f"(Holm p {p_text(row.contrast.holm_p)}, {n_text(row.contrast)})")
                 for r, row in significant(c)]
        parts = ["## Summary", escape(summary_sentence(c) + (" (B − A, 95% interval):" if items else ""))]
        if items:
            parts.append(bullet_list(items))
        return Rendered("\n\n".join(parts))


class CompareOverview(Section):
    """What A and B are, that both are finished, and which cells they share."""

    type = "compare_overview"
    Options = NoOptions

    def render(self, ctx: CompareContext, options) -> Rendered:  # type: ignore[override]
        c = ctx.comparison
        one, many = ctx.unit
        m = c.matching
        shared = sum(x.shared for x in m.cells)
        same = sum(x.same_trials for x in m.cells)
        mapped = (" after renaming A's levels " + ", ".join(f"{k} as {v}" for k, v in m.mapping.items())
                  if m.mapping else "")
        text = [f"A is {c.a.spec.title} (study {c.a.name}, spec {c.a.spec_hash}); B is {c.b.spec.title} (study "
                f"{c.b.name}, spec {c.b.spec_hash}). Both are finished: every planned {one} was played. They share "
                f"{len(m.cells)} design cells, matched by their factor levels{mapped}. Within a cell, a {one} of A and "
                f"one of B are a pair when they share the seed and the item (when the {many} have items): {shared} "
                f"pairs in all."]
        if same:
            text.append(f"{same} of the {shared} pairs are the very same {one} in both (the same trial id: nothing "
                        f"that decides the {one} changed), so their difference is zero by construction.")
        sides = table(["", "A", "B"], [
            ["Study", c.a.name, c.b.name], ["Spec hash", c.a.spec_hash, c.b.spec_hash],
            ["Database", str(c.a.db_path), str(c.b.db_path)],
            ["Run first on", str(c.a.record["created_at"])[:16], str(c.b.record["created_at"])[:16]],
            ["Engine", str(c.a.record["engine_version"]), str(c.b.record["engine_version"])],
            ["Git commit", short_sha(c.a.record["git_sha"]), short_sha(c.b.record["git_sha"])]],
            "The two spec versions compared, as recorded in their databases (their overrides are in the commands "
            "below).", "tbl-compare-sides", ["l", "l", "l"])
        rows = [[ctx.match_name(x), f"{x.a_planned} ({x.a_errors})", f"{x.b_planned} ({x.b_errors})", x.shared,
                 x.same_trials] for x in m.cells]
        cells = table(["Cell (B's levels)", f"A: {many} (errors)", f"B: {many} (errors)", "Pairs", "Same trials"], rows,
                      f"Matched cells: the {many} each side planned (of which ended in an error, excluded from every "
                      f"metric but the error rate), the pairs (same seed and item) and how many of them are the very "
                      f"same {one} in both.", "tbl-compare-cells")
        parts = ["## What is compared", escape(" ".join(text)), sides, cells]
        unmatched = [f"only in A: {escape(ctx.cell_name(c.a, cell))}" for cell in m.only_a] + \
                    [f"only in B: {escape(ctx.cell_name(c.b, cell))}" for cell in m.only_b]
        if unmatched:
            parts += [escape(f"{len(unmatched)} cells have no partner and are not compared:"), bullet_list(unmatched)]
        parts += ["Each side's run, as recorded (rerunning it reads the finished trials back):",
                  code_block(f"# A\n{c.a.record['command']}\n# B\n{c.b.record['command']}", "bash")]
        return Rendered("\n\n".join(parts))


class CompareSpecDiff(Section):
    """The keys whose values differ between the two resolved specs (secrets masked), by what they do."""

    type = "compare_spec_diff"
    Options = NoOptions

    def render(self, ctx: CompareContext, options) -> Rendered:  # type: ignore[override]
        changes = ctx.comparison.changes
        shown = [ch for ch in changes if ch.kind != "cosmetic"]
        cosmetic = len(changes) - len(shown)
        parts = ["## What differs between the specs"]
        if not shown:
            parts.append(escape("The two resolved specs are the same in every key that decides a result or names the "
                                "study."))
        else:
            parts.append(escape(f"{len(shown)} keys of the resolved specs differ (values as recorded, secrets masked; "
                                "a list is one value; '(absent)': the spec has no such key)."))
        for kind, title in KIND_TITLES.items():
            rows = [[ch.key, ch.a, ch.b] for ch in shown if ch.kind == kind]
            if rows:
                parts.append(table(["Key", "A", "B"], rows, f"{title}.", f"tbl-compare-keys-{kind}",
                                   ["l", "l", "l"], [2, 3, 3]))
        if not any(ch.kind in ("trials", "grading") for ch in shown):
            parts.append(escape("No key that decides the trials or the grading differs: any difference below comes "
                                "from the data alone (e.g. other seeds), or is none."))
        if cosmetic:
            parts.append(escape(f"{cosmetic} keys of the report and executor blocks and of the planning assumptions "
                                "differ too: they change how results are obtained or shown, never a result, and are "
                                "not listed."))
        return Rendered("\n\n".join(parts))


class CompareMetric(Section):
    """One metric: A's and B's estimates per matched cell, and B − A with its interval, n and Holm p."""

    type = "compare_metric"

    class Options(Strict):
        type: str
        metric: str

    def render(self, ctx: CompareContext, options) -> Rendered:  # type: ignore[override]
        result = next(r for r in ctx.comparison.results if r.metric.name == options.metric)
        metric, many = result.metric, ctx.unit[1]
        name = metric.name.replace("_", "-")
        unit = "percentage points" if metric.percent else "units of the metric"
        caption = (f"{metric.label}: A and B per matched cell (95% intervals, n = {many} behind each) and the "
                   f"difference B − A ({unit}) with its 95% interval; n is the pairs (paired rows) or each side's "
                   f"{many} (unpaired rows); 'B only / A only' counts the pairs where only B (only A) had the event, "
                   f"or, for a mean, was higher; Holm p is corrected across all {ctx.comparison.family} comparisons "
                   "of this report.")
        md = [f"## {escape(metric.label)}: B − A", escape(f"{metric.prose}: {metric.description}"),
              table(["Cell", "A", "B", "B − A [95% CI]", "n", "B only / A only", "p", "Holm p", "Pairing and method"],
                    metric_table_rows(ctx, result), caption, f"tbl-compare-{name}",
                    ["l", "r", "r", "r", "r", "r", "r", "r", "l"], [3, 2, 2, 2, 1, 1, 1, 1, 2])]
        points = [{"label": ctx.row_name(row), "value": row.contrast.difference.value,
                   "low": row.contrast.difference.low, "high": row.contrast.difference.high, "n": n_text(row.contrast),
                   "pairing": "paired" if row.contrast.paired else "unpaired", "p": p_text(row.contrast.difference.p),
                   "holm_p": p_text(row.contrast.holm_p)}
                  for row in result.rows if row.contrast is not None and not math.isnan(row.contrast.difference.value)]
        figures = []
        if points:
            spec = forest_chart(pd.DataFrame(points), x_title=f"{metric.label}, B − A", percent=metric.percent)
            figures.append(Figure(f"fig-compare-{name}", f"{metric.label}: B − A per matched cell with 95% intervals "
                                  "(a point without a bar has no interval: the table says why).", spec))
            md.append(f"@@FIGURE:fig-compare-{name}@@")
        return Rendered("\n\n".join(md), figures)


class CompareMethods(Section):
    """How the pairs, intervals and tests were made, and what is unpaired."""

    type = "compare_methods"
    Options = NoOptions

    def render(self, ctx: CompareContext, options) -> Rendered:  # type: ignore[override]
        c = ctx.comparison
        one, many = ctx.unit
        contrasts = [row.contrast for r in c.results for row in r.rows if row.contrast is not None]
        unpaired = [x for x in contrasts if not x.paired]
        clusters = {r.cluster for r in c.results}
        cluster = "the item" if clusters == {"item"} else "the seed" if clusters == {"seed"} else "the trial" \
            if clusters == {"trial"} else " or ".join(sorted(clusters))
        text = [
            f"Each difference is B minus A. A {one} of A and one of B are a pair when they are in the same matched "
            f"cell with the same seed and the same item (when the {many} have items); a comparison is paired when at "
            "least half the smaller side's units have a partner (units without one are left out), and unpaired "
            "otherwise (every unit of each side, compared as independent samples).",
            methods_prose() + f" The cluster is {cluster} (the scenario's randomised unit).",
            f"{len(unpaired)} of {len(contrasts)} comparisons here are unpaired." if unpaired else f"All {len(contrasts)} comparisons here are paired.",
            f"p-values are two-sided; Holm's correction runs across all {c.family} comparisons of the report (every "
            "metric, every cell and the pooled rows), the family a reader scans for a change. Each side's own "
            "estimate is as in its study report (exact for rates, a seeded studentized bootstrap for means); errored "
            f"{many} are left out of every metric but the error rate.",
        ]
        return Rendered("## How the differences are computed\n\n" + escape(" ".join(text)))


def sections(comparison: Comparison) -> list[tuple[Section, Strict]]:
    """The report's sections, in order, with their options."""
    out: list[tuple[Section, Strict]] = [(CompareSummary(), NoOptions(type=CompareSummary.type)),
                                          (CompareOverview(), NoOptions(type=CompareOverview.type)),
                                          (CompareSpecDiff(), NoOptions(type=CompareSpecDiff.type))]
    out += [(CompareMetric(), CompareMetric.Options(type=CompareMetric.type, metric=r.metric.name))
            for r in comparison.results]
    out.append((CompareMethods(), NoOptions(type=CompareMethods.type)))
    return out
