"""The `paired_contrasts` section: models compared on the same units, within each condition and pooled
over the conditions (engine/analyze/paired.py), with prose that says what was paired and what the
cluster unit is. The primary contrasts (named in the spec, else each model against a reference;
engine/analyze/contrast_families.py) get a table and a forest plot, Holm-corrected among themselves;
every other pair is exploratory, corrected apart, and summarised: the rows with the smallest p-values
and a histogram of all of them, so a panel of any size gives a report that draws."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from engine.analyze.contrast_families import ContrastFamilies, contrast_families
from engine.analyze.paired import Cluster, Contrast, PairedContrasts, _item_name, paired_units
from engine.analyze.paired_stats import methods_prose
from engine.kernel.contracts import Figure, Metric, Rendered, Section, check_metric
from engine.kernel.errors import SpecError
from engine.kernel.hashing import content_hash
from engine.kernel.records import Strict
from engine.kernel.registry import register_section
from engine.report.charts import forest_chart, histogram_chart
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


def prose(result: PairedContrasts, ctx) -> list[str]:
    """How the units were paired and clustered and which methods the rows use (both families)."""
    one, many = ctx.scenario.unit
    item, cluster = result.item_name, result.cluster
    factors = " and ".join(result.model_factors) or "model"
    rows = result.contrasts
    shared = f"the condition, the seed and the {item}" if result.has_items else "the condition and the seed"
    conditions = [c for c in result.conditions if c != "all"]
    out = [f"Two models are compared as A − B on {result.metric.prose}"
           + (f" within each of {len(conditions)} conditions and pooled over them" if len(conditions) > 1
              else " in the one condition of this study" if not conditions else f" in {conditions[0]}") + ". "
           f"Two {many} are paired when they share {shared} (the condition is the design cell without the "
           f"{factors} factor). The cluster unit is the {cluster if cluster != 'item' else item} "
           f"({result.n_clusters} in all): "
           + CLUSTER_WHY[cluster].format(item=item, many=many) + "."]
    out.append(methods_prose())
    unpaired = [c for c in rows if not c.paired]
    left_out = sum(c.n_a + c.n_b - 2 * c.n_pairs for c in rows if c.paired)
    tail = (f"{len(unpaired)} of {len(rows)} comparisons are unpaired: fewer than half the smaller arm's {many} "
            "had a partner, so all units are compared as independent samples." if unpaired
            else "Every comparison is paired.")
    if left_out:
        tail += (f" Paired rows leave out {left_out} {many} without a partner (the other model has no {one} "
                 "there, e.g. it was not asked or ended in an error).")
    out.append(tail + " Discordant counts are the pairs where only A (only B) had the event, or, for a mean, "
               "where A (B) was higher.")
    return out


def primary_prose(fam: ContrastFamilies, show, given_reference: bool) -> str:
    """Which contrasts are primary and why, and their correction."""
    n = len(fam.primary)
    if fam.rule == "named":
        pairs = "the pair" if len(fam.pairs) == 1 else f"the {len(fam.pairs)} pairs"
        text = (f"The primary contrasts are {pairs} of models this section names before the data (its "
                f"primary option). Their p-values are Holm-corrected across these {n} rows only.")
    else:
        k = len(fam.models)
        why = "named by the section's reference option" if given_reference else "the first model of the study"
        text = (f"No contrast is named in the spec (the section's primary option), so the primary family is each "
                f"model against one reference, {show(fam.reference)} ({why}): {len(fam.pairs)} comparisons of models "
                f"instead of all {k * (k - 1) // 2} pairs. Their p-values are Holm-corrected across these {n} rows "
                "only.")
    if fam.absent:
        absent = ", ".join(f"{show(a)} − {show(b)}" for a, b in fam.absent)
        text += f" Not in the data, so not compared: {absent}."
    return text


def exploratory_prose(fam: ContrastFamilies, shown: int) -> str:
    rows = fam.exploratory
    scope = (f"pooled over the {len(fam.design.conditions)} conditions (one row per pair; the primary pairs alone "
             "are broken down by condition)" if fam.exploratory_pooled else "as the primary pairs are")
    significant = sum(1 for c in rows if c.holm_p < 0.05)
    text = (f"The other {fam.other_pairs} pairs of models were not named before the data: they are "
            "exploratory, to suggest hypotheses rather than to test them. Each is compared " + scope + ". Their "
            f"p-values are Holm-corrected across these {len(rows)} rows, a family of its own apart from the primary "
            f"one; {significant} of {len(rows)} have an exploratory Holm p below 0.05.")
    if shown < len(rows):
        text += (f" The table lists the {shown} rows with the smallest p-values; the figure shows how large all "
                 f"{len(rows)} differences are.")
    return text


# The most rows a forest plot draws before it keeps to the pooled rows: about what one page holds.
FOREST_ROWS = 40
# The most exploratory rows a report lists (the smallest p-values first): a reader cannot use more.
MAX_EXPLORATORY_ROWS = 20
TABLE_HEADERS = ["Comparison (A − B)", "Condition", "Difference [95% CI]", "n", "A only / B only", "p", "Holm p",
                 "Pairing and method"]
TABLE_ALIGN = ["l", "l", "r", "r", "r", "r", "r", "l"]


@dataclass(frozen=True)
class ContrastUnits:
    """What a section compares: the units (as `keyed_units` makes them) and how they are named."""

    units: pd.DataFrame
    metric: Metric
    model_factors: tuple[str, ...]
    cluster: Cluster
    item_name: str


def check_family_options(options, key: str) -> None:
    """`primary` pairs two different models each; `reference` goes without `primary`."""
    if options.primary is not None and options.reference is not None:
        raise SpecError("give the primary contrasts (primary) or a reference model (reference), not both",
                        key=f"{key}.reference")
    for i, (a, b) in enumerate(options.primary or []):
        if a == b:
            raise SpecError(f"a contrast compares two different models, not {a!r} with itself",
                            key=f"{key}.primary.{i}")


def check_model_names(options, models: list[str], key: str, source: str) -> None:
    """Every model `primary` and `reference` name is one of `models` (a model of a pair of model factors
    written 'a / b' by its parts); else a SpecError naming the key."""
    known = set(models)
    listed = ", ".join(models[:30]) + (f" and {len(models) - 30} more" if len(models) > 30 else "")

    def check(name: str, at: str) -> None:
        if not all(part in known for part in str(name).split(" / ")):
            raise SpecError(f"'{name}' is not a model of this study ({source}: {listed or 'none'})", key=at)

    if options.reference is not None:
        check(options.reference, f"{key}.reference")
    for i, pair in enumerate(options.primary or []):
        for j, name in enumerate(pair):
            check(name, f"{key}.primary.{i}.{j}")


@register_section
class PairedContrastsSection(Section):
    """Model contrasts on the same units: difference, paired 95% interval, discordant pairs,
    the p that inverts that interval and Holm p, as a table and a forest plot; the primary contrasts (named in
    the spec, else each model against a reference) apart from the exploratory rest."""

    type = "paired_contrasts"
    shows_results = True
    # The options that decide which contrasts are tested (registered before the data).
    registered_options = ("metric", "where", "models", "by_condition", "pooled", "primary", "reference")

    class Options(Strict):
        type: str
        metric: str
        title: str | None = None
        where: dict[str, str] = {}
        models: list[str] | None = None
        by_condition: bool = True
        pooled: bool = True
        # The primary contrasts, A − B; none named: each model against `reference` (default: the first).
        primary: list[tuple[str, str]] | None = None
        reference: str | None = None
        # Compare the other pairs too, as a separate exploratory family.
        exploratory: bool = True
        caption: str | None = None

    def check(self, options, scenario, key):
        check_metric(options.metric, scenario, f"{key}.metric")
        check_family_options(options, key)

    def check_study(self, options, loaded, key):
        check_model_names(options, list(loaded.spec.models), key, "the models of its spec")

    def first_model(self, loaded, options) -> str | None:
        """The reference when none is named: the study's first model, in the order of the design's
        levels (the plan's first cell), among those `models` keeps; with several factors naming models
        (e.g. a player and its opponent), their first models as the contrasts name them, 'a / b'."""
        spec = loaded.spec
        kept = lambda v: str(v) in spec.models and (options.models is None or str(v) in options.models)  # noqa: E731
        firsts = [next((str(v) for v in levels if kept(v)), None) for levels in spec.design.factors.values()]
        return " / ".join(f for f in firsts if f is not None) or None

    def reference(self, loaded, options) -> str | None:
        """The reference of the primary family when no contrast is named (None when some are)."""
        if options.primary:
            return None
        return options.reference if options.reference is not None else self.first_model(loaded, options)

    def registered(self, options, loaded):
        dumped = options.model_dump()
        # The default reference is registered by name: reordering the models after the data is a change.
        return {**{k: dumped[k] for k in self.registered_options}, "reference": self.reference(loaded, options)}

    def contrast_units(self, ctx, options) -> ContrastUnits:
        """The units to compare: the study's own trials (a scenario's subclass may read other units)."""
        metric = ctx.metrics[options.metric]
        units, factors, cluster = paired_units(ctx.con, ctx.spec_hash, ctx.scenario, metric,
                                               ctx.scenario.metric_params(ctx.spec), options.where or None,
                                               options.models)
        return ContrastUnits(units, metric, factors, cluster, _item_name(ctx.con, ctx.spec_hash))

    def families(self, ctx, options) -> ContrastFamilies:
        u = self.contrast_units(ctx, options)
        return contrast_families(u.units, u.metric, u.model_factors, u.cluster, u.item_name, ctx.seed,
                                 named=options.primary, reference=self.reference(ctx.loaded, options),
                                 by_condition=options.by_condition, pooled=options.pooled,
                                 exploratory=options.exploratory)

    def render(self, ctx, options) -> Rendered:
        fam = self.families(ctx, options)
        result, metric = fam.design, fam.design.metric
        title = options.title or f"Paired model contrasts: {metric.label}"
        heading = f"## {escape(title)}"
        if not fam.primary and not fam.exploratory:
            return Rendered(f"{heading}\n\n*Fewer than two models with {escape(ctx.scenario.unit[1])} to compare "
                            f"on {escape(metric.label)}\\.*")
        names = {k: ctx.spec.models[k].label if k in ctx.spec.models else k for k in
                 {part for pair in [*fam.pairs, *((c.model_a, c.model_b) for c in result.contrasts)]
                  for m in pair for part in m.split(" / ")}}
        show = lambda model: " / ".join(names[p] for p in model.split(" / "))  # noqa: E731
        key = content_hash([self.type, options.model_dump(exclude={"title", "caption"})], 6)
        label = f"paired-{metric.name}-{key}".replace("_", "-")
        md = [heading, " ".join(escape(s) for s in prose(result, ctx)),
              "### Primary contrasts", escape(primary_prose(fam, show, options.reference is not None))]
        figures = []
        if fam.primary:
            unit = "percentage points" if metric.percent else "units of the metric"
            caption = options.caption or f"{metric.label}: model A minus model B, primary contrasts"
            caption += (f" ({unit}) with 95% intervals; n is the pairs (paired rows) or each model's "
                        f"{ctx.scenario.unit[1]} (unpaired rows) behind each difference; p is two-sided, Holm p "
                        "corrected across the primary contrasts (this table).")
            md.append(table(TABLE_HEADERS, [table_row(c, result, show) for c in fam.primary], caption,
                            f"tbl-{label}", TABLE_ALIGN))
            figure = forest_figure(fam.primary, result, show, f"fig-{label}")
            if figure is not None:
                figures.append(figure)
                md.append(f"@@FIGURE:{figure.label}@@")
        if fam.other_pairs:
            md.append("### Exploratory contrasts")
        if fam.other_pairs and not options.exploratory:
            md.append(escape(f"The other {fam.other_pairs} pairs of models are not compared (the section's "
                             "exploratory option is false)."))
        elif fam.exploratory:
            listed = sorted(fam.exploratory, key=lambda c: (math.isnan(c.holm_p), c.holm_p, math.isnan(c.difference.p),
                                                            c.difference.p, -abs(c.difference.value)))
            listed = listed[:MAX_EXPLORATORY_ROWS]
            md.append(escape(exploratory_prose(fam, len(listed))))
            caption = (f"{metric.label}: exploratory contrasts (not named before the data), "
                       + (f"the {len(listed)} of {len(fam.exploratory)} with the smallest p; " if len(listed) <
                          len(fam.exploratory) else "")
                       + "Holm p corrected across the exploratory rows only.")
            md.append(table(TABLE_HEADERS, [table_row(c, result, show) for c in listed], caption,
                            f"tbl-{label}-exploratory", TABLE_ALIGN))
            figure = exploratory_figure(fam.exploratory, metric, f"fig-{label}-exploratory")
            figures.append(figure)
            md.append(f"@@FIGURE:{figure.label}@@")
        return Rendered("\n\n".join(md), figures)


def table_row(c: Contrast, result: PairedContrasts, show) -> list[str]:
    comparison = f"{show(c.model_a)} − {show(c.model_b)}"
    condition = c.condition or f"pooled over {len(result.conditions)} conditions"
    return [comparison, condition, difference_text(c, result.metric.percent), n_text(c), discordant_text(c),
            p_text(c.difference.p), p_text(c.holm_p), method_text(c)]


def forest_figure(rows: list[Contrast], result: PairedContrasts, show, label: str) -> Figure | None:
    """The primary rows as a forest plot; when they are more than a page shows (FOREST_ROWS), the rows
    pooled over the conditions only (the table has them all). None when no row has an estimate. (A plot
    still over MAX_CHART_ROWS becomes a note in the report: engine/report/charts.py.)"""
    metric = result.metric
    drawn, note = rows, ""
    pooled = [c for c in rows if c.condition is None]
    if len(rows) > FOREST_ROWS and pooled and len(pooled) < len(rows):
        drawn, note = pooled, (f" Only the {len(pooled)} rows pooled over the conditions are drawn: all "
                               f"{len(rows)} would be more than a page can show (the table has every row).")
    points = []
    for c in drawn:
        condition = c.condition or f"pooled over {len(result.conditions)} conditions"
        points.append({"label": f"{show(c.model_a)} − {show(c.model_b)} · {condition}", "value": c.difference.value,
                       "low": c.difference.low, "high": c.difference.high, "n": n_text(c),
                       "pairing": "paired" if c.paired else "unpaired", "p": p_text(c.difference.p),
                       "holm_p": p_text(c.holm_p)})
    frame = pd.DataFrame(points)
    plotted = frame[frame["value"].notna()] if not frame.empty else frame
    if plotted.empty:
        return None
    spec = forest_chart(plotted, x_title=f"{metric.label}, A − B", percent=metric.percent)
    caption = (f"{metric.label}: primary contrasts between models (A − B) with 95% intervals; points without a "
               "bar have no interval (the table says why). Each row's n is in the table and tooltip." + note)
    return Figure(label, caption, spec)


def exploratory_figure(rows: list[Contrast], metric: Metric, label: str) -> Figure:
    """How large the exploratory differences are: a histogram of every one's size |A − B| (which model
    of an exploratory pair is A is only the order of the models), those with an exploratory Holm p below
    0.05 marked; binned, so it draws whatever their number."""
    values = [abs(c.difference.value) for c in rows]
    flagged = [c.holm_p < 0.05 for c in rows]
    spec = histogram_chart(values, flagged, x_title=f"{metric.label}, |A − B|", flag_title="Holm p < 0.05",
                           percent=metric.percent)
    missing = sum(1 for v in values if math.isnan(v))
    caption = (f"{metric.label}: the sizes of the {len(rows)} exploratory differences between models (|A − B|), "
               "binned; coloured: exploratory Holm p below 0.05."
               + (f" {missing} rows without an estimate are not counted." if missing else ""))
    return Figure(label, caption, spec)
