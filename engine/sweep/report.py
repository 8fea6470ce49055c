"""The sweep report: the jobs of a Hydra multirun in one document, built from the report stage's
sections and writer (engine/sweep/sections.py beside it, engine/report/writer.py)."""

from __future__ import annotations

from pathlib import Path

from engine.kernel.errors import ReportError
from engine.report.catalog import validate_sections
from engine.report.context import ReportContext
from engine.sweep.sections import SweepPoint, SweepReportContext
from engine.report.writer import Report, write_report
from engine.store.db import StudyStore
from engine.sweep.expand import Sweep


def sweep_metrics(ctx: ReportContext) -> list[str]:
    """`report.sweep_metrics`, else the metrics the study's own report sections show."""
    spec = ctx.spec
    if spec.report.sweep_metrics:
        return list(spec.report.sweep_metrics)
    named: list[str] = []
    for _, options in validate_sections(spec.report.sections, ctx.scenario):
        named += list(getattr(options, "metrics", None) or [])
        named += [m for m in [getattr(options, "metric", None)] if isinstance(m, str)]
    return list(dict.fromkeys(named)) or list(ctx.scenario.headline_metrics)


def build_sweep_report(sweep: Sweep, *, formats: tuple[str, ...] = ("html", "pdf"),
                       out_dir: Path | None = None, force_pandoc: bool = False) -> Report:
    first = sweep.jobs[0].loaded
    scenario = first.scenario
    db_path = sweep.store_path
    if not db_path.exists():
        raise ReportError(f"{db_path} does not exist: run the sweep first")
    store = StudyStore(db_path, read_only=True)
    try:
        merged = {h for (h,) in store.con.execute("SELECT spec_hash FROM sweep_jobs WHERE sweep_id = ?",
                                                  [sweep.sweep_id]).fetchall()}
        missing = [j.index for j in sweep.jobs if j.loaded.spec_hash not in merged]
        if missing:
            raise ReportError(f"sweep {sweep.sweep_id} has no merged results for job(s) {missing} in {db_path}: "
                              "run the sweep first (same command with `run`)")
        points = [SweepPoint(j, ReportContext(j.loaded, store.con, scenario, str(db_path))) for j in sweep.jobs]
        ctx = SweepReportContext(first, store.con, scenario, str(db_path), sweep=sweep, points=points)
        raw = [{"type": "sweep_overview"}] + [{"type": "sweep_metric", "metric": m} for m in sweep_metrics(ctx)]
        rendered = [section.render(ctx, options) for section, options in validate_sections(raw, scenario, sweep=True)]
        created = points[-1].ctx.study_row["created_at"]
    finally:
        store.close(checkpoint=False)
    front = {"title": f"{first.spec.title}: sweep over {', '.join(sweep.keys) or 'one setting'}",
             "subtitle": f"Study {first.spec.name}, sweep {sweep.sweep_id}, {len(sweep.jobs)} jobs",
             "date": str(created)[:10]}
    return write_report(out_dir or sweep_report_dir(sweep), front, rendered, formats, force_pandoc)


def sweep_report_dir(sweep: Sweep) -> Path:
    return Path(f"{sweep.jobs[0].loaded.spec.report.output_dir}_sweeps") / sweep.sweep_id

