"""The sections of a sweep report (one document comparing the jobs of a Hydra multirun): an
overview of the jobs, and one section per metric with the swept setting on the x axis and 95%
intervals per cell, computed per job exactly as in a study report. Built by engine/sweep/report.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from engine.analyze.summary import LOW_N, format_estimate
from engine.report.sections.builtin import cell_label, low_n_caption, select_cells
from engine.report.charts import estimate_chart
from engine.report.context import ReportContext
from engine.report.markdown import code_block, escape, table
from engine.kernel.contracts import check_metric, Figure, NoOptions, Rendered, Section
from engine.kernel.registry import register_section
from engine.kernel.records import Strict

if TYPE_CHECKING:
    from engine.sweep import Sweep, SweepJob


@dataclass
class SweepPoint:
    job: "SweepJob"
    ctx: ReportContext  # the job's own study context: its cells, estimates and counts


@dataclass
class SweepReportContext(ReportContext):
    sweep: "Sweep | None" = None
    points: list[SweepPoint] = field(default_factory=list)

    def x_title(self) -> str:
        return self.sweep.keys[0] if self.sweep.keys else "job"

    def x_value(self, point: SweepPoint) -> str:
        return point.job.swept[self.sweep.keys[0]] if self.sweep.keys else str(point.job.index)

    def series_suffix(self, point: SweepPoint) -> str:
        """The other swept keys' values, so jobs that share an x value stay apart."""
        return "".join(f" · {k}={point.job.swept[k]}" for k in self.sweep.keys[1:])


def job_label(job: "SweepJob") -> str:
    return ", ".join(f"{k}={v}" for k, v in job.swept.items()) or f"job {job.index}"


@register_section
class SweepOverview(Section):
    """What was swept, and each job's size, outcome and the command that reruns it alone."""

    type = "sweep_overview"
    Options = NoOptions
    sweep_only = True

    def render(self, ctx, options) -> Rendered:
        sweep = ctx.sweep
        many = ctx.scenario.unit[1]
        keys = ", ".join(sweep.keys) or "nothing (one job)"
        rows = []
        for p in ctx.points:
            counts = p.ctx.trial_counts
            rows.append((p.job.index, job_label(p.job), p.ctx.spec_hash, counts["planned"], counts["done"],
                         counts["errors"]))
        text = (f"## Sweep\n\nThis sweep ran the study {escape(ctx.spec.name)} {len(ctx.points)} times, once per "
                f"setting of {escape(keys)}; every job is a complete run of the study with its own overrides, "
                f"stored in the study database ({escape(ctx.db_path)}) under its own spec hash and tagged with its "
                f"swept values (table sweep\\_jobs, sweep {escape(sweep.sweep_id)})\\. The sections below put the "
                f"swept setting on the x axis: one section per metric, 95% intervals per cell, computed per job "
                f"exactly as in a single study report\\.")
        tbl = table(["Job", "Setting", "Spec", "Planned", "Finished", "Errors"], rows,
                    f"Jobs of sweep {sweep.sweep_id}: {many} planned, finished and ended in an error.",
                    "tbl-sweep-jobs")
        commands = code_block("\n".join([f"# the sweep\n{sweep.command}"] + [
            f"# job {p.job.index} alone (the same trials)\n{p.job.loaded.reproduce_command}" for p in ctx.points]), "bash")
        return Rendered(f"{text}\n\n{tbl}\n\nTo rerun (finished trials are read back from the database):\n\n{commands}")


@register_section
class SweepMetric(Section):
    """One metric across the sweep's settings: a chart (x = the swept setting) and a table."""

    type = "sweep_metric"
    sweep_only = True

    class Options(Strict):
        type: str
        metric: str
        rows: str = "all"  # all | models | controls

    def check(self, options, scenario, key):
        check_metric(options.metric, scenario, f"{key}.metric")

    def render(self, ctx, options) -> Rendered:
        metric = ctx.metrics[options.metric]
        data, cells_by_label = [], {}
        for p in ctx.points:
            for c in select_cells(p.ctx, options.rows).itertuples():
                est = p.ctx.estimate(c.cell_id, options.metric)
                label = cell_label(c.labels) + ctx.series_suffix(p)
                cells_by_label.setdefault(label, {})[ctx.x_value(p)] = est
                if est.n > 0:
                    data.append({"x": ctx.x_value(p), "value": est.value, "low": est.low, "high": est.high,
                                 "n": int(est.n), "label": label, "series": label})
        xs = list(dict.fromkeys(ctx.x_value(p) for p in ctx.points))
        rows = [(label, *[_fmt(by_x.get(x), metric.percent) for x in xs]) for label, by_x in cells_by_label.items()]
        name = options.metric.replace("_", "-")
        caption = (f"{metric.label} against {ctx.x_title()}; one point per cell and setting; bars are 95% "
                   "intervals." + low_n_caption([{**d, "label": f"{d['label']} at {ctx.x_title()}={d['x']}"} for d in data],
                                              ctx.scenario.unit[1]))
        parts = [f"## {escape(metric.label)} across {escape(ctx.x_title())}"]
        if data:
            frame = pd.DataFrame(data)
            numeric = all(_is_number(x) for x in frame["x"])
            if numeric:
                frame["x"] = frame["x"].astype(float)
            spec = estimate_chart(frame, x="x", x_title=ctx.x_title(), y_title=metric.label, color="series",
                                  log_x=False, percent=metric.percent, nominal_x=not numeric)
            figure = Figure(f"fig-sweep-{name}", caption, spec)
            parts.append(f"@@FIGURE:{figure.label}@@")
        else:
            figure = None
            parts.append(f"*No finished {ctx.scenario.unit[1]} to plot\\.*")
        parts.append(table(["Cell", *[f"{ctx.x_title()}={x}" for x in xs]], rows,
                           f"{metric.label} per cell and setting: estimate [95% interval] (n, the "
                           f"{ctx.scenario.unit[1]} behind it; {_LOW}).",
                           f"tbl-sweep-{name}"))
        return Rendered("\n\n".join(parts), [figure] if figure else [])


_LOW = f"'low n' marks fewer than {LOW_N}, 'no interval' an estimate with no interval"


def _fmt(est: pd.Series | None, percent: bool) -> str:
    if est is None or est.n == 0:
        return "—"
    return format_estimate(est.value, est.low, est.high, percent, n=int(est.n))


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False
