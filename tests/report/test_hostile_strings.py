"""Hostile strings against the report, and the report folder against failed renders.

- Every string a study author writes (title, description, section titles, captions, claims, display
  names of models and judges, providers, families, persona names and texts, factor levels) is text in
  the HTML and the PDF: nothing runs, nothing is injected, the PDF still compiles. Two real studies
  outside the repository (escalation and jailbreak, on stand-in models through the real gateway, the
  judges the refusal heuristic) carry them into every section.
- Raw markup that reaches the document without `escape` is still shown as text (the sanitize filter).
- An unknown report format is a usage error before anything is touched; a render replaces the old
  report only when the new one is complete.
- A chart never stops the report: control characters in labels (on which the chart converter aborts
  the process) are escapes, and a chart too large or too broken to draw becomes a note.
"""

from __future__ import annotations

import hashlib
import html as html_module
import importlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import litellm
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_cli
from jailbreak_standin import refuses_by_hash

from engine import build_report
from engine.execute.gateway import Gateway
from engine.kernel.contracts import Figure, Rendered
from engine.kernel.errors import ReportError
from engine.report.markdown import one_line
from engine.study import run_study

SCRIPT = "<script>alert(1)</script>"
HANDLER = "<img src=x onerror=alert(1)>"
TYPST = '#panic("typst") #import "x.typ": * ] $x$ @ref <label>'
YAML_BREAKERS = '" : x\n--- {'
MARKDOWN = ("[link](javascript:alert(1)) <div onclick=alert(1)>raw</div> `<b onclick=alert(1)>b</b>`{=html} "
            "::: {.x} ``` tick")
BLOCKS = '\n\n```{=html}\n<script>alert(1)</script>\n```\n\n::: {.content-visible when-format="html"}\n\n<p>x</p>\n'
HOSTILE = " ".join([SCRIPT, HANDLER, TYPST, YAML_BREAKERS, MARKDOWN]) + BLOCKS
# What a reader must see as text, wherever one of the strings is shown.
VISIBLE = [SCRIPT, HANDLER, "#panic(", "@ref <label>", "[link](javascript:alert(1))", "{=html}"]
STANDINS = ("standin_a", "standin_b")
PERSONA = "P " + " ".join([HANDLER, "#panic() $x$ @ref <label> ]", '" : x ---'])


# -- reading the HTML as a browser would --------------------------------------------------------

class Page(HTMLParser):
    """Every element with its attributes, every <script> with its text, and the text a reader sees."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._in: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag
            if tag == "script":
                self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in is None:
            self.text.append(data)

    def reader_text(self) -> str:
        flat = " ".join(" ".join(self.text).split())
        return flat.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")


def assert_nothing_runs(html: str) -> Page:
    """No handler attribute, no script: or data: link, no image, iframe or object from the strings;
    every <script> is the report's own: JSON data (no '<' in it, so it cannot end the element) or
    code without a trace of the strings."""
    page = Page(html)
    for tag, attrs in page.elements:
        handlers = [a for a in attrs if a.lower().startswith("on")]
        assert not handlers, (tag, attrs)
        for key in ("href", "src", "action", "formaction", "data"):
            target = re.sub(r"[\x00-\x20]", "", (attrs.get(key) or "")).lower()
            assert not target.startswith(("javascript:", "vbscript:")), (tag, attrs)
        assert tag not in ("img", "iframe", "object", "embed", "form", "base", "meta") or tag == "meta" and (
            "http-equiv" not in attrs), (tag, attrs)
    for attrs, text in page.scripts:
        if attrs.get("type") == "application/json":
            json.loads(text)
            assert "<" not in text, attrs
        else:
            assert not re.search(r"alert\(\d\)", text), (attrs, text[:200])  # the strings' calls: alert(1) ...
    return page


def typst_source_is_text(typ: str) -> None:
    """The typst source holds the strings' typst markup only escaped: as text, never as code."""
    for pattern in (r"#panic", r"#import", r"@ref", r"<label>", r"\$x\$"):
        assert not re.search(r"(?<!\\)" + pattern, typ), pattern
    assert "\\#panic" in typ and "\\@ref" in typ


# -- the studies ---------------------------------------------------------------------------------

def hostile(tag: str) -> str:
    return f"{tag} {HOSTILE}"


async def escalation_standin(**kwargs):
    """Moves from a hash of the prompt; the reasoning is hostile too (model text, hardened before)."""
    h = hashlib.sha256((kwargs.get("model", "") + kwargs["messages"][-1]["content"]).encode()).digest()
    content = json.dumps({"reasoning": "R " + SCRIPT + HANDLER, "signal_level": h[1] % 10, "action_level": h[2] % 10})
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})


def escalation_study(folder: Path) -> Path:
    models = {key: {"litellm_id": f"openrouter/stand-in/{key}", "display_name": hostile(f"MODEL{i}"),
                    "provider": hostile(f"PROVIDER{i}"), "family": hostile(f"FAMILY{i}"), "route": "openrouter",
                    "params": {"total_b": 1.0 + i, "estimated": True},
                    "price": {"input_per_mtok": 0, "output_per_mtok": 0}} for i, key in enumerate(STANDINS)}
    study = {
        "defaults": ["base", {"scenario": "escalation"}, {"executor": "local"}, "_self_"],
        "name": "hostile_escalation", "title": hostile("TITLE"), "description": hostile("DESCRIPTION"),
        "model_set": "none", "models": models,
        "scenario": {"max_turns": 2, "personas": {"default": {"text": "Be careful."},
                                                  PERSONA: {"text": hostile("PERSONATEXT")}}},
        "design": {"factors": {"agent": list(STANDINS), "persona": ["default", PERSONA]},
                   "controls": [{"agent": ["scripted:hawk", "scripted:null"]}], "seeds": 2},
        "store": {"path": str(folder / "study.duckdb")},
        "report": {
            "output_dir": str(folder / "report"),
            "sections": [
                {"type": "summary"}, {"type": "design"},
                {"type": "headline_table", "title": hostile("SECTION"), "caption": hostile("TBLCAPTION"),
                 "split_by": "persona"},
                {"type": "chart", "metric": "divergence", "x": "params", "color": "persona",
                 "caption": hostile("FIGCAPTION")},
                {"type": "chart", "metric": "nuclear_rate", "x": "persona"},
                {"type": "paired_contrasts", "metric": "nuclear_rate", "title": hostile("PAIRED"),
                 "caption": hostile("FORESTCAP")},
                {"type": "conditions", "title": hostile("CONDITIONS")},
                {"type": "claims"}, {"type": "caveats"}, {"type": "transcript_browser"},
                {"type": "reproducibility"}, {"type": "transcripts", "rule": "first_per_cell"}],
            "claims": [{"claim": hostile("CLAIM"), "test": "difference", "metric": "nuclear_rate",
                        "a": {"persona": PERSONA}, "b": {"persona": "default"}, "direction": "positive",
                        "effect": 0.1}]},
    }
    path = folder / "studies" / "hostile_escalation.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def jailbreak_study(folder: Path) -> Path:
    """provider_vs_size on two stand-ins, graded by the refusal heuristic (gold sets included)."""
    study = yaml.safe_load((REPO / "studies" / "provider_vs_size.yaml").read_text())
    study.update({"name": "hostile_jailbreak", "title": hostile("JBTITLE"), "description": hostile("JBDESC"),
                  "primary_judge": "heuristic", "store": {"path": str(folder / "study.duckdb")}})
    study["models"] = {key: {"litellm_id": f"openrouter/stand-in/{key}", "display_name": hostile(f"JBMODEL{i}"),
                             "provider": hostile(f"JBPROVIDER{i}"), "family": hostile(f"JBFAMILY{i}"),
                             "weights": None, "chat_template": None}
                       for i, key in enumerate(("smollm2_135m", "gemma3_270m"))}
    study["judges"] = {"heuristic": {"display_name": hostile("JUDGE")}}
    study["design"]["factors"]["attack"] = ["direct", "roleplay"]
    study["scenario"] = {"select": {"ids": ["cyber-01", "cyber-02", "weapons-01", "benign-01"]}}
    study["report"]["output_dir"] = str(folder / "report")
    study["report"]["claims"] = [{**c, "claim": hostile(f"JBCLAIM{i}")} for i, c in enumerate(study["report"]["claims"])]
    path = folder / "studies" / "hostile_jailbreak.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def escalation_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_escalation")
    study = escalation_study(folder)
    _, summary, _ = run_study(str(study), [], show_progress=False,
                              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=escalation_standin))
    assert summary.errors == 0 and summary.done == summary.planned
    return build_report(str(study), [], force_pandoc=True)


@pytest.fixture(scope="module")
def jailbreak_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_jailbreak")
    study = jailbreak_study(folder)
    _, summary, _ = run_study(str(study), ["~judges.smollm2"], show_progress=False,
                              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=refuses_by_hash))
    assert summary.errors == 0 and summary.done == summary.planned
    return build_report(str(study), ["~judges.smollm2"], force_pandoc=True)


ESCALATION_PLACES = ["TITLE", "DESCRIPTION", "SECTION", "TBLCAPTION", "FIGCAPTION", "PAIRED", "FORESTCAP", "CONDITIONS", "CLAIM",
                     "PERSONATEXT", "MODEL0", "MODEL1", "PROVIDER0", "FAMILY1"]
JAILBREAK_PLACES = ["JBTITLE", "JBDESC", "JBMODEL0", "JBMODEL1", "JBPROVIDER0", "JBPROVIDER1", "JBFAMILY0",
                    "JUDGE", "JBCLAIM0"]


@pytest.mark.parametrize("which, places", [("escalation_report", ESCALATION_PLACES),
                                           ("jailbreak_report", JAILBREAK_PLACES)])
def test_author_strings_are_text_in_html_and_pdf(request, which, places):
    report = request.getfixturevalue(which)
    page = assert_nothing_runs(report.outputs.html.read_text())
    assert any(a.get("id") == "vega-specs" for a, _ in page.scripts)  # the report's own scripts are there
    text = page.reader_text()
    for tag in places:
        for piece in VISIBLE:
            assert f"{tag} {SCRIPT}" in text, f"{tag} is not shown as text"
            assert piece in text.split(f"{tag} ", 1)[1][:400], (tag, piece)
    head_title = html_module.unescape(report.outputs.html.read_text().split("<title>", 1)[1].split("</title>")[0])
    assert f"{places[0]} {SCRIPT}" in " ".join(head_title.split())
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"  # typst compiled it
    typst_source_is_text((report.out_dir / "index.typ").read_text())


def test_front_matter_is_a_yaml_document_of_escaped_plain_text(escalation_report):
    qmd = escalation_report.outputs.qmd.read_text()
    front = yaml.safe_load(qmd.split("---\n", 2)[1])
    assert set(front) == {"title", "subtitle", "date", "format", "filters", "engine-raw-token"}  # nothing added
    assert re.sub(r"\\(.)", r"\1", front["title"]) == one_line(hostile("TITLE"))


def test_persona_names_and_factor_levels_are_text_in_charts_and_tables(escalation_report):
    html = escalation_report.outputs.html.read_text()
    text = Page(html).reader_text()
    assert one_line(PERSONA) in text
    specs = json.loads(next(t for a, t in Page(html).scripts if a.get("id") == "vega-specs"))
    def strings(node):
        if isinstance(node, str):
            yield node
        for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else []:
            yield from strings(child)

    assert any(one_line(PERSONA) in s for s in strings(specs))  # the level is a chart's label, as text
    for svg in (escalation_report.out_dir / "figures").glob("*.svg"):  # the PDF's charts: labels as text
        assert "<script" not in svg.read_text() and "<img" not in svg.read_text()


# -- the safety net: raw markup that missed `escape` ---------------------------------------------

RAW = ("## Raw\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
       "```{=html}\n<script>alert(2)</script>\n```\n\n`<b onclick=alert(3)>b</b>`{=html}\n\n"
       "```{=typst}\n#panic(\"raw typst\")\n```\n\n`#panic(\"inline typst\")`{=typst}\n\n"
       "[link](javascript:alert(4)) [tab](java\tscript:alert(5)) [web](https://example.org/x)\n\n"
       "![secret](/etc/hostname)\n")


def write(out: Path, rendered: list[Rendered], formats=("html", "pdf"), front: dict | None = None):
    from engine.report.writer import write_report

    return write_report(out, front or {"title": "t"}, rendered, formats, force_pandoc=True)


def test_raw_markup_that_missed_escape_is_shown_as_text(tmp_path):
    report = write(tmp_path / "r", [Rendered(RAW)])
    html = report.outputs.html.read_text()
    page = assert_nothing_runs(html)
    links = [a.get("href") for tag, a in page.elements if tag == "a"]
    assert "https://example.org/x" in links and not any("script" in (h or "") for h in links)
    text = page.reader_text()
    assert "<script>alert(1)</script>" in text and "<script>alert(2)</script>" in text
    assert Path("/etc/hostname").read_text().strip() not in html.replace(text, "")  # not embedded
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"  # raw typst would have panicked


def test_figure_captions_and_chart_strings_are_plain_text(tmp_path):
    from engine.report.charts import estimate_chart

    frame = pd.DataFrame({"x": [1.0, 2.0], "value": [0.2, 0.4], "low": [0.1, 0.3], "high": [0.3, 0.5], "n": [4, 4],
                          "label": [hostile("LABEL"), "b"], "group": [PERSONA, "default"]})
    spec = estimate_chart(frame, x="x", x_title=hostile("XTITLE"), y_title="y", color="group", log_x=False,
                          percent=True)
    report = write(tmp_path / "r", [Rendered("@@FIGURE:fig-h@@", [Figure("fig-h", hostile("FIGCAP"), spec)])])
    page = assert_nothing_runs(report.outputs.html.read_text())
    assert f"FIGCAP {SCRIPT}" in page.reader_text() and report.figures == 1
    typst_source_is_text((report.out_dir / "index.typ").read_text())


# -- formats and the report folder -----------------------------------------------------------------

def render_module():
    return importlib.import_module("engine.report.render")  # engine.report.render is also a function


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}-"))


@pytest.fixture
def old_report(tmp_path):
    out = tmp_path / "report"
    write(out, [Rendered("## Old\n\nThe previous report\\.")])
    before = snapshot(out)
    assert {"index.html", "index.pdf"} <= set(before)
    return out, before


SCRIPTED = ["design.factors.agent=[scripted:hawk]", "~design.factors.persona", "design.controls=[]", "design.seeds=1",
            "scenario.max_turns=2"]


@pytest.mark.parametrize("command, formats, named", [
    (["report"], "docx", "'docx'"), (["report"], "html,docx", "'docx'"), (["report"], ",", "no report format"),
    (["run"], "docx", "'docx'"), (["run", "-m"], "pdf,DOCX", "'docx'"), (["report", "-m"], "docx", "'docx'"),
    (["run", "--no-progress"], "html, x\x1b[31m", "'x\\x1b[31m'")])  # a terminal escape is shown, not sent
def test_an_unknown_format_is_a_usage_error_before_anything_is_touched(old_report, command, formats, named, capsys):
    from engine.cli import main

    out, before = old_report
    db = out.parent / "study.duckdb"
    argv = [command[0], "model_size", *command[1:], *SCRIPTED, f"store.path={db}", f"report.output_dir={out}",
            "--formats", formats]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--formats" in err and named in err and "allowed: html, pdf" in err and "\x1b" not in err
    assert snapshot(out) == before and leftovers(out) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["report"]  # no database, no shard, no sweep folder


def test_write_report_refuses_an_unknown_format_before_writing(old_report):
    out, before = old_report
    with pytest.raises(ValueError, match=r"unknown report format 'docx' \(allowed: html, pdf"):
        write(out, [Rendered("## New")], ("docx",))
    assert snapshot(out) == before and leftovers(out) == []


def test_a_render_that_fails_in_the_pdf_step_leaves_the_old_report(old_report, monkeypatch):
    out, before = old_report

    def typst_fails(typ, pdf, root):
        raise ReportError("typst->PDF failed on index.typ: broken on purpose")

    monkeypatch.setattr(render_module(), "_typst", typst_fails)
    with pytest.raises(ReportError, match="broken on purpose"):
        write(out, [Rendered("## New\n\nThe new report\\.")])
    assert snapshot(out) == before and leftovers(out) == []


def test_a_render_that_writes_no_pdf_is_incomplete_and_leaves_the_old_report(old_report, monkeypatch):
    out, before = old_report
    monkeypatch.setattr(render_module(), "_typst", lambda typ, pdf, root: None)  # "succeeds", writes nothing
    with pytest.raises(ReportError, match="PDF output was not written"):
        write(out, [Rendered("## New")])
    assert snapshot(out) == before and leftovers(out) == []


def test_a_failure_while_swapping_puts_the_old_report_back(old_report, monkeypatch):
    out, before = old_report
    rename = Path.rename

    def failing_rename(self, target):
        if Path(target) == out.resolve() and self.name.startswith(f".{out.name}-") and (self / "index.qmd").exists() \
                and (self / "index.qmd").read_text().find("The new report") >= 0:
            raise OSError("disk trouble while swapping")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="disk trouble"):
        write(out, [Rendered("## New\n\nThe new report\\.")])
    monkeypatch.undo()
    assert snapshot(out) == before and leftovers(out) == []


# -- charts --------------------------------------------------------------------------------------

CONTROL_LABELS = ["nul\x00model", "esc\x1b[31mred", "nonchar\ufffe", "line\nbreak", "sep\u2028x", "bidi\u202ex",
                  "private\ue000", "zw\u200bsp"]


def test_chart_strings_hold_no_character_the_converter_aborts_on():
    import unicodedata

    from engine.report.charts import chart_safe

    spec = {"title": CONTROL_LABELS[0], "datasets": {"d": [{label: label} for label in CONTROL_LABELS]},
            "encoding": {"x": {"field": CONTROL_LABELS[3], "sort": CONTROL_LABELS}}}
    safe = chart_safe(spec)
    flat = json.dumps(safe, ensure_ascii=False)
    assert all(unicodedata.category(c)[0] not in "C" and c not in "\u2028\u2029\n" for c in flat)
    assert safe["datasets"]["d"][0] == {"nul\\x00model": "nul\\x00model"}  # keys and values alike
    assert safe["encoding"]["x"]["field"] == "line break" and "line break" in safe["encoding"]["x"]["sort"]
    assert chart_safe(safe) == safe


def test_control_characters_in_imported_model_names_do_not_abort_the_process(tmp_path):
    """The converter aborts the whole process (a Rust panic) on a NUL: run as a user would, in a
    subprocess, an analysis-only study whose trace file names models with control characters. The
    import refuses them (exit 2, naming the row and column, nothing written): no abort, no report
    drawn from a name no reader could see (the chart converter's own guard is tested below)."""
    traces = tmp_path / "traces.csv"
    rows = ["model,provider,params_total_b,attack,prompt_id,category,benign,verdict"]
    for name, provider, size in (("m\x00nul", "P\ufffe", 7), ("m\x1b[31mesc", "B\x01", 70), ("plain", "C", 13)):
        for prompt, verdict in (("p1", "COMPLIANCE"), ("p2", "REFUSAL"), ("p3", "PARTIAL")):
            rows.append(f'"{name}","{provider}",{size},direct,{prompt},cyber,false,{verdict}')
    traces.write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    result = run_cli("run", "provider_vs_size_import", f"scenario.traces_file.path={traces}",
                     f"store.path={tmp_path / 'i.duckdb'}", f"report.output_dir={out}", "--no-progress")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "row 2, column 'model'" in result.stderr and "control character" in result.stderr
    assert not out.exists() and not (tmp_path / "i.duckdb").exists()


def test_a_chart_too_large_or_broken_to_draw_becomes_a_note(tmp_path):
    from engine.report.charts import MAX_CHART_ROWS, chart_rows, forest_chart

    rows = 2000
    big = forest_chart(pd.DataFrame({"label": [f"comparison {i}" for i in range(rows)], "value": 0.1, "low": 0.0,
                                     "high": 0.2, "n": 3, "pairing": "paired", "p": "0.1", "holm_p": "0.2"}),
                       x_title="difference", percent=True)
    small = forest_chart(pd.DataFrame({"label": ["a - b"], "value": [0.1], "low": [0.0], "high": [0.2], "n": [3],
                                       "pairing": ["paired"], "p": ["0.1"], "holm_p": ["0.2"]}),
                         x_title="difference", percent=True)
    broken = {"mark": "no-such-mark", "data": {"values": [{"a": 1}]}}
    report = write(tmp_path / "r", [Rendered("@@FIGURE:fig-big@@\n\n@@FIGURE:fig-small@@\n\n@@FIGURE:fig-broken@@", [
        Figure("fig-big", "All comparisons.", big), Figure("fig-small", "One comparison.", small),
        Figure("fig-broken", "A broken chart.", broken)])])
    assert report.figures == 1 and sorted(p.name for p in (report.out_dir / "figures").glob("*.svg")) == ["fig-small.svg"]
    html = report.outputs.html.read_text()
    text = Page(html).reader_text()
    assert chart_rows(big) > rows  # the comparisons and the line at zero
    assert (f"This chart is not drawn: it has {chart_rows(big):,} data rows, more than the {MAX_CHART_ROWS:,} a chart "
            "draws.") in text
    assert "This chart is not drawn: the chart converter failed" in text
    assert 'id="vis-fig-small"' in html and 'id="vis-fig-big"' not in html and 'id="vis-fig-broken"' not in html
    assert "All comparisons." in text and "A broken chart." in text  # captions stay
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"
    typ = (report.out_dir / "index.typ").read_text()
    assert "This chart is not drawn" in typ and "fig-small.svg" in typ and "fig-big.svg" not in typ


# -- the terminal ----------------------------------------------------------------------------------

def test_author_strings_print_as_text_in_the_terminal(tmp_path, capsys):
    """Rich markup and a terminal's escape sequences in a study title are printed as text."""
    from engine.cli import main

    study = escalation_study(tmp_path)
    data = yaml.safe_load(study.read_text())
    data["title"] = "T [/] [bold]x[/bold] \x1b[31mRED"
    study.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["plan", str(study)]) == 0
    out = capsys.readouterr().out
    assert "T [/] [bold]x[/bold] \\x1b[31mRED" in out and "\x1b" not in out
