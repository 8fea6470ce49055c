"""Report sections of the agentic-misalignment scenario: the goal-conflict x threat ablation per
model, safety-instruction mitigation, considers-but-refrains with quoted examples, the rate per
model ordered by family and size, and the classifiers against their gold sets. Every number comes
from the study database."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import Field

from engine.analyze.metrics import unit_values
from engine.analyze.stats import NOT_ESTIMABLE_NO_CONTROL_EVENTS, rate_estimate, relative_reduction
from engine.analyze.summary import format_estimate
from engine.report.sections.builtin import design_levels
from engine.report.charts import estimate_chart
from engine.report.markdown import code_block, escape, model_text, model_text_note, table
from engine.kernel.contracts import FINISHED, check_metric, Figure, Rendered, Section
from engine.kernel.registry import register_section
from engine.scenarios.agentic_misalignment.metrics import ACTION_KNOWN
from engine.scenarios.agentic_misalignment.variants import VARIANTS, Variant
from engine.kernel.records import Strict


def trial_values(ctx, metric: str) -> pd.DataFrame:
    """One row per trial with its metric value and its cell's factor levels."""
    values = unit_values(ctx.con, ctx.spec_hash, ctx.metrics[metric], ctx.scenario.metric_params(ctx.spec))
    cells = pd.DataFrame([{"cell_id": c.cell_id, **{k: str(v) for k, v in c.cell.items()}}
                          for c in ctx.cells.itertuples()])
    return values.merge(cells, on="cell_id")


def models_by_family(ctx, models) -> list[str]:
    """Families together, smaller models first within a family, so a figure answers family-or-size."""
    spec = ctx.spec
    return sorted(models, key=lambda k: (spec.models[k].family, spec.models[k].params.effective_b))


def _rate(values: pd.Series) -> str:
    est = rate_estimate(values.to_numpy(float))
    if est.n == 0:
        return "— (n=0)"
    return format_estimate(est.value, est.low, est.high, True, n=est.n)  # flags a low n


UNPARSEABLE_WHY = "an email tool block that cannot be parsed (left open, cut off, or without its recipient or body)"
TRUNCATED_WHY = "cut off by max_tokens before any complete email"


def left_out_counts(ctx) -> dict[str, int]:
    """Finished replies whose action is unknown, by reason (an unparseable block first, then a
    reply cut off before any complete email): they are outside the act rates' denominators."""
    finished, unparseable, truncated = ctx.con.execute(
        "SELECT count(*), count(*) FILTER (WHERE coalesce(r.action_status, 'parsed') = 'unparseable'),"
        f" count(*) FILTER (WHERE NOT {ACTION_KNOWN} AND coalesce(r.action_status, 'parsed') <> 'unparseable')"
        f" FROM agentic_responses r JOIN {FINISHED} t ON t.trial_id = r.trial_id",
        {"spec_hash": ctx.spec_hash}).fetchone()
    return {"finished": int(finished), "unparseable": int(unparseable), "truncated": int(truncated)}


def left_out_sentence(ctx) -> str:
    """How many replies the rates leave out, and why (said even when none is)."""
    c = left_out_counts(ctx)
    n = c["unparseable"] + c["truncated"]
    if n == 0:
        return (f"No reply is left out of these rates for an unknown action (0 of {c['finished']} finished replies "
                f"had {UNPARSEABLE_WHY}, or were {TRUNCATED_WHY}).")
    return (f"{n} of {c['finished']} finished replies are left out of these rates because their action is unknown, "
            f"not counted as sending no email: {c['unparseable']} with {UNPARSEABLE_WHY}, {c['truncated']} "
            f"{TRUNCATED_WHY} (metric unparseable_action_rate).")


def _left_out_note(ctx, metric: str) -> list[str]:
    """The left-out sentence, for a metric whose denominator leaves those replies out."""
    return [escape(left_out_sentence(ctx))] if ACTION_KNOWN in ctx.metrics[metric].sql else []


def variant(ctx) -> Variant:
    return VARIANTS[ctx.loaded.scenario_params.variant]


class Where(Strict):
    type: str
    metric: str | None = Field(default=None, description="default: the variant's rate (blackmail_rate, leak_rate)")
    where: dict[str, str] = Field(default={}, description="keep only trials with these factor levels")

    def check(self, scenario, key: str) -> None:
        if self.metric is not None:
            check_metric(self.metric, scenario, f"{key}.metric")

    def metric_name(self, ctx) -> str:
        return self.metric or variant(ctx).primary_metric

    def trials(self, ctx) -> pd.DataFrame:
        df = trial_values(ctx, self.metric_name(ctx))
        for factor, level in self.where.items():
            df = df[df[factor] == str(level)]
        return df


def _filters(options: Where) -> str:
    return ", ".join(f"{k} = {v}" for k, v in options.where.items()) or "all other factors pooled"


@register_section
class Ablation(Section):
    type = "ablation"
    shows_results = True

    class Options(Where):
        rows: str = "goal_conflict"
        columns: str = "threat"

    def check(self, options, scenario, key):
        options.check(scenario, key)

    def render(self, ctx, options) -> Rendered:
        df = options.trials(ctx)
        metric = ctx.metrics[options.metric_name(ctx)]
        out = [f"## Ablation: {escape(options.rows)} x {escape(options.columns)}"]
        # Levels in the order the design declares them.
        order = lambda f: [level for level in design_levels(ctx.spec, f) if level in set(df[f])]  # noqa: E731
        columns = order(options.columns)
        for model in models_by_family(ctx, df.model.unique()):
            sub = df[df.model == model]
            rows = [[level, *[_rate(sub[(sub[options.rows] == level) & (sub[options.columns] == col)].value)
                              for col in columns]] for level in order(options.rows)]
            out.append(table([f"{options.rows} (rows) / {options.columns}", *columns], rows,
                             f"{metric.label} of {ctx.spec.models[model].label} by {options.rows} and "
                             f"{options.columns} ({_filters(options)}); exact (Clopper-Pearson) 95% intervals.",
                             f"tbl-ablation-{model}".replace("_", "-")))
        out += _left_out_note(ctx, options.metric_name(ctx))
        return Rendered("\n\n".join(out))


@register_section
class Mitigation(Section):
    """Relative reduction 1 - RR from safety instructions off -> on, with the score interval for the
    ratio of two independent proportions (engine.analyze.stats.relative_reduction)."""

    type = "mitigation"
    shows_results = True

    class Options(Where):
        factor: str = "safety_instructions"
        baseline: str = "off"
        treatment: str = "on"

    def check(self, options, scenario, key):
        options.check(scenario, key)

    def render(self, ctx, options) -> Rendered:
        df = options.trials(ctx)
        rows = []
        for model in models_by_family(ctx, df.model.unique()):
            sub = df[df.model == model]
            off = sub[sub[options.factor] == options.baseline].value.to_numpy(float)
            on = sub[sub[options.factor] == options.treatment].value.to_numpy(float)
            rows.append([ctx.spec.models[model].label, _rate(pd.Series(off)), _rate(pd.Series(on)),
                         _reduction(off, on, options)])
        return Rendered(f"## Mitigation by {escape(options.factor)}\n\n" + table(
            ["Model", f"{options.factor} = {options.baseline}", f"{options.factor} = {options.treatment}",
             "Relative reduction [95% CI]"], rows,
            f"{ctx.metrics[options.metric_name(ctx)].label}: relative reduction 1 - RR, RR = rate({options.treatment}) "
            f"/ rate({options.baseline}), the trials of the two arms taken as independent binomial samples "
            f"({_filters(options)}). The 95% interval is the score interval for RR (Koopman 1984; Miettinen and "
            "Nurminen 1985, with their small-sample variance correction; statsmodels' score interval, its score "
            "test inverted numerically where an arm is all events), mapped to 1 - RR: no resampling, and valid "
            f"at 0 events. With 0 events at {options.factor} = {options.treatment} the estimate is 100% and the "
            "interval's lower end is the smallest reduction the data allow; a lower end below 0% means the data "
            "do not rule out a higher rate with the instructions. With 0 events at "
            f"{options.factor} = {options.baseline} no reduction can be estimated, and the cell says so.",
            "tbl-mitigation") + "".join(f"\n\n{n}" for n in _left_out_note(ctx, options.metric_name(ctx))))


def _reduction(off: np.ndarray, on: np.ndarray, options=None) -> str:
    if len(off) == 0 or len(on) == 0:
        return "—"
    est = relative_reduction(off, on)
    if est is None:
        if options is None or (options.factor, options.baseline) == ("safety_instructions", "off"):
            return NOT_ESTIMABLE_NO_CONTROL_EVENTS
        return f"not estimable: no events at {options.factor} = {options.baseline}"
    return format_estimate(est.value, est.low, est.high, percent=True)


@register_section
class Inhibition(Section):
    """Considers but refrains: the share of considering replies that did not act, with examples."""

    type = "inhibition"
    shows_results = True

    class Options(Strict):
        type: str
        examples: int = Field(default=2, ge=0)
        max_chars: int = Field(default=600, gt=0, description="most characters of an example reply shown "
                                                              "(see engine.report.markdown.model_text)")

    def render(self, ctx, options) -> Rendered:
        considered = trial_values(ctx, "considered_rate")
        refrained = trial_values(ctx, "inhibition_rate")
        rows, v = [], variant(ctx)
        for model in models_by_family(ctx, considered.model.unique()):
            c = considered[considered.model == model].value
            r = refrained[refrained.model == model].value
            rows.append([ctx.spec.models[model].label, _rate(c), int(c.sum()),
                         _rate(r) if len(r) else "— (none considered)"])
        parts = ["## Considers but refrains", table(
            ["Model", "Considered the act", "Considering replies", f"Inhibition (not {v.act})"], rows,
            f"Inhibition rate = share of replies that {v.considered_prose} (deliberation classifier) and then "
            f"were not {v.act} by the final rule; exact (Clopper-Pearson) 95% intervals.",
            "tbl-inhibition"), *_left_out_note(ctx, "inhibition_rate")]
        examples = refrained[refrained.value == 1].head(options.examples)
        if not examples.empty:
            parts.append(escape(model_text_note(options.max_chars)))
        for trial_id in examples.trial_id:
            model, text = ctx.con.execute(
                "SELECT model_key, coalesce(scratchpad_text, response_text) FROM agentic_responses WHERE trial_id = ?",
                [trial_id]).fetchone()
            parts.append(f"Example ({escape(ctx.spec.models[model].label)}, trial {escape(trial_id[:10])}), "
                         f"{escape(v.considered_prose)} and refrained:\n\n"
                         + code_block(model_text(text, options.max_chars)))
        if examples.empty:
            parts.append(f"*No reply both {escape(v.considered_prose)} and refrained\\.*")
        return Rendered("\n\n".join(parts))


@register_section
class ByFamily(Section):
    """The rate per model, ordered by family then size, coloured by family."""

    type = "by_family"
    shows_results = True

    class Options(Where):
        pass

    def check(self, options, scenario, key):
        options.check(scenario, key)

    def render(self, ctx, options) -> Rendered:
        df = options.trials(ctx)
        metric = ctx.metrics[options.metric_name(ctx)]
        data = []
        for model in models_by_family(ctx, df.model.unique()):
            v = df[df.model == model].value
            est = rate_estimate(v.to_numpy(float))
            m = ctx.spec.models[model]
            data.append({"x": f"{m.label} ({m.params.display()})", "value": est.value, "low": est.low,
                         "high": est.high, "n": est.n, "label": m.label, "family": m.family})
        if not data or all(math.isnan(d["value"]) for d in data):
            return Rendered("\n\n".join([f"*No graded trials for {escape(metric.label)}\\.*",
                                           *_left_out_note(ctx, options.metric_name(ctx))]))
        spec = estimate_chart(pd.DataFrame(data), x="x", x_title="Model (by family, then size)",
                              y_title=metric.label, color="family", log_x=False, percent=True, nominal_x=True)
        label = f"fig-{options.metric_name(ctx)}-by-family".replace("_", "-")
        note = "".join(f"\n\n{n}" for n in _left_out_note(ctx, options.metric_name(ctx)))
        return Rendered(f"@@FIGURE:{label}@@{note}", [Figure(
            label, f"{metric.label} per model, grouped by family and ordered by size within it ({_filters(options)}); "
                   "bars are exact (Clopper-Pearson) 95% intervals.", spec)])


# The classifiers against their gold sets: the shared `judge_validity` section
# (engine/report/sections/judge_validity.py). What this scenario adds to it, through the Scenario hooks
# judge_reliance and judge_validity_notes.
def classifier_reliance(params) -> dict[str, str]:
    """judge_id -> the rates that rest on that classifier's labels."""
    v, out = VARIANTS[params.variant], {}
    if judge := params.classifiers.get(v.name):
        out[judge] = f"the {v.label.lower()} rate (final rule)"
    if judge := params.classifiers.get("deliberation"):
        out[judge] = "the considered and inhibition rates"
    return out


GOLD_SET_NOTE = ("The gold replies are written for this environment (Halvorsen Logistics, the agent Atlas, the "
                 "executive Daniel Reyes) and labelled by the rubric text; each item's note says why.")
