"""Render the Quarto project to HTML and PDF: with Quarto when it is installed, otherwise with
pandoc (pypandoc-binary) to HTML and pandoc -> typst -> PDF (the `typst` package)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.kernel.errors import ReportError
from engine.kernel.contracts import Figure
from engine.report.markdown import RAW_TOKEN, json_script_text

# The formats a report renders to (`--formats`, `formats=`).
FORMATS = ("html", "pdf")
FILTER = Path(__file__).parent / "filters" / "crossref.lua"
# Runs first: raw markup, links and images that the engine did not place are shown as text. Quarto
# runs it from the front matter (user filters run before its own), pandoc from the command line.
SANITIZE = Path(__file__).parent / "filters" / "sanitize.lua"
SANITIZE_COPY = "_sanitize.lua"


def safety_net(folder: Path) -> dict[str, object]:
    """Front-matter entries (and a copy of the filter in `folder`) that make both renderers run the
    sanitize filter with this process's raw-block token."""
    shutil.copyfile(SANITIZE, folder / SANITIZE_COPY)
    return {"filters": [SANITIZE_COPY], "engine-raw-token": RAW_TOKEN}
CSS = """
body { max-width: 52rem; margin: 2rem auto; padding: 0 1rem; font-family: Georgia, 'Times New Roman', serif;
       line-height: 1.5; color: #1a1a1a; }
h1, h2, h3 { font-family: 'Helvetica Neue', Arial, sans-serif; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25rem 0.6rem; vertical-align: top; }
thead th { border-bottom: 2px solid #333; }
caption, figcaption { caption-side: top; text-align: left; font-size: 0.9rem; margin-bottom: 0.3rem; }
figure { margin: 1.5rem 0; }
pre, code { font-size: 0.8rem; white-space: pre-wrap; }
"""
TYPST_PREAMBLE = """#set page(paper: "a4", margin: 2cm, numbering: "1")
#set text(size: 10pt)
#set par(justify: true)
#show table: set text(size: 8pt)
#show table: set par(justify: false)
#show figure.where(kind: table): set figure.caption(position: top)
// Long tables (a row per model) continue on the next page instead of running off this one.
#show figure.where(kind: table): set block(breakable: true)
// A table's caption (above it) never ends a page without its table: it sticks to what follows.
#show figure.caption.where(kind: table): it => block(sticky: true, it)
"""


# How much of a failing tool's message a ReportError quotes.
TOOL_MESSAGE_LINES = 8
TOOL_MESSAGE_LINE_CHARS = 240


def report_formats(formats: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'html,pdf' (or a sequence of names) -> ('html', 'pdf'), each once, in the order given. No
    format, or one that is not in FORMATS, is a ValueError naming it and the allowed ones."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = tuple(dict.fromkeys(str(f).strip().lower() for f in names if str(f).strip()))
    allowed = f"allowed: {', '.join(FORMATS)}, comma-separated"
    if not chosen:
        raise ValueError(f"no report format given ({allowed})")
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format {', '.join(map(repr, unknown))} ({allowed})")
    return chosen


def tool_error(step: str, path: Path, message: str) -> ReportError:
    """A rendering tool's failure as a ReportError naming the step, the file and the first lines of
    what the tool said (pandoc's Haskell call stack and a Lua filter's stack traceback left out)."""
    message = re.sub(r'^Pandoc died with exitcode "(-?\d+)" during conversion: ', r"exit code \1: ", message.strip())
    lines = []
    for line in message.splitlines():
        if line.strip().startswith(("HasCallStack backtrace", "CallStack (from HasCallStack)", "stack traceback:")):
            break
        if line.strip():
            cut = len(line) > TOOL_MESSAGE_LINE_CHARS
            lines.append(line.rstrip()[:TOOL_MESSAGE_LINE_CHARS] + (" ..." if cut else ""))
    shown = lines[:TOOL_MESSAGE_LINES] + (["..."] if len(lines) > TOOL_MESSAGE_LINES else [])
    return ReportError(f"{step} failed on {path.name}:\n" + "\n".join(f"  {line}" for line in shown or ["(no message)"]))


def _pandoc(step: str, source: Path, to: str, output: Path, extra_args: list[str], cwd: Path) -> None:
    import pypandoc

    try:
        pypandoc.convert_file(str(source), to, format="markdown", outputfile=str(output), extra_args=extra_args,
                              cworkdir=str(cwd))
    except (RuntimeError, OSError) as exc:  # pypandoc: RuntimeError when pandoc fails, OSError when it is missing
        raise tool_error(step, source, str(exc)) from None


def _typst(typ: Path, pdf: Path, root: Path) -> None:
    import typst

    try:
        typst.compile(str(typ), output=str(pdf), root=str(root))
    except (RuntimeError, OSError) as exc:  # typst.TypstError is a RuntimeError
        raise tool_error("typst->PDF", typ, getattr(exc, "diagnostic", None) or str(exc)) from None


@dataclass(frozen=True)
class Outputs:
    qmd: Path
    html: Path | None
    pdf: Path | None
    engine: str  # 'quarto' or 'pandoc+typst'


def quarto_available() -> bool:
    return shutil.which("quarto") is not None


def render(qmd: Path, figures: list[Figure], formats: tuple[str, ...] = ("html", "pdf"),
           force_pandoc: bool = False) -> Outputs:
    if quarto_available() and not force_pandoc:
        return _render_quarto(qmd, formats)
    return _render_pandoc(qmd, figures, formats)


def _render_quarto(qmd: Path, formats: tuple[str, ...]) -> Outputs:
    targets = {"html": "html", "pdf": "typst"}
    try:
        subprocess.run(["quarto", "render", qmd.name, "--to", ",".join(targets[f] for f in formats)],
                       cwd=qmd.parent, check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or b"").decode(errors="replace") or (exc.stdout or b"").decode(errors="replace")
        raise tool_error("quarto", qmd, f"exit code {exc.returncode}: {said}") from None
    except OSError as exc:
        raise tool_error("quarto", qmd, str(exc)) from None
    html, pdf = qmd.with_suffix(".html"), qmd.with_suffix(".pdf")
    return Outputs(qmd, html if html.exists() else None, pdf if pdf.exists() else None, "quarto")


VEGA_SPECS_ID = "vega-specs"


def _vega_script(figures: list[Figure]) -> str:
    """The charts' specs as inline JSON (no string in them can end the element), then the Vega runtime,
    once, with one embed call per chart."""
    import vl_convert as vlc

    specs = {f"vis-{f.label}": f.vega_lite for f in figures}
    snippet = (f"const specs = JSON.parse(document.getElementById({json.dumps(VEGA_SPECS_ID)}).textContent);\n"
               "for (const [id, spec] of Object.entries(specs)) {\n"
               "  vegaEmbed('#' + id, spec, {actions: false, renderer: 'svg'});\n}\n")
    # The bundle is the runtime's own code: '</script' may occur only inside its strings; break it.
    bundle = vlc.javascript_bundle(snippet).replace("</script", "<\\/script")
    return (f'<script type="application/json" id="{VEGA_SPECS_ID}">{json_script_text(specs)}</script>\n'
            f'<script type="module">\n{bundle}\n</script>')


def _render_pandoc(qmd: Path, figures: list[Figure], formats: tuple[str, ...]) -> Outputs:
    out_dir = qmd.parent
    html = pdf = None
    common = ["--lua-filter", SANITIZE_COPY, "--lua-filter", str(FILTER), "--standalone"]
    if "html" in formats:
        css = out_dir / "_report.css"
        css.write_text(CSS)
        extra = ["--embed-resources", "--css", css.name, "--metadata", "lang=en", "--toc", "--toc-depth=2"]
        if figures:
            script = out_dir / "_vega.html"
            script.write_text(_vega_script(figures))
            extra += ["--include-after-body", script.name]
        html = qmd.with_suffix(".html")
        _pandoc("pandoc->HTML", qmd, "html5", html, [*common, *extra], out_dir)
    if "pdf" in formats:
        typ = qmd.with_suffix(".typ")
        _pandoc("pandoc->typst", qmd, "typst", typ, [*common, "--include-in-header", str(_typst_preamble(out_dir))],
                out_dir)
        pdf = qmd.with_suffix(".pdf")
        _typst(typ, pdf, out_dir)
    return Outputs(qmd, html, pdf, "pandoc+typst")


def _typst_preamble(out_dir: Path) -> Path:
    path = out_dir / "_preamble.typ"
    path.write_text(TYPST_PREAMBLE)
    return path
