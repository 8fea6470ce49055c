"""The comparison as the terminal shows it (one row per metric and matched cell) and as a report
(HTML and PDF, through the report writer), rendered from the computed Comparison alone."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from engine.compare.comparison import Comparison
from engine.compare.sections import CompareContext, change_text, estimate_text, sections
from engine.report.sections.paired_contrasts import n_text, p_text
from engine.report.writer import Report, write_report

DEFAULT_PARENT = Path("reports")


def report_dir(comparison: Comparison) -> Path:
    """reports/compare-<A>-vs-<B>/ (each side as its study and spec version)."""
    return DEFAULT_PARENT / f"compare-{comparison.slug}"


def terminal_table(comparison: Comparison) -> pd.DataFrame:
    """Metric, cell, A and B (estimate and n; their intervals are in the report), B − A [95% CI], its n,
    pairing and Holm p: one row per metric and cell, narrow enough for a log."""
    ctx = CompareContext(comparison)
    rows = []
    for result in comparison.results:
        percent = result.metric.percent
        for row in result.rows:
            c = row.contrast
            rows.append({"Metric": result.metric.label, "Cell": ctx.row_name(row),
                         "A": estimate_text(row.a, percent, without_interval=True),
                         "B": estimate_text(row.b, percent, without_interval=True),
                         "B − A [95% CI]": change_text(row, percent), "n": n_text(c) if c else "—",
                         "Pairing": ("paired" if c.paired else "unpaired") if c else "—",
                         "Holm p": p_text(c.holm_p) if c else "—"})
    return pd.DataFrame(rows)


def terminal_title(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    return (f"B − A: A = {a.short} ({a.db_path.name}), B = {b.short} ({b.db_path.name}); 95% intervals, Holm across "
            f"{comparison.family} comparisons")


def build_compare_report(comparison: Comparison, out_dir: Path | None = None, *,
                         formats: tuple[str, ...] = ("html", "pdf"), force_pandoc: bool = False) -> Report:
    ctx = CompareContext(comparison)
    rendered = [section.render(ctx, options) for section, options in sections(comparison)]
    a, b = comparison.a, comparison.b
    newest = max(str(a.record["created_at"]), str(b.record["created_at"]))
    front = {"title": f"{b.spec.title} against {a.spec.title}" if a.spec.title != b.spec.title
             else f"{a.spec.title}: two spec versions compared",
             "subtitle": f"B − A, A = {a.short}, B = {b.short}",
             "date": newest[:10] or datetime.now().date().isoformat()}
    return write_report(out_dir or report_dir(comparison), front, rendered, formats, force_pandoc)
