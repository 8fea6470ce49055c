"""The `corrected_rates` section: each judge with a gold set, its sensitivity and specificity on every
label (one label against the rest) and on the decisions the rates make; then every rate the scenario
says rests on one judge's labels (Scenario.judged_rates), per design cell, as judged and corrected for
the judge's errors (Rogan-Gladen, engine/analyze/misclassification.py), or "not correctable" when the
judge's Youden's J (or its interval) does not clear `min_youden`."""

from __future__ import annotations

from pydantic import Field

from engine.analyze.agreement import binary_validity
from engine.analyze.judge_validity import gold_comparison
from engine.analyze.judged_rates import JudgedRate, judged_rate, judged_rate_sources, validity_text, youden_text
from engine.analyze.misclassification import NOT_CORRECTABLE, CorrectedRate
from engine.analyze.summary import format_estimate
from engine.judging.catalog import make_judges
from engine.kernel.contracts import Judge, Rendered, Section, check_metric
from engine.kernel.records import Strict
from engine.kernel.registry import register_section
from engine.report.sections.builtin import Rows, cell_label, select_cells
from engine.report.markdown import escape, table


def percent(e) -> str:
    return format_estimate(e.value, e.low, e.high, percent=True)


def decision(positive: tuple[str, ...]) -> str:
    return " or ".join(positive)


def corrected_text(c: CorrectedRate) -> str:
    """A cell's corrected rate with its interval and n, or why there is none."""
    if c.raw.n == 0:
        return "— (n=0)"
    if c.corrected is None:
        return NOT_CORRECTABLE
    e = c.corrected
    text = format_estimate(e.value, e.low, e.high, True, n=int(e.n))
    return text[:-1] + f"; clipped at {e.value:.0%})" if c.clipped else text


def label_rows(judge: Judge, graded, decisions: dict[tuple[str, ...], list[str]]) -> list[tuple]:
    """Every rubric label against the rest, then each multi-label decision a rate makes."""
    shown = [(label,) for label in judge.spec.rubric.labels]
    shown += [d for d in decisions if d not in shown]
    rows = []
    for positive in shown:
        b = binary_validity(list(graded.gold), list(graded.label), positive)
        rows.append((judge.spec.display_name, decision(positive), b.n_positive, b.n_negative,
                     percent(b.sensitivity) if b.n_positive else "—",
                     percent(b.specificity) if b.n_negative else "—", youden_text(b),
                     ", ".join(decisions.get(positive, [])) or "—"))
    return rows


def cell_rate_table(ctx, rate: JudgedRate, rows: Rows, min_youden: float) -> str:
    metric = ctx.metrics[rate.metric]
    body = [(cell_label(c.labels), format_estimate(cr.raw.value, cr.raw.low, cr.raw.high, True, n=int(cr.raw.n)),
             corrected_text(cr))
            for c in select_cells(ctx, rows).itertuples() for cr in [rate.cells[c.cell_id]]]
    judge = rate.judge.spec.display_name
    caption = (f"{metric.label}: as judged (Wilson 95% interval) and corrected for the errors of {judge} on "
               f"{decision(rate.positive)} against the rest ({validity_text(rate.validity)}; verdict: "
               f"{rate.verdict}).")
    reasons = {cr.reason for cr in rate.cells.values() if cr.reason and cr.reason != "no traces"}
    if reasons:
        caption += (f" Not correctable: {'; '.join(sorted(reasons))}, so the judge's errors cannot be told apart "
                    "from the models' behaviour.")
    degenerate = [cr.degenerate for cr in rate.cells.values() if cr.corrected is not None and cr.degenerate > 0]
    if degenerate:
        caption += (f" In {len(degenerate)} cells some resamples had J <= {min_youden:g} (up to "
                    f"{max(degenerate):.1%}); they count as 0 at the interval's lower end and 1 at its upper end.")
    return table(["Cell", "As judged [95% CI]", "Corrected [95% CI]"], body, caption,
                 f"tbl-corrected-{rate.metric}".replace("_", "-"), ["l", "r", "r"])


@register_section
class CorrectedRates(Section):
    type = "corrected_rates"
    shows_results = True

    class Options(Strict):
        type: str
        metrics: list[str] | None = Field(default=None, description=(
            "the judged rates to correct (default: every rate the scenario says rests on one judge's labels)"))
        rows: Rows = "models"
        min_youden: float = Field(default=0.0, ge=-1, lt=1, description=(
            "no correction when Youden's J or the lower end of its 95% interval is at or below this"))
        labels: bool = Field(default=True, description="show each judge's sensitivity and specificity per label")

    def check(self, options, scenario, key):
        for i, m in enumerate(options.metrics or []):
            check_metric(m, scenario, f"{key}.metrics.{i}")

    def render(self, ctx, options) -> Rendered:
        parts = ["## Rates corrected for judge error"]
        sources = judged_rate_sources(ctx)
        names = [m for m in options.metrics or list(sources) if m in sources]
        judges = make_judges(ctx.spec)
        if not judges or not names:
            return Rendered(parts[0] + "\n\n*No rate of this study rests on one judge's labels, so none is "
                            "corrected for judge error\\.*")
        parts.append(escape(
            "A judge with sensitivity Se and specificity Sp on a rate's decision reports, in expectation, "
            "p = Se x true + (1 - Sp) x (1 - true). The corrected rate inverts that (Rogan and Gladen 1978): "
            "(p + Sp - 1) / (Se + Sp - 1), with Se and Sp measured on the judge's gold set (judge errors left "
            "out), clipped to [0, 1]. Its 95% interval is a seeded percentile bootstrap that resamples the "
            "traces (clustered on the item when an item repeats within a cell) and, independently, the gold "
            "set's positive and negative items; where a count has no spread to resample (0 events, or a judge "
            "without error on a class) the draws come from the Jeffreys posterior instead, so an error the "
            "sample did not show still widens the interval. It measures only what the gold set can: a gold set "
            "unlike the study's traces misstates Se and Sp. When Youden's J = Se + Sp - 1, or the lower end of "
            f"its interval, is at or below {options.min_youden:g}, the judge may be no better than chance and "
            f"the rate is '{NOT_CORRECTABLE}'."))
        decisions: dict[str, dict[tuple[str, ...], list[str]]] = {}
        for name in names:
            judge, positive = sources[name]
            decisions.setdefault(judge.judge_id, {}).setdefault(positive, []).append(ctx.metrics[name].label)
        if options.labels:
            rows, missing = [], []
            for judge in judges:
                gold = gold_comparison(ctx, judge)
                graded = gold[gold.label != "ERROR"] if not gold.empty else gold
                if graded.empty:
                    missing.append(judge.spec.display_name)
                    continue
                rows += label_rows(judge, graded, decisions.get(judge.judge_id, {}))
            if rows:
                parts.append(table(
                    ["Judge", "Counted positive", "Gold positives", "Gold negatives", "Sensitivity [95% CI]",
                     "Specificity [95% CI]", "Youden's J [95% CI]", "Rates on this decision"], rows,
                    "Each judge with graded gold items, on each label against the rest and on each decision a "
                    "corrected rate makes; judge errors left out. Sensitivity and specificity with Wilson 95% "
                    "intervals, Youden's J with Newcombe's hybrid score interval.", "tbl-judge-labels",
                    ["l", "l", "r", "r", "r", "r", "r", "l"]))
            if missing:
                parts.append(escape(f"No graded gold item (no gold set, or the judge stage has not graded it): "
                                    f"{', '.join(missing)}; rates resting on them cannot be corrected."))
        for name in names:
            rate = judged_rate(ctx, name, options.min_youden)
            parts.append(cell_rate_table(ctx, rate, options.rows, options.min_youden))
        return Rendered("\n\n".join(parts))
