"""The `paired_contrasts` section: each pair of models compared on the same units, within each
condition and pooled over the conditions (engine/analyze/paired.py), as a table and a forest plot,
with prose that says what was paired and what the cluster unit is."""

from __future__ import annotations

import math

import pandas as pd

from engine.analyze.paired import Contrast, PairedContrasts, paired_contrasts
from engine.analyze.paired_stats import MIN_CLUSTERS
from engine.kernel.contracts import Figure, Rendered, Section, check_metric
from engine.kernel.hashing import content_hash
from engine.kernel.records import Strict
from engine.kernel.registry import register_section
from engine.report.charts import forest_chart
from engine.report.markdown import escape, table

CLUSTER_WHY = {
    "item": "the same {item} recurs under every condition and seed, so its pairs are not independent",
    "seed": "{many} with the same seed can share its random numbers under every condition (common random "
            "numbers), so a seed is resampled as a whole",
    "trial": "the scenario declares every pair independent",
}


def p_text(p: float) -> str:
    if math.isnan(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def signed(x: float, percent: bool) -> str:
    if percent:
        return f"{x * 100:+.0f}"
    digits = 1 if abs(x) >= 100 else 3 if abs(x) < 10 else 2
    return f"{x:+.{digits}f}"


def difference_text(c: Contrast, percent: bool) -> str:
    """'+12 pp [-3, +27]' (percentage points), '+0.250 [-0.100, +0.600]', or the estimate with the
    reason it has no interval."""
    d = c.difference
    if math.isnan(d.value):
        return f"— ({d.note})"
    unit = " pp" if percent else ""
    if math.isnan(d.low):
        return f"{signed(d.value, percent)}{unit} (no interval: {d.note})"
    return f"{signed(d.value, percent)}{unit} [{signed(d.low, percent)}, {signed(d.high, percent)}]"


def n_text(c: Contrast) -> str:
    if not c.paired:
        return f"{c.n_a} + {c.n_b} units"
    return f"{c.n_pairs} pairs" + (f" in {c.clusters} clusters" if c.clustered else "")


def method_text(c: Contrast) -> str:
    """The interval's method, which says whether the row is paired (its p inverts it, as the prose says)."""
    return c.difference.interval


def discordant_text(c: Contrast) -> str:
    return "—" if c.a_only is None else f"{c.a_only} / {c.b_only}"


def prose(result: PairedContrasts, ctx, names: dict[str, str]) -> list[str]:
    one, many = ctx.scenario.unit
    item, cluster = result.item_name, result.cluster
    factors = " and ".join(result.model_factors) or "model"
    rows = result.contrasts
    shared = f"the condition, the seed and the {item}" if result.has_items else "the condition and the seed"
    conditions = [c for c in result.conditions if c != "all"]
    out = [f"Each pair of models is compared as A − B on {result.metric.prose}"
           + (f" within each of {len(conditions)} conditions and pooled over them" if len(conditions) > 1
              else " in the one condition of this study" if not conditions else f" in {conditions[0]}") + ". "
           f"Two {many} are paired when they share {shared} (the condition is the design cell without the "
           f"{factors} factor). The cluster unit is the {cluster if cluster != 'item' else item} "
           f"({result.n_clusters} in all): "
           + CLUSTER_WHY[cluster].format(item=item, many=many) + "."]
    out.append("Proportions: the MOVER interval (Newcombe's hybrid, method 10) built from each model's own exact "
               "interval (Clopper-Pearson, or Korn-Graubard over clusters when a cluster holds several pairs) and "
               "the correlation of the two rates (Newcombe's phi, the correlation of the clusters' totals, or 0 "
               "unpaired). Means: a seeded studentized bootstrap over whole clusters of the paired differences (or "
               "of each model's clusters, unpaired); none over fewer than "
               f"{MIN_CLUSTERS} clusters, and the table says so where it applies. Each p-value inverts its row's own "
               "interval (the level at which the interval's end reaches 0), so p < 0.05 exactly when the 95% "
               "interval excludes 0.")
    unpaired = [c for c in rows if not c.paired]
    left_out = sum(c.n_a + c.n_b - 2 * c.n_pairs for c in rows if c.paired)
    tail = (f"{len(unpaired)} of {len(rows)} comparisons are unpaired: fewer than half the smaller arm's {many} "
            "had a partner, so all units are compared as independent samples." if unpaired
            else "Every comparison is paired.")
    if left_out:
        tail += f" Paired rows leave out {left_out} {many} without a partner (e.g. ended in an error)."
    out.append(tail + f" p-values are Holm-corrected across the {len(rows)} comparisons shown; discordant counts "
               "are the pairs where only A (only B) had the event, or, for a mean, where A (B) was higher.")
    return out


@register_section
class PairedContrastsSection(Section):
    """Model contrasts on the same units: difference, paired 95% interval, discordant pairs,
    the p that inverts that interval and Holm p, as a table and a forest plot."""

    type = "paired_contrasts"

    class Options(Strict):
        type: str
        metric: str
        title: str | None = None
        where: dict[str, str] = {}
        models: list[str] | None = None
        by_condition: bool = True
        pooled: bool = True
        caption: str | None = None

    def check(self, options, scenario, key):
        check_metric(options.metric, scenario, f"{key}.metric")

    def contrasts(self, ctx, options) -> PairedContrasts:
        """The comparisons to show: the study's own trials (a scenario's subclass may read other units)."""
        return paired_contrasts(ctx.con, ctx.spec_hash, ctx.scenario, ctx.metrics[options.metric],
                                ctx.scenario.metric_params(ctx.spec), ctx.seed, options.where or None,
                                options.models, options.by_condition, options.pooled)

    def render(self, ctx, options) -> Rendered:
        result = self.contrasts(ctx, options)
        metric = result.metric
        title = options.title or f"Paired model contrasts: {metric.label}"
        heading = f"## {escape(title)}"
        if not result.contrasts:
            return Rendered(f"{heading}\n\n*Fewer than two models with {escape(ctx.scenario.unit[1])} to compare "
                            f"on {escape(metric.label)}\\.*")
        names = {k: ctx.spec.models[k].label if k in ctx.spec.models else k for k in
                 {part for c in result.contrasts for m in (c.model_a, c.model_b) for part in m.split(" / ")}}
        show = lambda model: " / ".join(names[p] for p in model.split(" / "))  # noqa: E731
        rows, points = [], []
        for c in result.contrasts:
            comparison = f"{show(c.model_a)} − {show(c.model_b)}"
            condition = c.condition or f"pooled over {len(result.conditions)} conditions"
            rows.append([comparison, condition, difference_text(c, metric.percent), n_text(c), discordant_text(c),
                         p_text(c.difference.p), p_text(c.holm_p), method_text(c)])
            points.append({"label": f"{comparison} · {condition}", "value": c.difference.value,
                           "low": c.difference.low, "high": c.difference.high, "n": n_text(c),
                           "pairing": "paired" if c.paired else "unpaired", "p": p_text(c.difference.p),
                           "holm_p": p_text(c.holm_p)})
        key = content_hash([self.type, options.model_dump(exclude={"title", "caption"})], 6)
        label = f"paired-{metric.name}-{key}".replace("_", "-")
        unit = "percentage points" if metric.percent else "units of the metric"
        caption = options.caption or f"{metric.label}: model A minus model B"
        caption += (f" ({unit}) with 95% intervals; n is the pairs (paired rows) or each model's {ctx.scenario.unit[1]}"
                    " (unpaired rows) behind each difference; p is two-sided, Holm p corrected across this table.")
        md = [heading, " ".join(escape(s) for s in prose(result, ctx, names)),
              table(["Comparison (A − B)", "Condition", "Difference [95% CI]", "n", "A only / B only", "p", "Holm p",
                     "Pairing and method"], rows, caption, f"tbl-{label}", ["l", "l", "r", "r", "r", "r", "r", "l"])]
        frame = pd.DataFrame(points)
        plotted = frame[frame["value"].notna()]
        figures = []
        if not plotted.empty:
            spec = forest_chart(plotted, x_title=f"{metric.label}, A − B", percent=metric.percent)
            fig_caption = (f"{metric.label}: differences between models (A − B) with 95% intervals; points without "
                           "a bar have no interval (the table says why). Each row's n is in the table and tooltip.")
            figures.append(Figure(f"fig-{label}", fig_caption, spec))
            md.append(f"@@FIGURE:fig-{label}@@")
        return Rendered("\n\n".join(md), figures)
