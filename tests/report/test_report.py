"""The report, checked as a reader would: its numbers against independent queries, its escaping
of model text in HTML and PDF, and its spec errors."""

import importlib
import re
import shutil
from html.parser import HTMLParser

import duckdb
from scipy import stats
import pytest
from hostile_text import BIDI, CONTROLS, HOSTILE_REPLY

from engine.kernel.errors import SpecError
from engine import build_report
from engine.kernel.errors import ReportError
from engine.report.markdown import code_block, escape
from engine import load_study
from engine.study import run_study

INJECTION = ("<script>alert('x')</script> **bold** _em_ $x^2$ \\textbf{tex} #set page(width: 1cm) "
             "@fig-none [link](http://evil.example) | pipe `tick` ```fence")
STUDY = ["design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]",
         "design.controls=[{agent: [scripted:null, scripted:hawk]}]", "design.seeds=3", "scenario.max_turns=3"]


class Tables(HTMLParser):
    """Collects every HTML table as a list of rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._row = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    db, out = tmp / "r.duckdb", tmp / "report"
    overrides = [*STUDY, f"store.path={db}", f"report.output_dir={out}",
                 "report.sections=[{type: summary}, {type: design}, {type: headline_table, title: Results}, "
                 "{type: chart, metric: divergence, x: params}, {type: caveats}, {type: reproducibility}, "
                 "{type: transcripts, rule: first_per_cell}]"]
    # In this process (the CLI's `run --no-report` is run_study; no fresh interpreter's imports to pay).
    _, summary, _ = run_study("model_size", overrides, show_progress=False)
    assert summary.done == summary.planned > 0 and summary.errors == 0
    # Plant hostile text in a stored model reply, as a model could have written it.
    con = duckdb.connect(str(db))
    trial = con.execute("SELECT e.trial_id FROM escalation_turns e JOIN trials t USING (trial_id) "
                        "WHERE t.cell->>'agent' = 'smollm2_135m' ORDER BY t.seed LIMIT 1").fetchone()[0]
    con.execute("UPDATE escalation_turns SET reasoning = ? WHERE trial_id = ? AND turn = 1", [INJECTION, trial])
    con.close()
    report = build_report("model_size", overrides, force_pandoc=True)
    return report, db, overrides


def html_tables(report):
    parser = Tables()
    parser.feed(report.outputs.html.read_text())
    return parser.tables


def clopper_pearson(k, n, alpha=0.05):
    """The exact interval a rate over independent units gets, from the beta quantiles."""
    lo = 0.0 if k == 0 else stats.beta.ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(1 - alpha / 2, k + 1, n - k)
    return k / n, lo, hi


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_report_files_exist(rendered):
    report, _, _ = rendered
    out = report.out_dir
    for name in ("index.qmd", "_quarto.yml", "index.html", "index.pdf"):
        assert (out / name).exists(), name
    assert report.figures == 1 and (out / "figures" / "fig-divergence-params.svg").exists()
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"
    assert not list(out.parent.glob(f".{out.name}-*"))  # no half-built leftovers


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_html_is_self_contained_with_one_vega_runtime(rendered):
    report, _, _ = rendered
    html = report.outputs.html.read_text()
    # Every chart spec in one inline JSON element, the runtime in one inline module script.
    assert html.count("<script") == 2 and html.count('<script type="application/json" id="vega-specs">') == 1
    assert 'id="vis-fig-divergence-params"' in html
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?://', html)  # nothing fetched online


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_html_numbers_match_an_independent_query(rendered):
    report, db, _ = rendered
    table = next(t for t in html_tables(report) if t and "Nuclear" in t[0] and "Welfare" in t[0])
    header, rows = table[0], table[1:]
    con = duckdb.connect(str(db), read_only=True)
    truth = con.execute(
        "SELECT coalesce(t.cell->>'persona', '—'), t.cell->>'agent', count(*), sum(e.nuclear::INT), avg(e.welfare)"
        " FROM trials t JOIN escalation_episodes e USING (trial_id) WHERE t.status = 'done' GROUP BY ALL").fetchall()
    labels = {"smollm2_135m": "SmolLM2 135M", "scripted:null": "scripted:null", "scripted:hawk": "scripted:hawk"}
    assert len(rows) == 3
    for persona, agent, n, nuclear, welfare in truth:
        row = next(r for r in rows if r[header.index("Model")] == labels[agent])
        p, lo, hi = clopper_pearson(nuclear, n)
        # Each estimate carries its own n (games behind it), flagged below 5.
        assert row[header.index("Nuclear")] == f"{p:.0%} [{lo:.0%}, {hi:.0%}] (n={n}{', low n' if n < 5 else ''})"
        assert row[header.index("Welfare")].split(" ")[0] == f"{welfare:.{1 if abs(welfare) >= 100 else 3 if abs(welfare) < 10 else 2}f}"
        assert row[header.index("Finished/planned")] == f"{n}/3"


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_abstract_states_numbers_from_the_data(rendered):
    report, db, _ = rendered
    html = report.outputs.html.read_text()
    con = duckdb.connect(str(db), read_only=True)
    done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    planned = con.execute("SELECT count(*) FROM plan").fetchone()[0]
    assert f"We planned {planned} games" in html and f"{done} finished" in html


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_model_text_is_text_in_html(rendered):
    report, _, _ = rendered
    html = report.outputs.html.read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html or "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    assert "<strong>bold</strong>" not in html and "**bold**" in html
    assert 'href="http://evil.example"' not in html


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_model_text_is_text_in_pdf(rendered):
    report, _, _ = rendered
    typ = report.out_dir / "index.typ"
    source = typ.read_text()
    assert "#set page(width: 1cm)" not in source.replace("\\#set", "")  # escaped, not a typst command
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext (poppler-utils) not installed; checked the typst source only")
    import subprocess

    text = subprocess.run([pdftotext, str(report.outputs.pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    # Table cells wrap and hyphenate: compare with whitespace, soft hyphens and curly quotes removed.
    squash = lambda t: re.sub(r"[\s\xad\u2010\u2011-]", "", t).replace("’", "'").replace("‘", "'")  # noqa: E731
    flat = squash(text)
    for piece in ("<script>alert('x')</script>", "**bold**", "_em_", "$x^2$", "\\textbf{tex}",
                  "#setpage(width:1cm)", "@fig-none", "[link](http://evil.example)", "|pipe"):
        assert squash(piece) in flat, piece


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_report_rerenders_from_the_database_without_model_calls(rendered, tmp_path, run_main):
    report, db, overrides = rendered
    calls_before = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM calls").fetchone()[0]
    result = run_main("report", "model_size", *overrides, "--formats", "html")
    assert result.returncode == 0, result.stderr
    calls_after = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM calls").fetchone()[0]
    assert calls_after == calls_before


@pytest.mark.slow  # the `rendered` study plays SmolLM2
def test_quarto_render_when_available(rendered, tmp_path):
    if shutil.which("quarto") is None:
        pytest.skip("quarto is not on PATH (it cannot be installed here); the pandoc+typst fallback is tested above")
    _, _, overrides = rendered
    report = build_report("model_size", [*overrides, f"report.output_dir={tmp_path / 'q'}"])
    assert report.outputs.engine == "quarto"
    assert report.outputs.html.exists() and report.outputs.pdf.read_bytes()[:5] == b"%PDF-"


def test_report_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="run the study first"):
        build_report("model_size", [f"store.path={tmp_path / 'none.duckdb'}"])


@pytest.mark.parametrize("sections, message", [
    ("[{type: histogram}]", "unknown section type 'histogram'"),
    ("[{type: chart, metric: happiness}]", "unknown metric 'happiness'"),
    ("[{type: headline_table, metrics: [nuclear_rate, vibes]}]", "unknown metric 'vibes'"),
    ("[{type: caveats, colour: red}]", "unknown key"),
])
def test_report_spec_errors_come_before_any_run(sections, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        load_study("model_size", [f"report.sections={sections}"])


def test_escape_and_code_block_are_safe():
    assert escape("<b>") == "\\<b\\>"
    assert escape("a\n\n# b") == "a \\# b"
    block = code_block("x ```` y")
    assert block.startswith("`````") and block.endswith("`````")


# -- model text: capped, control and bidi characters made visible (no real LLM: a stand-in replies) --



def visible(char: str) -> str:
    """The escape a reader sees in place of an unsafe character."""
    return f"\\x{ord(char):02x}" if ord(char) < 0xA0 else f"U+{ord(char):04X}"


async def hostile_stand_in(**kwargs):
    import json

    import litellm

    content = json.dumps({"reasoning": HOSTILE_REPLY, "signal_level": 1, "action_level": 1})
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One mirror game of two turns: four model replies of over 1 MB each, every one holding each C0
    control character (bar tab, newline, CR), DEL and each bidi mark, override and isolate; rendered
    to HTML and PDF."""
    from engine.execute.gateway import Gateway
    from engine.study import run_study

    tmp = tmp_path_factory.mktemp("hostile")
    db, out = tmp / "h.duckdb", tmp / "report"
    overrides = ["design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]",
                 "design.controls=[{agent: [scripted:null]}]", "design.seeds=1", "scenario.max_turns=2",
                 "models.smollm2_135m.litellm_id=openrouter/stand-in/smollm2_135m", "~models.smollm2_135m.weights", "++models.smollm2_135m.chat_template=null",
                 "executor.max_concurrent_trials=2",
                 f"store.path={db}", f"report.output_dir={out}",
                 "report.sections=[{type: summary}, {type: design}, {type: caveats}, "
                 "{type: transcripts, rule: first_per_cell}]"]
    _, summary, _ = run_study("model_size", overrides, show_progress=False,
                              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=hostile_stand_in))
    assert summary.errors == 0 and summary.done == summary.planned == 2
    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("SELECT reasoning FROM escalation_turns e JOIN trials t USING (trial_id)"
                         " WHERE t.cell->>'agent' = 'smollm2_135m'").fetchall()
    con.close()
    assert [r for (r,) in stored] == [HOSTILE_REPLY] * 4  # the store keeps every reply whole
    report = build_report("model_size", overrides, force_pandoc=True)
    return report, overrides


def test_long_model_replies_are_cut_at_the_stated_limit(hostile):
    from engine.report.markdown import MODEL_TEXT_LIMIT

    report, _ = hostile
    marker = f"(cut, {len(HOSTILE_REPLY)} chars)"
    qmd = report.outputs.qmd.read_text()
    html = report.outputs.html.read_text()
    assert qmd.replace("\\", "").count(marker) == 4 and html.count(marker) == 4
    assert "x" * MODEL_TEXT_LIMIT not in qmd and "x" * MODEL_TEXT_LIMIT not in html
    assert len(qmd) < 8 * MODEL_TEXT_LIMIT + 20_000  # four capped replies, not four megabytes
    assert f"shown up to {MODEL_TEXT_LIMIT:,} characters per reply" in " ".join(html.split())  # the limit is stated
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"


def test_control_and_bidi_characters_from_models_are_visible_escapes_in_html_and_pdf(hostile):
    report, _ = hostile
    html = report.outputs.html.read_text()
    typ = (report.out_dir / "index.typ").read_text()  # what typst typesets into the PDF
    for char in CONTROLS + BIDI:
        assert char not in html, f"raw {visible(char)} in the HTML"
        assert char not in typ, f"raw {visible(char)} in the typst source"
    flat_typ = typ.replace("\\\\", "\\")  # typst escapes the backslash of \x1b
    for char in CONTROLS + BIDI:
        assert visible(char) in html, visible(char)
        assert visible(char) in flat_typ, visible(char)
    assert "ctl[\\x00\\x01" in html and "bidi[U+202AU+202B" in html
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"


def test_model_text_caps_and_neutralises_in_one_place():
    from engine.report.markdown import model_text

    assert model_text("short") == "short" and model_text(None) == ""
    assert model_text("a" * 10, 4) == "aaaa (cut, 10 chars)"
    assert model_text("ab\x1bcd", 4) == "ab (cut, 5 chars)"  # an escape is never split
    assert model_text("ab\x1bcd", 7) == "ab\\x1bc (cut, 5 chars)"
    assert model_text("tab\tnl\ncr\r") == "tab\tnl\ncr\r"  # kept
    assert model_text("\x00\x07\x1b\x7f\u202e\u2066\u200f\u061c") == "\\x00\\x07\\x1b\\x7fU+202EU+2066U+200FU+061C"
    assert "\u202e" not in escape("a\u202eb") and "\x1b" not in code_block("a\x1bb")


# -- rendering tools that fail, and the work folder -----------------------------------------------

def _write(out_dir, formats=("html", "pdf")):
    from engine.report.writer import write_report
    from engine.kernel.contracts import Rendered

    return write_report(out_dir, {"title": "t"}, [Rendered("## A section\n\nSome text\\.")], formats,
                        force_pandoc=True)


def _leftovers(out_dir):
    return sorted(p.name for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}-"))


def test_a_typst_failure_is_a_report_error_naming_step_file_and_message(tmp_path, monkeypatch):
    render_module = importlib.import_module("engine.report.render")  # engine.report.render is also a function

    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("the previous report")
    monkeypatch.setattr(render_module, "TYPST_PREAMBLE", "#let broken = (\n")  # typst cannot parse this
    with pytest.raises(ReportError) as err:
        _write(out)
    message = str(err.value)
    assert "typst->PDF failed on index.typ" in message and "unclosed delimiter" in message, message
    assert str(out) in message and "Traceback" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert (out / "index.html").read_text() == "the previous report"  # left as it was
    assert _leftovers(out) == []  # the failed render's work folder is gone


def test_a_pandoc_failure_is_a_report_error_naming_step_file_and_message(tmp_path, monkeypatch):
    render_module = importlib.import_module("engine.report.render")  # engine.report.render is also a function

    broken = tmp_path / "broken.lua"
    broken.write_text('error("this filter is broken on purpose")\n')
    monkeypatch.setattr(render_module, "FILTER", broken)
    out = tmp_path / "report"
    with pytest.raises(ReportError) as err:
        _write(out, ("html",))
    message = str(err.value)
    assert "pandoc->HTML failed on index.qmd" in message, message
    assert "this filter is broken on purpose" in message and "HasCallStack" not in message
    assert len(message.splitlines()) <= 12
    assert not out.exists() and _leftovers(out) == []
    with pytest.raises(ReportError, match=r"pandoc->typst failed on index\.qmd"):
        _write(out, ("pdf",))


def test_cli_prints_a_tool_failure_as_an_error_without_a_traceback(hostile, monkeypatch, capsys):
    if shutil.which("quarto") is not None:
        pytest.skip("quarto renders instead of pandoc+typst here")
    render_module = importlib.import_module("engine.report.render")  # engine.report.render is also a function
    from engine.cli import main

    _, overrides = hostile
    monkeypatch.setattr(render_module, "TYPST_PREAMBLE", "#let broken = (\n")
    assert main(["report", "model_size", *overrides, "--formats", "pdf"]) == 1
    err = capsys.readouterr().err
    assert err.lstrip().startswith("error") and "typst->PDF failed on index.typ" in err and "Traceback" not in err


def test_stale_work_folders_of_killed_renders_are_removed(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys
    import time

    out = tmp_path / "report"
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folders = {}
        for name, record, age in [("dead", {"pid": dead.pid}, 0), ("alive", {"pid": alive.pid}, 0),
                                  ("old", None, 3600), ("new", None, 0)]:
            # Names as tempfile.mkdtemp made them before, and as the report makes them now.
            path = tmp_path / f".report-{name:_<8}"
            path.mkdir()
            (path / "index.qmd").write_text("half-built")
            if record:
                (path / ".render.json").write_text(json.dumps({**record, "host": host, "started": time.time(),
                                                               "target": "report"}))
            if age:
                os.utime(path, (time.time() - age, time.time() - age))
            folders[name] = path
        other = tmp_path / ".report2-abcdefgh"  # another report's work folder
        other.mkdir()
        os.utime(other, (0, 0))
        _write(out, ("html",))
        assert not folders["dead"].exists() and not folders["old"].exists()  # left by killed renders
        assert folders["alive"].exists() and folders["new"].exists()  # may still be rendering
        assert other.exists()
        assert (out / "index.html").exists() and not (out / ".render.json").exists()
    finally:
        alive.kill()
        alive.wait()


def test_report_folder_has_normal_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        report = _write(tmp_path / "report", ("html",))
    finally:
        os.umask(old)
    assert stat.S_IMODE(report.out_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE((report.out_dir / "figures").stat().st_mode) == 0o755
    assert stat.S_IMODE(report.outputs.html.stat().st_mode) == 0o644


def test_an_exception_during_rendering_leaves_no_work_folder(tmp_path, monkeypatch):
    import engine.report.writer as report_module

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-render")

    monkeypatch.setattr(report_module, "render", crash)
    out = tmp_path / "report"
    with pytest.raises(RuntimeError, match="killed mid-render"):
        _write(out)
    assert _leftovers(out) == [] and not out.exists()


def test_a_sections_files_land_inside_the_report_and_nowhere_else(tmp_path):
    from engine.kernel.contracts import Rendered
    from engine.report.markdown import raw_html_block
    from engine.report.writer import write_report

    # A section's own markup goes in through raw_html_block (any other raw block is shown as text).
    shipped = Rendered("## Data\n\n" + raw_html_block('<script src="data/x.js"></script>'),
                       files={"data/x.js": "window.x = 1;\n"})
    report = write_report(tmp_path / "r", {"title": "t"}, [shipped], ("html",), force_pandoc=True)
    assert (report.out_dir / "data" / "x.js").read_text() == "window.x = 1;\n"
    assert "window.x = 1;" in report.outputs.html.read_text()  # embedded in the one-file HTML
    for bad in ("../escape.js", "/tmp/abs.js", "figures/fig-x.svg"):
        with pytest.raises(ValueError, match="relative path inside the report"):
            write_report(tmp_path / "s", {"title": "t"}, [Rendered("x", files={bad: "1"})], ("html",), force_pandoc=True)
    assert not (tmp_path / "escape.js").exists() and not (tmp_path / "s").exists()
