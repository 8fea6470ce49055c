"""Report stage: the study database -> a Quarto project (.qmd, _quarto.yml, figures) -> HTML + PDF.

Results are computed here, before rendering, so no code runs at render time; every number in the
document comes from a query over the study database.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from engine.report.charts import to_svg
from engine.report.context import ReportContext
from engine.report.render import Outputs, render
from engine.report.sections import Figure, Rendered, validate_sections
from engine.scenarios import get_scenario
from engine.spec.load import LoadedSpec, load_spec
from engine.store.db import StudyStore


class ReportError(Exception):
    """The report cannot be built from what the database holds."""


@dataclass(frozen=True)
class Report:
    out_dir: Path
    outputs: Outputs
    figures: int


def figure_block(fig: Figure) -> str:
    """A Quarto figure: interactive chart in HTML, static SVG in every other format."""
    return (f"::: {{#{fig.label}}}\n"
            f"::: {{.content-visible when-format=\"html\"}}\n"
            f"```{{=html}}\n<div class=\"vega-chart\" id=\"vis-{fig.label}\"></div>\n```\n:::\n"
            f"::: {{.content-visible unless-format=\"html\"}}\n"
            f"![](figures/{fig.label}.svg){{width=100%}}\n:::\n\n"
            f"{fig.caption}\n:::")


def build_report(study: str, overrides: list[str] | tuple[str, ...] = (), *, formats: tuple[str, ...] = ("html", "pdf"),
                 out_dir: Path | None = None, force_pandoc: bool = False) -> Report:
    loaded = load_spec(study, overrides)
    return build_report_for(loaded, formats=formats, out_dir=out_dir, force_pandoc=force_pandoc)


def build_report_for(loaded: LoadedSpec, *, formats: tuple[str, ...] = ("html", "pdf"), out_dir: Path | None = None,
                     force_pandoc: bool = False) -> Report:
    spec = loaded.spec
    scenario = get_scenario(spec.scenario["name"])
    sections = validate_sections(spec.report.sections, scenario)
    db_path = Path(spec.store.path)
    if not db_path.exists():
        raise ReportError(f"{db_path} does not exist: run the study first (make study STUDY={spec.name})")
    store = StudyStore(db_path, read_only=True)
    try:
        if not store.con.execute("SELECT count(*) FROM studies WHERE spec_hash = ?", [loaded.spec_hash]).fetchone()[0]:
            raise ReportError(f"{db_path} has no run of this spec (hash {loaded.spec_hash}): run the study with the "
                              "same settings first")
        ctx = ReportContext(loaded, store.con, scenario, str(db_path))
        rendered = [section.render(ctx, options) for section, options in sections]
        created = ctx.study_row["created_at"]
    finally:
        store.close(checkpoint=False)

    front = {"title": spec.title, "subtitle": f"Study {spec.name}, spec {loaded.spec_hash}", "date": str(created)[:10]}
    return write_report(out_dir or Path(spec.report.output_dir), front, rendered, formats, force_pandoc)


def write_report(out_dir: Path, front: dict, rendered: list[Rendered], formats: tuple[str, ...],
                 force_pandoc: bool = False) -> Report:
    """Rendered sections -> a Quarto project with figures -> HTML/PDF in `out_dir`, swapped in whole."""
    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target and swap at the end: a failed render leaves the old report intact.
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        figures = [f for r in rendered for f in r.figures]
        (work / "figures").mkdir()
        for fig in figures:
            (work / "figures" / f"{fig.label}.svg").write_text(to_svg(fig.vega_lite))
            (work / "figures" / f"{fig.label}.vl.json").write_text(json.dumps(fig.vega_lite))
        body = "\n\n".join(r.markdown for r in rendered)
        for fig in figures:
            body = body.replace(f"@@FIGURE:{fig.label}@@", figure_block(fig))
        front = {**front, "format": {"html": {"embed-resources": True, "toc": True}, "typst": {"toc": False}}}
        qmd = work.resolve() / "index.qmd"
        qmd.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body + "\n")
        (work / "_quarto.yml").write_text(yaml.safe_dump({"project": {"type": "default", "output-dir": "."}}))
        outputs = render(qmd, figures, formats, force_pandoc=force_pandoc)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    moved = lambda p: target / p.name if p else None  # noqa: E731
    return Report(target, Outputs(target / "index.qmd", moved(outputs.html), moved(outputs.pdf), outputs.engine),
                  len(figures))
