"""The `judge_validity` section, for every scenario with judges: each judge against its rubric's
hand-labelled gold set (accuracy, Cohen's kappa, confusion matrix); for each judge whose labels a rate
counts, its sensitivity, specificity and Youden's J on that rate's binary decision; which judges are
weak (engine/analyze/judge_validity.py, judge_verdict) and what rests on them; and the agreement
between judges that answer the same rubric. Scenarios add their own words through
Scenario.positive_labels, weak_judge_kappa, judge_reliance and judge_validity_notes."""

from __future__ import annotations

import math

import pandas as pd
from pydantic import Field

from engine.analyze.agreement import Agreement, BinaryValidity, agreement
from engine.analyze.judge_validity import (ADEQUATE, WEAK_YOUDEN, gold_agreement, gold_binary_validity,
                                           judge_verdict, positive_labels, trace_verdicts)
from engine.analyze.stats import wilson
from engine.analyze.summary import format_estimate
from engine.kernel.contracts import Judge
from engine.judging.catalog import make_judges
from engine.judging.gold import gold_path
from engine.report.markdown import escape, table
from engine.kernel.contracts import Rendered, Section
from engine.kernel.registry import register_section
from engine.kernel.records import Strict


def share(a: Agreement) -> str:
    """Raw agreement (accuracy against gold) with its Wilson interval."""
    est = wilson(round(a.accuracy * a.n), a.n)
    return format_estimate(est.value, est.low, est.high, percent=True)


def kappa_text(a: Agreement) -> str:
    return "undefined" if math.isnan(a.kappa) else f"{a.kappa:.2f} [{a.kappa_low:.2f}, {a.kappa_high:.2f}]"


def confusion_table(confusion: pd.DataFrame, name: str, label: str) -> str:
    headers = ["Gold label (rows) / judge label", *map(str, confusion.columns)]
    rows = [[str(idx), *map(int, row)] for idx, row in zip(confusion.index, confusion.to_numpy())]
    return table(headers, rows, f"Confusion matrix of {name} against the gold set (rows: gold label).", label)


def between_judges(ctx, judges: list[Judge]) -> str:
    """Agreement on this study's traces between judges answering the same rubric (only those can
    agree or disagree); empty when no two judges share a rubric."""
    pairs = [(a, b) for i, a in enumerate(judges) for b in judges[i + 1:] if b.spec.rubric.name == a.spec.rubric.name]
    if not pairs:
        return ""
    involved = {j.judge_id: j for pair in pairs for j in pair}
    labels = {key: trace_verdicts(ctx, j).set_index("subject_id").label for key, j in involved.items()}
    rows = []
    for a, b in pairs:
        both = pd.concat([labels[a.judge_id], labels[b.judge_id]], axis=1, join="inner").dropna()
        both = both[(both.iloc[:, 0] != "ERROR") & (both.iloc[:, 1] != "ERROR")]
        if both.empty:
            rows.append((a.spec.display_name, b.spec.display_name, 0, "—", "—"))
            continue
        ag = agreement(list(both.iloc[:, 0]), list(both.iloc[:, 1]), list(a.spec.rubric.labels))
        rows.append((a.spec.display_name, b.spec.display_name, ag.n, share(ag), kappa_text(ag)))
    return table(["Judge A", "Judge B", "Traces", "Agreement", "Cohen's kappa [95% CI]"], rows,
                 "Agreement between judges on this study's traces (traces where either judge failed are left out).",
                 "tbl-judge-pairs", ["l", "l", "r", "r", "r"])


def youden_text(b: BinaryValidity) -> str:
    j = b.youden
    return "undefined" if math.isnan(j.value) else f"{j.value:.2f} [{j.low:.2f}, {j.high:.2f}]"


def binary_row(name: str, b: BinaryValidity) -> tuple:
    sens, spec = b.sensitivity, b.specificity
    return (name, ", ".join(b.positive), b.n_positive, b.n_negative,
            format_estimate(sens.value, sens.low, sens.high, percent=True),
            format_estimate(spec.value, spec.low, spec.high, percent=True), youden_text(b))


def is_weak(a: Agreement | None, threshold: float, binary: BinaryValidity | None = None,
            youden_threshold: float = WEAK_YOUDEN) -> bool:
    """Weak by judge_verdict's rule: on Youden's J when `binary` (the judge's validity on the decision
    a rate makes) is given, else on kappa (unmeasured, undefined or below `threshold`)."""
    return judge_verdict(a, binary, threshold, youden_threshold) != ADEQUATE


@register_section
class JudgeValidity(Section):
    type = "judge_validity"

    class Options(Strict):
        type: str
        confusion: bool = True
        weak_kappa: float | None = Field(default=None, ge=-1, le=1, description=(
            "Cohen's kappa against the gold set below which a judge is weak, for judges whose labels no rate "
            "counts (default: the scenario's, e.g. scenario.weak_judge_kappa, else 0.6)"))
        weak_youden: float = Field(default=WEAK_YOUDEN, ge=-1, le=1, description=(
            "for judges whose labels a rate counts: the lower end of Youden's J's 95% interval below which "
            "the judge is weak (an interval containing 0 is always weak)"))

    def render(self, ctx, options) -> Rendered:
        judges = make_judges(ctx.spec)
        if not judges:
            return Rendered("## Judge validity\n\n*This study has no judges to check against a gold set\\.*")
        threshold = (options.weak_kappa if options.weak_kappa is not None
                     else ctx.scenario.weak_judge_kappa(ctx.loaded.scenario_params))
        positives = positive_labels(ctx.scenario, ctx.spec, ctx.loaded.scenario_params)
        golds = {j.judge_id: gold_path(j.spec.rubric) for j in judges}
        # A Gold set column only when the judges are scored on different gold sets.
        names = {p.name if p else "none" for p in golds.values()}
        gold_column = len(names) > 1
        parts, rows, binary_rows, weak = ["## Judge validity"], [], [], []
        for judge in judges:
            name, gold = judge.spec.display_name, golds[judge.judge_id]
            shown_gold = [gold.name if gold else "none"] if gold_column else []
            a, errors = gold_agreement(ctx, judge)
            if a is None:
                status = ("no gold set" if gold is None else "failed on every gold item" if errors
                          else "not graded (run the judge stage)")
                rows.append((name, judge.rubric_version, *shown_gold, 0, errors, "—", "—", status))
                continue
            b = (gold_binary_validity(ctx, judge, positives[judge.judge_id])
                 if judge.judge_id in positives else None)
            verdict = judge_verdict(a, b, threshold, options.weak_youden)
            if b is not None:
                binary_rows.append(binary_row(name, b))
            if verdict != ADEQUATE:
                if b is not None:
                    weak.append((judge, f"{name} ({verdict}: Youden's J {youden_text(b)} on "
                                        f"{' or '.join(b.positive)} against the rest)"))
                else:
                    shown = "undefined" if math.isnan(a.kappa) else f"{a.kappa:.2f}"
                    weak.append((judge, f"{name} (kappa {shown})"))
            rows.append((name, judge.rubric_version, *shown_gold, a.n, errors, share(a), kappa_text(a), verdict))
            if options.confusion:
                parts.append(confusion_table(a.confusion, name, f"tbl-confusion-{judge.judge_id}"))
        where = ("Judges whose rubrics name the same gold set are scored on the same items." if gold_column
                 else f"Gold set: {names.pop()}.")
        rule = (f"Verdict: for a judge in the binary table below, on Youden's J there (weak when the lower end of "
                f"its 95% interval is below {options.weak_youden:g}; no better than chance when the interval "
                f"contains 0); for the others, kappa below {threshold:g} is weak." if binary_rows else
                f"Verdict: kappa below {threshold:g} is weak.")
        tables = [table(
            ["Judge", "Rubric", *(["Gold set"] if gold_column else []), "Gold items", "Judge errors", "Accuracy",
             "Cohen's kappa [95% CI]", "Verdict"], rows,
            "Each judge against its rubric's hand-labelled gold set (judge errors excluded from accuracy and "
            f"kappa, counted beside them; kappa's interval is clipped to [-1, 1]). {where} {rule}",
            "tbl-judge-gold", ["l", "l", *(["l"] if gold_column else []), "r", "r", "r", "r", "l"])]
        if binary_rows:
            tables.append(table(
                ["Judge", "Counted positive", "Gold positives", "Gold negatives", "Sensitivity [95% CI]",
                 "Specificity [95% CI]", "Youden's J [95% CI]"], binary_rows,
                "What the rates need: each judge whose labels a rate counts, on that rate's decision (a label "
                "counted positive or any other label) against the gold set, judge errors left out. Sensitivity "
                "and specificity with Wilson 95% intervals; Youden's J = sensitivity + specificity - 1 (0: no "
                "better than chance) with Newcombe's hybrid score 95% interval.",
                "tbl-judge-binary", ["l", "l", "r", "r", "r", "r", "r"]))
        parts[1:1] = tables
        if weak:
            text = ("Weak classifiers (by the rule in the gold-set table's caption): "
                    f"{', '.join(w for _, w in weak)}.")
            reliance = ctx.scenario.judge_reliance(ctx.spec, ctx.loaded.scenario_params)
            for judge, _ in weak:
                if judge.judge_id in reliance:
                    text += (f" What rests on the labels of {judge.spec.display_name} measures the judge as much as "
                             f"the models: {reliance[judge.judge_id]}.")
            parts.insert(1 + len(tables), f"**{escape(text)}**")
        parts.append(between_judges(ctx, judges))
        parts.extend(escape(note) for note in ctx.scenario.judge_validity_notes(ctx.spec))
        return Rendered("\n\n".join(p for p in parts if p))
