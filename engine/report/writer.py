"""Rendered sections -> a Quarto project (index.qmd, _quarto.yml, figures) -> HTML and PDF, built in a
work folder next to the target and swapped in whole, so a failed render leaves the old report.

The writer places the text it is given by contract as plain text: the front matter's values and the
figures' captions go through `escape` here (sections pass them unescaped); a chart's every string
goes through `chart_safe`, and a chart that cannot be drawn becomes a note in its place."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from engine.kernel.contracts import Figure, Rendered
from engine.kernel.errors import ReportError
from engine.report.charts import ChartNotDrawn, chart_safe, to_svg
from engine.report.markdown import escape, raw_html_block
from engine.report.render import Outputs, render, report_formats, safety_net
from engine.spec.schema import BASE_MODEL_MARK, BASE_MODEL_NOTE


@dataclass(frozen=True)
class Report:
    out_dir: Path
    outputs: Outputs
    figures: int


# A figure's label names its element id and files (figure_block): letters, digits, '-' and '_' only.
FIGURE_LABEL = re.compile(r"fig-[A-Za-z0-9_-]+")


def figure_block(fig: Figure, not_drawn: str | None = None) -> str:
    """A Quarto figure: interactive chart in HTML, static SVG in every other format; or, for a chart
    that could not be drawn, a note saying why, in every format. The caption is plain text. A chart
    that shows a base model's numbers says what they are under it."""
    caption = fig.caption
    if BASE_MODEL_MARK in json.dumps(fig.vega_lite, ensure_ascii=False, default=str):
        caption += " " + BASE_MODEL_NOTE
    if not_drawn is not None:
        body = f"*{escape(f'This chart is not drawn: {not_drawn}.')}*\n"
    else:
        chart = raw_html_block(f'<div class="vega-chart" id="vis-{fig.label}"></div>')
        body = (f"::: {{.content-visible when-format=\"html\"}}\n{chart}\n:::\n"
                f"::: {{.content-visible unless-format=\"html\"}}\n"
                f"![](figures/{fig.label}.svg){{width=100%}}\n:::\n")
    return f"::: {{#{fig.label}}}\n{body}\n{escape(caption)}\n:::"


def _draw(figures: list[Figure], folder: Path) -> tuple[list[Figure], dict[str, str]]:
    """Each chart made safe and drawn to figures/<label>.svg (with its spec beside it). Returns the
    charts drawn and, for every other one, why it was not."""
    drawn, not_drawn = [], {}
    for fig in figures:
        if not FIGURE_LABEL.fullmatch(fig.label):
            raise ValueError(f"a figure's label is 'fig-' and letters, digits, '-' or '_': {fig.label!r}")
        safe = Figure(fig.label, fig.caption, chart_safe(fig.vega_lite))
        try:
            svg = to_svg(safe.vega_lite)
        except ChartNotDrawn as why:
            not_drawn[fig.label] = str(why)
            continue
        (folder / f"{fig.label}.svg").write_text(svg)
        (folder / f"{fig.label}.vl.json").write_text(json.dumps(safe.vega_lite))
        drawn.append(safe)
    return drawn, not_drawn


def _write_within(work: Path, name: str, text: str) -> None:
    """A section's file at its relative path inside the report folder (never outside it)."""
    path = (work / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(work.resolve()) or path.parent == work.resolve() / "figures":
        raise ValueError(f"a section's file must be a relative path inside the report, not in figures/: {name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# A render builds in a work folder `.<target>-<8 characters>` next to its target and renames it at
# the end. The folder records who builds in it; a render first removes the work folders of its
# target that earlier renders, killed before they could clean up, left behind.
WORK_RECORD = ".render.json"
STALE_AFTER_S = 15 * 60       # a work folder with no live owner on record is stale once untouched this long
RENDER_MAX_S = 6 * 60 * 60    # no render takes this long: past it a recorded pid is taken to be reused


def _work_pattern(target: Path) -> re.Pattern[str]:
    # 8 characters: this module's hex names and tempfile.mkdtemp's (earlier versions of this module).
    return re.compile(rf"\.{re.escape(target.name)}-[a-z0-9_]{{8}}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    return True


def _work_in_use(work: Path, now: float) -> bool:
    """Whether a render may still be building in `work`: its recorded process (on this host) is alive,
    or, with no record to check, the folder changed in the last STALE_AFTER_S."""
    try:
        record = json.loads((work / WORK_RECORD).read_text())
    except (OSError, ValueError):
        record = None
    if (isinstance(record, dict) and isinstance(record.get("pid"), int) and record.get("host") == socket.gethostname()
            and isinstance(record.get("started"), (int, float))):
        pid = record["pid"]
        return pid != os.getpid() and _pid_alive(pid) and now - record["started"] < RENDER_MAX_S
    try:
        return now - work.stat().st_mtime < STALE_AFTER_S
    except OSError:
        return True  # gone already, or not ours to judge


def remove_stale_work(target: Path) -> list[Path]:
    """Remove the work folders of this report target that no running render uses (left by renders
    that were killed); other targets' folders are never touched. Returns what was removed."""
    pattern, now, removed = _work_pattern(target), time.time(), []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for path in entries:
        if not pattern.fullmatch(path.name) or path.is_symlink() or not path.is_dir() or _work_in_use(path, now):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _new_work_dir(target: Path) -> Path:
    """An empty work folder next to the target, with the permissions os.makedirs gives (0o777 less
    the umask), not mkdtemp's 0700: the folder becomes the report folder as it is."""
    for _ in range(100):
        work = target.parent / f".{target.name}-{secrets.token_hex(4)}"
        try:
            work.mkdir()
        except FileExistsError:
            continue
        return work
    raise ReportError(f"could not create a work folder next to {target}")


def _swap_in(work: Path, target: Path) -> None:
    """`work` becomes `target`; the old report is moved aside first and removed only once the new
    one is in place (a failure on the way puts it back)."""
    if not target.exists():
        work.rename(target)
        return
    old = _new_work_dir(target)  # a name the stale-work sweep removes, should this process die here
    old.rmdir()
    target.rename(old)
    try:
        work.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_outputs(outputs: Outputs, formats: tuple[str, ...]) -> None:
    """Every format asked for was written and is not empty: only a complete report replaces the old."""
    for name, path in (("html", outputs.html), ("pdf", outputs.pdf)):
        if name in formats and (path is None or not path.exists() or path.stat().st_size == 0):
            raise ReportError(f"the {name.upper()} output was not written")


def write_report(out_dir: Path, front: dict, rendered: list[Rendered], formats: tuple[str, ...],
                 force_pandoc: bool = False) -> Report:
    """Rendered sections -> a Quarto project with figures -> HTML/PDF in `out_dir`, swapped in whole.
    `front`'s values are plain text (title, subtitle, date); an unknown format is a ValueError raised
    before anything is written."""
    formats = report_formats(formats)
    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_work(target)
    # Build next to the target and swap at the end: a failed render leaves the old report intact.
    work = _new_work_dir(target)
    try:
        (work / WORK_RECORD).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                    "started": time.time(), "target": target.name}))
        figures = [f for r in rendered for f in r.figures]
        (work / "figures").mkdir()
        drawn, not_drawn = _draw(figures, work / "figures")
        for r in rendered:
            for name, text in r.files.items():
                _write_within(work, name, text)
        body = "\n\n".join(r.markdown for r in rendered)
        for fig in figures:
            body = body.replace(f"@@FIGURE:{fig.label}@@", figure_block(fig, not_drawn.get(fig.label)))
        # Plain text, escaped as Markdown: pandoc and Quarto read front-matter strings as Markdown.
        front = {**{k: escape(v) for k, v in front.items()},
                 "format": {"html": {"embed-resources": True, "toc": True}, "typst": {"toc": False}},
                 **safety_net(work)}
        qmd = work.resolve() / "index.qmd"
        qmd.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body + "\n")
        (work / "_quarto.yml").write_text(yaml.safe_dump({"project": {"type": "default", "output-dir": "."}}))
        outputs = render(qmd, drawn, formats, force_pandoc=force_pandoc)
        _check_outputs(outputs, formats)
        (work / WORK_RECORD).unlink()
        _swap_in(work, target)
    except ReportError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ReportError(f"report {target} not updated: {exc}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    moved = lambda p: target / p.name if p else None  # noqa: E731
    return Report(target, Outputs(target / "index.qmd", moved(outputs.html), moved(outputs.pdf), outputs.engine),
                  len(drawn))
