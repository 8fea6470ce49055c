"""The report of one study: the study database -> its sections, rendered -> HTML + PDF.

Results are computed here, before rendering, so no code runs at render time; every number in the
document comes from a query over the study database.
"""

from __future__ import annotations

import gc
from pathlib import Path

import duckdb

from engine.kernel.errors import ReportError
from engine.report.catalog import validate_sections
from engine.report.context import ReportContext
from engine.report.sections.preregistration import register_study
from engine.report.writer import Report, write_report
from engine.spec.load import LoadedSpec
from engine.store.db import StoreBusy, StudyStore


def record_registration(db_path: Path, loaded: LoadedSpec) -> None:
    """A change of the claims, primary contrasts or analysis settings since the registration, recorded the
    first time a report sees it (the report is the one writer of the study while it renders). A database
    this process may not write (a read-only copy, or one another process is reading) is reported as it
    is: its section then says the change is not on record."""
    try:
        store = StudyStore(db_path)
    except (duckdb.IOException, StoreBusy):
        return
    try:
        if store.has_study(loaded.spec_hash):
            register_study(store.con, loaded, "report")
    finally:
        store.close()


def build_report_for(loaded: LoadedSpec, *, formats: tuple[str, ...] = ("html", "pdf"), out_dir: Path | None = None,
                     force_pandoc: bool = False) -> Report:
    spec = loaded.spec
    scenario = loaded.scenario
    sections = validate_sections(spec.report.sections, scenario)
    db_path = Path(spec.store.path)
    if not db_path.exists():
        raise ReportError(f"{db_path} does not exist: run the study first (make study STUDY={spec.name})")
    record_registration(db_path, loaded)
    store = StudyStore(db_path, read_only=True)
    # What is loaded so far lives until the report is written: keep it out of every garbage collection
    # the sections cause (statsmodels' Holm correction runs a full one per call: 0.2 s each here).
    gc.freeze()
    try:
        if not store.con.execute("SELECT count(*) FROM studies WHERE spec_hash = ?", [loaded.spec_hash]).fetchone()[0]:
            raise ReportError(f"{db_path} has no run of this spec (hash {loaded.spec_hash}): run the study with the "
                              "same settings first")
        ctx = ReportContext(loaded, store.con, scenario, str(db_path))
        rendered = [section.render(ctx, options) for section, options in sections]
        created = ctx.study_row["created_at"]
    finally:
        store.close(checkpoint=False)
        gc.unfreeze()

    front = {"title": spec.title, "subtitle": f"Study {spec.name}, spec {loaded.spec_hash}", "date": str(created)[:10]}
    return write_report(out_dir or Path(spec.report.output_dir), front, rendered, formats, force_pandoc)
