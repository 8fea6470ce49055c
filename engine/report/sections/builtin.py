"""Built-in report sections. Every number is read from the database through ReportContext."""

from __future__ import annotations

import math
from typing import Literal

import pandas as pd
from pydantic import Field

from engine.analyze.judged_rates import JudgedRate, judged_rate, validity_text
from engine.analyze.summary import LOW_N, format_estimate, low_n, n_note
from engine.kernel.hashing import content_hash
from engine.judging.catalog import make_judges
from engine.kernel.contracts import ATTEMPTED, FINISHED, verdict_match, verdict_params
from engine.plan.generation import generation_settings
from engine.report.charts import estimate_chart
from engine.report.context import ReportContext
from engine.spec.schema import BASE_MODEL_MARK, BASE_MODEL_NOTE
from engine.report.markdown import bullet_list, code_block, escape, table
from engine.kernel.contracts import check_metric, Figure, NoOptions, Rendered, Section
from engine.kernel.registry import register_section
from engine.report.precision import precision_markdown
from engine.analyze.stats import interval_text
from engine.kernel.records import Strict

Rows = Literal["all", "models", "controls"]


def select_cells(ctx: ReportContext, rows: Rows) -> pd.DataFrame:
    cells = ctx.cells
    if rows == "models":
        return cells[~cells.is_control]
    if rows == "controls":
        return cells[cells.is_control]
    return cells


def fmt(ctx: ReportContext, cell_id: str, metric: str) -> str:
    """A cell's estimate of a metric with its 95% interval and its own N (flagged when low)."""
    est = ctx.estimate(cell_id, metric)
    return format_estimate(est.value, est.low, est.high, ctx.metrics[metric].percent, n=int(est.n))


def low_n_text(many: str) -> str:
    return (f"n is the number of {many} behind each estimate; 'low n' marks fewer than {LOW_N}, 'no interval' "
            "an estimate with no interval, and neither should be read alone")


def cell_label(labels: dict[str, str]) -> str:
    """Short name of a cell for prose and captions (parameter counts have their own column)."""
    return ", ".join(v for k, v in labels.items() if v != "—" and k != "Params")


def pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def spread(rows: list[tuple], show) -> str:
    """How an estimate varies over model cells, each (estimate, cell label) in `rows` with its own n:
    "was X in every model cell (n=...)" or "ranged from X (cell, n=...) to Y (cell, n=...) across model cells"."""
    lo = min(rows, key=lambda r: r[0].value)
    hi = max(rows, key=lambda r: r[0].value)
    if lo[0].value == hi[0].value:
        ns = sorted(int(e.n) for e, _ in rows)
        flagged = sum(low_n(e.n, e.low) for e, _ in rows)
        n_text = (f"n={ns[0]} each" if ns[0] == ns[-1] else f"n={ns[0]} to {ns[-1]} per cell")
        n_text += f"; {flagged} of {len(rows)} cells low n or without an interval" if flagged else ""
        return f"was {show(lo[0])} in every model cell ({n_text})"
    return (f"ranged from {show(lo[0])} ({lo[1]}, {n_note(lo[0].n, lo[0].low)}) "
            f"to {show(hi[0])} ({hi[1]}, {n_note(hi[0].n, hi[0].low)}) across model cells")


def weak_judge_sentence(prose: str, judged: JudgedRate, models: pd.DataFrame, rows: list[tuple], show) -> str:
    """A rate resting on a weak judge: its range corrected for the judge's errors (Rogan-Gladen), the
    raw range beside it, and why; or, when the judge is too weak to correct for, the raw range and that."""
    why = (f"{judged.judge.spec.display_name}, the judge it rests on, is {judged.verdict} on "
           f"{' or '.join(judged.positive)} against the rest ({validity_text(judged.validity)})")
    corrected = [(judged.cells[c.cell_id].corrected, cell_label(c.labels)) for c in models.itertuples()]
    corrected = [(e, label) for e, label in corrected if e is not None]
    if not corrected:
        return (f"{prose} as judged {spread(rows, show)}; it cannot be corrected for judge error, because {why}, "
                "so these figures measure the judge as much as the models.")
    return (f"{prose}, corrected for judge error because {why}, {spread(corrected, show)}; as judged, uncorrected, "
            f"it {spread(rows, show)}.")


STAND_IN_MAX_B = 1.0  # local models below this many billion parameters are the offline stand-ins


def stand_in_note(spec, keys: list[str]) -> str | None:
    """What the models are when every one is an offline stand-in (a local model under 1B parameters):
    they show the pipeline, and claims about larger models cannot be judged by them."""
    entries = [spec.models[k] for k in dict.fromkeys(keys) if k in spec.models]
    if not entries or any(m.route != "local" or m.params.effective_b >= STAND_IN_MAX_B for m in entries):
        return None
    names = ", ".join(m.label for m in entries)
    return (f"The models here are offline stand-ins ({names}): local models under {STAND_IN_MAX_B:g}B parameters, "
            "run through llama.cpp so that the study needs no API key. They show the pipeline and its statistics; "
            "what the write-up claims about larger models cannot be judged by them (run it with an API model set "
            "for that, README: Running the write-up's models).")


@register_section
class Summary(Section):
    """The abstract: what was run and the range of each key metric, from the data."""

    type = "summary"

    class Options(Strict):
        type: str
        metrics: list[str] | None = None

    def check(self, options, scenario, key):
        for i, m in enumerate(options.metrics or []):
            check_metric(m, scenario, f"{key}.metrics.{i}")

    def render(self, ctx, options) -> Rendered:
        counts = ctx.trial_counts
        models = select_cells(ctx, "models")
        controls = select_cells(ctx, "controls")
        seeds = len(ctx.spec.design.seed_list)
        one, many = ctx.scenario.unit
        per_cell = counts["planned"] // max(len(ctx.cells), 1)
        detail = (f"{seeds} seeds each" if per_cell == seeds else
                  f"{per_cell} {many} each ({per_cell // seeds} items x {seeds} seed{'s' if seeds > 1 else ''})")
        sentences = [
            f"We planned {counts['planned']} {many}: {len(models)} model cells"
            + (f" and {len(controls)} control cells" if len(controls) else "")
            + f", {detail}; {counts['done']} finished and {counts['errors']} ended in an error."]
        names = options.metrics or [m for m in ctx.scenario.headline_metrics
                                    if m not in ("parse_failure_rate", "error_rate")]
        corrected_any = False
        for name in names:
            metric = ctx.metrics[name]
            rows = [(ctx.estimate(c.cell_id, name), cell_label(c.labels)) for c in models.itertuples()]
            rows = [(e, label) for e, label in rows if e.n > 0]
            if not rows:
                continue
            show = lambda e: format_estimate(e.value, e.low, e.high, metric.percent)  # noqa: E731
            judged = judged_rate(ctx, name)
            if judged is not None and judged.weak:
                corrected_any |= any(c.corrected is not None for c in judged.cells.values())
                sentences.append(weak_judge_sentence(metric.prose, judged, models, rows, show))
            else:
                sentences.append(f"{metric.prose} {spread(rows, show)}.")
        if any(BASE_MODEL_MARK in s for s in sentences):
            sentences.append(BASE_MODEL_NOTE)
        stand_in = stand_in_note(ctx.spec, [k for c in models.itertuples() for k in ctx.scenario.cell_models(c.cell)])
        if stand_in:
            sentences.append(stand_in)
        text = " ".join(escape(s) for s in sentences)
        corrected = (f", and for rates corrected for judge error a seeded bootstrap over {many} and gold-set items"
                     if corrected_any else "")
        return Rendered(f"## Abstract\n\n{text}\n\nIntervals are 95%: exact (Clopper-Pearson, or Korn-Graubard over "
                        f"items that recur) for rates, a seeded studentized bootstrap over {many} for means"
                        f"{escape(corrected)}; {escape(low_n_text(many))}\\.")


@register_section
class Design(Section):
    """Methods: design matrix, N per cell, models, settings, parser, cost."""

    type = "design"
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        spec = ctx.spec
        parts = ["## Methods"]
        if spec.description:
            parts.append(escape(spec.description))
        factors = [(name, ", ".join(map(str, levels))) for name, levels in spec.design.factors.items()]
        factors += [(f"controls {i + 1}: {name}", ", ".join(map(str, levels)))
                    for i, block in enumerate(spec.design.controls) for name, levels in block.items()]
        factors.append(("seeds", f"{len(spec.design.seed_list)} ({', '.join(map(str, spec.design.seed_list))})"))
        parts.append(table(["Factor", "Levels"], factors, "Design matrix: factors are crossed; each control "
                           "block is crossed on its own and added as extra cells.", "tbl-design", ["l", "l"]))
        parts.append(table(["Cell", "Planned", "Finished", "Errors"],
                           [(cell_label(c.labels), c.planned, c.done, c.errors) for c in ctx.cells.itertuples()],
                           f"{ctx.scenario.unit[1].capitalize()} per design cell.", "tbl-cells"))
        used = {k for c in ctx.cells.itertuples() for k in ctx.scenario.cell_models(c.cell)}
        model_rows = []
        for key in sorted(used, key=lambda k: spec.models[k].params.effective_b):
            m = spec.models[key]
            model_rows.append((m.label, m.litellm_id, m.provider, m.family, f"{m.params.total_b:g}",
                               f"{m.params.active_b:g}" if m.params.active_b else "—",
                               "yes" if m.params.estimated else "no", "yes" if m.instruction_tuned else "no (base)"))
        if model_rows:
            parts.append(table(["Model", "litellm id", "Provider", "Family", "Params (B, total)", "Active (B)",
                                "Estimated", "Instruction-tuned"], model_rows, "Models under test. Estimated "
                               "parameter counts are not published by the provider.", "tbl-models",
                               ["l"] * 4 + ["r", "r", "l", "l"]))
        settings = generation_settings(spec)
        settings += ctx.scenario.method_settings(ctx.loaded.scenario_params)
        parts.append(table(["Setting", "Value"], settings, "Generation and scenario settings.", "tbl-settings",
                           ["l", "l"]))
        parts.append(table(["Metric", "Definition", "Interval"],
                           [(m.label, m.description, interval_text(m.kind, ctx.scenario.unit[1]))
                            for m in ctx.metrics.values()],
                           "Metric definitions; each is one query over the study database.", "tbl-metrics",
                           ["l", "l", "l"]))
        notes = ctx.scenario.method_notes(spec)
        u = ctx.usage
        notes.append(f"Model calls: {u['calls']:,} ({u['cache_hits']:,} served from the response cache), "
                     f"{u['prompt_tokens']:,} prompt and {u['completion_tokens']:,} completion tokens, "
                     f"${u['cost_usd']:.4f} at registry prices, {u['model_seconds']:.0f} s of model time.")
        if ctx.spec.judges:
            j = ctx.judge_usage
            notes.append(f"Judge calls: {j['calls']:,} ({j['cache_hits']:,} from the cache), {j['prompt_tokens']:,} "
                         f"prompt and {j['completion_tokens']:,} completion tokens, ${j['cost_usd']:.4f}, "
                         f"{j['model_seconds']:.0f} s of model time.")
        parts.append(bullet_list(escape(n) for n in notes))
        power = precision_markdown(ctx)
        if power:
            parts.append(power)
        return Rendered("\n\n".join(parts))


class TableOptions(Strict):
    type: str
    title: str | None = None
    metrics: list[str] | None = None
    split_by: str | None = None
    rows: Rows = "all"
    caption: str | None = None


def metric_table(ctx: ReportContext, options: TableOptions, label: str) -> str:
    names = options.metrics or list(ctx.scenario.headline_metrics)
    cells = select_cells(ctx, options.rows)
    groups = [(None, cells)]
    if options.split_by:
        key = lambda c: c.get(options.split_by, "—")  # noqa: E731
        levels = list(dict.fromkeys(key(c) for c in cells.cell))
        groups = [(lvl, cells[[key(c) == lvl for c in cells.cell]]) for lvl in levels]
    out = []
    for i, (level, group) in enumerate(groups):
        if group.empty:
            continue
        label_cols = [k for k in group.labels.iloc[0]
                      if not (options.split_by and k.lower() == options.split_by.lower())]
        headers = label_cols + [ctx.metrics[m].label for m in names] + ["Finished/planned"]
        rows = []
        for c in group.itertuples():
            rows.append([c.labels.get(k, "") for k in label_cols] + [fmt(ctx, c.cell_id, m) for m in names]
                        + [f"{c.done}/{c.planned}"])
        caption = options.caption or "Per-cell results"
        if level is not None:
            caption += f" — {options.split_by}: {level}"
        caption += (f". 95% intervals; {low_n_text(ctx.scenario.unit[1])}; Finished/planned counts the cell's "
                    f"{ctx.scenario.unit[1]}, not the units behind each estimate.")
        out.append(table(headers, rows, caption, f"{label}-{i}" if level is not None else label))
    return "\n\n".join(out) or "*No cells of this kind in this study\\.*"


@register_section
class HeadlineTable(Section):
    type = "headline_table"
    shows_results = True
    Options = TableOptions

    def check(self, options, scenario, key):
        for i, m in enumerate(options.metrics or []):
            check_metric(m, scenario, f"{key}.metrics.{i}")

    def render(self, ctx, options) -> Rendered:
        heading = f"## {escape(options.title)}\n\n" if options.title else ""
        label = f"tbl-{options.rows}-{content_hash([options.metrics, options.split_by, options.caption], 6)}"
        return Rendered(heading + metric_table(ctx, options, label))


def low_n_caption(points: list[dict], many: str) -> str:
    """A chart caption's note of the points (each a dict with n, low, label) resting on too few units."""
    flagged = [f"{p['label']} ({n_note(p['n'], p['low'])})" for p in points if low_n(p["n"], p["low"])]
    # Said in the caption itself, not only in the HTML's tooltips: the PDF has none.
    ns = sorted({int(p["n"]) for p in points})
    spread = "" if not ns else (f" Each point rests on {ns[0]} {many}." if len(ns) == 1 else
                                f" Each point rests on {ns[0]} to {ns[-1]} {many}.")
    if not flagged:
        return spread
    shown = "; ".join(flagged[:8]) + (f"; and {len(flagged) - 8} more" if len(flagged) > 8 else "")
    return (f"{spread} {len(flagged)} of {len(points)} points rest on fewer than {LOW_N} {many} or have no "
            f"interval: {shown}.")


def design_levels(spec, factor: str) -> list[str]:
    """A factor's levels in design order (factors, then control blocks)."""
    levels: list[str] = []
    for block in (spec.design.factors, *spec.design.controls):
        for level in block.get(factor, []):
            if str(level) not in levels:
                levels.append(str(level))
    return levels


@register_section
class Chart(Section):
    """A metric against parameter count or a design factor, one point and 95% interval per group of
    `color` factors (dodged so intervals do not overlap); `where` keeps only cells with those levels."""

    type = "chart"
    shows_results = True

    class Options(Strict):
        type: str
        metric: str
        x: str = "params"
        color: str | list[str] | None = None
        where: dict[str, str] = {}
        log_x: bool | None = Field(default=None, description="default: log scale for x: params only")
        rows: Rows = "models"
        caption: str | None = None

    def check(self, options, scenario, key):
        check_metric(options.metric, scenario, f"{key}.metric")

    def render(self, ctx, options) -> Rendered:
        metric = ctx.metrics[options.metric]
        colors = [options.color] if isinstance(options.color, str) else list(options.color or [])
        group = "_".join(colors) or None

        def shown(factor: str, value: object) -> str:
            key = str(value)
            return ctx.spec.models[key].label if key in ctx.spec.models else key

        data = []
        for c in select_cells(ctx, options.rows).itertuples():
            if any(str(c.cell.get(k, "—")) != str(v) for k, v in options.where.items()):
                continue
            est = ctx.estimate(c.cell_id, options.metric)
            if est.n == 0:
                continue
            if options.x == "params":
                models = ctx.scenario.cell_models(c.cell)
                if not models:
                    continue
                x = ctx.spec.models[models[0]].params.effective_b
            else:
                x = c.cell.get(options.x, "—")
            row = {"x": x, "value": est.value, "low": est.low, "high": est.high, "n": int(est.n),
                   "label": cell_label(c.labels)}
            if group:
                row[group] = " / ".join(shown(f, c.cell.get(f, "—")) for f in colors)
            data.append(row)
        where = ", ".join(f"{k} = {v}" for k, v in options.where.items())
        label = "-".join(["fig", options.metric, options.x, *colors,
                          *([options.rows] if options.rows != "models" else [])]).replace("_", "-")
        if options.where:
            label += "-" + content_hash(options.where, 6)
        if not data:
            return Rendered(f"*No finished {ctx.scenario.unit[1]} to plot for {escape(metric.label)}"
                            f"{escape(' (' + where + ')') if where else ''}\\.*")
        frame = pd.DataFrame(data)
        numeric = pd.api.types.is_numeric_dtype(frame["x"]) and not pd.api.types.is_bool_dtype(frame["x"])
        if not numeric:  # levels in design order, not alphabetical
            rank = {level: i for i, level in enumerate(design_levels(ctx.spec, options.x))}
            frame = frame.assign(x=frame["x"].astype(str)).sort_values(
                "x", key=lambda col: col.map(lambda v: rank.get(v, len(rank))), kind="stable")
        log_x = ((options.x == "params") if options.log_x is None else options.log_x) and numeric
        x_text = "parameter count (billions)" if options.x == "params" else options.x
        caption = options.caption or (f"{metric.label} against {x_text}" + (", log scale" if log_x else "")
                                      + (f", by {' and '.join(colors)}" if colors else "")
                                      + (f" ({where})" if where else "") + "; bars are 95% intervals.")
        caption += low_n_caption(data, ctx.scenario.unit[1])
        spec = estimate_chart(frame, x="x", x_title="Parameters (B)" if options.x == "params" else options.x,
                              y_title=metric.label, color=group, log_x=log_x,
                              percent=metric.percent, nominal_x=not numeric)
        return Rendered(f"@@FIGURE:{label}@@", [Figure(label, caption, spec)])


def exclusion_counts(ctx: ReportContext) -> dict[str, object]:
    """What sits outside the results' denominators, counted from the database: trials ended in an
    error, model replies that failed to parse (in the trials' last attempts; each was re-asked),
    and judge verdicts with status error (label ERROR) per current judge, on finished trials.
    `scenario` holds what the scenario counts itself (Scenario.exclusions: {description: count},
    e.g. jailbreak's NOT_GRADEABLE traces), so the caveats never claim "no errors" over units a
    scenario left out."""
    params = {"spec_hash": ctx.spec_hash}
    parse_failed = ctx.con.execute(
        f"SELECT count(*) FROM calls c JOIN {ATTEMPTED} t ON t.trial_id = c.trial_id AND c.trial_attempt = t.attempt"
        " WHERE c.parse_status = 'failed' AND NOT starts_with(c.purpose, 'judge/')", params).fetchone()[0]
    judge_errors = {}
    for judge in make_judges(ctx.spec):
        judge_errors[judge.spec.display_name] = ctx.con.execute(
            f"SELECT count(*) FROM verdicts v JOIN {FINISHED} t ON t.trial_id = v.subject_id"
            f" WHERE {verdict_match('v')} AND v.status = 'error'", params | verdict_params(judge)).fetchone()[0]
    return {"errors": int(ctx.trial_counts["errors"]), "parse_failed": int(parse_failed),
            "judge_errors": {k: int(v) for k, v in judge_errors.items()},
            "scenario": {k: int(v) for k, v in ctx.scenario.exclusions(ctx).items()}}


def exclusions_sentence(ctx: ReportContext, table_follows: bool) -> str:
    """The caveats' first line: every count of units outside the denominators, never "no errors"
    while one of them is non-zero."""
    one, many = ctx.scenario.unit
    counts = exclusion_counts(ctx)
    judged = counts["judge_errors"]
    total_judge = sum(judged.values())
    others = {k: v for k, v in counts["scenario"].items() if v}
    if not (counts["errors"] or counts["parse_failed"] or total_judge or others):
        return (f"No {one} ended in an error, no reply failed to parse"
                + (" and no judge verdict is an error." if judged else "."))
    parts = [f"{counts['errors']} {many if counts['errors'] != 1 else one} ended in an error (excluded from every "
             "result)",
             f"{counts['parse_failed']} model {'reply' if counts['parse_failed'] == 1 else 'replies'} failed to parse "
             "(each re-asked, never read as a move)"]
    if judged:
        per = ", ".join(f"{name}: {n}" for name, n in judged.items())
        parts.append(f"{total_judge} judge {'verdict is an error' if total_judge == 1 else 'verdicts are errors'} "
                     f"(label ERROR; {per}), outside every denominator that reads that judge")
    parts += [f"{n} {what}" for what, n in others.items()]
    return ("Errors and exclusions: " + "; ".join(parts) + "."
            + (" Cells with parse failures or errors:" if table_follows else ""))


def thin_estimates(ctx: ReportContext) -> list[str]:
    """Headline estimates (cell and metric) resting on fewer than LOW_N units or without an interval."""
    out = []
    for c in ctx.cells.itertuples():
        for name in ctx.scenario.headline_metrics:
            if name not in ctx.metrics or name in ("parse_failure_rate", "error_rate"):
                continue
            est = ctx.estimate(c.cell_id, name)
            if est.n > 0 and low_n(est.n, est.low):
                out.append(f"{ctx.metrics[name].label} in {cell_label(c.labels)} ({n_note(est.n, est.low)}; "
                           f"{c.done} finished in the cell)")
    return out


@register_section
class Caveats(Section):
    """Limits of this run, generated from the data."""

    type = "caveats"

    class Options(Strict):
        type: str
        small_n: int = Field(default=30, gt=0)

    def render(self, ctx, options) -> Rendered:
        one, many = ctx.scenario.unit
        items = []
        rows = []
        for c in ctx.cells.itertuples():
            pf = ctx.estimate(c.cell_id, "parse_failure_rate") if "parse_failure_rate" in ctx.metrics else None
            er = ctx.estimate(c.cell_id, "error_rate") if "error_rate" in ctx.metrics else None
            if (pf is not None and pf.n and pf.value > 0) or c.errors:
                rows.append((cell_label(c.labels), pct(pf.value) if pf is not None else "—",
                             f"{c.errors} of {c.errors + c.done}", pct(er.value) if er is not None else "—"))
        scenario_items = ctx.scenario.caveats(ctx)
        items.append(exclusions_sentence(ctx, bool(rows)))
        small = [cell_label(c.labels) for c in ctx.cells.itertuples() if c.done < options.small_n]
        if small:
            items.append(f"{len(small)} of {len(ctx.cells)} cells have fewer than {options.small_n} finished {many}; "
                         "their intervals are wide and differences between them should not be over-read.")
        thin = thin_estimates(ctx)
        if thin:
            shown = "; ".join(thin[:6]) + (f"; and {len(thin) - 6} more" if len(thin) > 6 else "")
            items.append(f"{len(thin)} headline estimates rest on fewer than {LOW_N} {many} or have no interval "
                         f"(marked 'low n' or 'no interval' where printed), whatever their cell's number of finished "
                         f"{many}: {shown}.")
        used = {k for c in ctx.cells.itertuples() for k in ctx.scenario.cell_models(c.cell)}
        estimated = sorted(ctx.spec.models[k].display_name for k in used if ctx.spec.models[k].params.estimated)
        if estimated:
            items.append("Parameter counts are estimates, not published figures, for: " + ", ".join(estimated) + ".")
        items += scenario_items
        md = ["## Caveats", bullet_list(escape(i) for i in items[:1])]
        if rows:
            md.append(table(["Cell", "Parse failures", f"Errored {many}", "Error rate"], rows,
                            "Cells with parse failures or errors.", "tbl-failures"))
        if len(items) > 1:
            md.append(bullet_list(escape(i) for i in items[1:]))
        return Rendered("\n\n".join(md))


@register_section
class Reproducibility(Section):
    type = "reproducibility"
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        s = ctx.study_row
        rows = [("spec hash", ctx.spec_hash), ("engine version", s["engine_version"]),
                ("git commit", s["git_sha"] or "unknown"), ("database", ctx.db_path),
                ("first run", str(s["created_at"]))]
        rows += [(f"package {k}", v) for k, v in sorted(s["package_versions"].items())]
        command = ctx.loaded.reproduce_command
        return Rendered("## Reproducibility\n\n"
                        + table(["Item", "Value"], rows, "Versions and identifiers of this run.", "tbl-repro",
                                ["l", "l"])
                        + "\n\nTo reproduce (the response cache makes a rerun of a finished study call no model):"
                        + "\n\n" + code_block(command))
