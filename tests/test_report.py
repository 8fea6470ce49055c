"""The report, checked as a reader would: its numbers against independent queries, its escaping
of model text in HTML and PDF, and its spec errors."""

import math
import re
import shutil
from html.parser import HTMLParser

import duckdb
import pytest
from conftest import run_cli

from engine.errors import SpecError
from engine.report import ReportError, build_report
from engine.report.markdown import code_block, escape
from engine.spec.load import load_spec

pytestmark = pytest.mark.slow

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
    result = run_cli("run", "model_size", *overrides, "--no-progress", "--no-report")
    assert result.returncode == 0, result.stderr
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


def wilson(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, centre - half, centre + half


def test_report_files_exist(rendered):
    report, _, _ = rendered
    out = report.out_dir
    for name in ("index.qmd", "_quarto.yml", "index.html", "index.pdf"):
        assert (out / name).exists(), name
    assert report.figures == 1 and (out / "figures" / "fig-divergence-params.svg").exists()
    assert report.outputs.pdf.read_bytes()[:5] == b"%PDF-"
    assert not list(out.parent.glob(f".{out.name}-*"))  # no half-built leftovers


def test_html_is_self_contained_with_one_vega_runtime(rendered):
    report, _, _ = rendered
    html = report.outputs.html.read_text()
    assert html.count("<script") == 1  # runtime and every chart spec in one inline module script
    assert 'id="vis-fig-divergence-params"' in html
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?://', html)  # nothing fetched online


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
        p, lo, hi = wilson(nuclear, n)
        assert row[header.index("Nuclear")] == f"{p:.0%} [{lo:.0%}, {hi:.0%}]"
        assert row[header.index("Welfare")].split(" ")[0] == f"{welfare:.{1 if abs(welfare) >= 100 else 3 if abs(welfare) < 10 else 2}f}"
        assert row[header.index("N")] == f"{n}/3"


def test_abstract_states_numbers_from_the_data(rendered):
    report, db, _ = rendered
    html = report.outputs.html.read_text()
    con = duckdb.connect(str(db), read_only=True)
    done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    planned = con.execute("SELECT count(*) FROM plan").fetchone()[0]
    assert f"We planned {planned} games" in html and f"{done} finished" in html


def test_model_text_is_text_in_html(rendered):
    report, _, _ = rendered
    html = report.outputs.html.read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html or "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    assert "<strong>bold</strong>" not in html and "**bold**" in html
    assert 'href="http://evil.example"' not in html


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


def test_report_rerenders_from_the_database_without_model_calls(rendered, tmp_path):
    report, db, overrides = rendered
    calls_before = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM calls").fetchone()[0]
    result = run_cli("report", "model_size", *overrides, "--formats", "html")
    assert result.returncode == 0, result.stderr
    calls_after = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM calls").fetchone()[0]
    assert calls_after == calls_before


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
        load_spec("model_size", [f"report.sections={sections}"])


def test_escape_and_code_block_are_safe():
    assert escape("<b>") == "\\<b\\>"
    assert escape("a\n\n# b") == "a \\# b"
    block = code_block("x ```` y")
    assert block.startswith("`````") and block.endswith("`````")
