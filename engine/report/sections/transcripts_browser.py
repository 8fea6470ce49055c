"""The transcript browser: every trial of the study, filterable by model, condition and outcome,
each opening to every model call it made (the messages sent and the reply). HTML only; the PDF says
where to find it.

The page stays one offline file: an index as inline JSON, the transcripts as gzip chunks in a script
file the self-contained HTML embeds (transcript_data.py), and a small vanilla script
(transcript_browser.js) renders one page of rows at a time and a transcript when it is opened. Every
string reaches the page through textContent, never as markup, after the same `model_text`/`neutralise`
treatment as the rest of the report; no text can end a <script> element early (JSON escapes '<', '>'
and '&'; the chunks are base64)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from engine.kernel.contracts import Rendered, Section, check_metric
from engine.kernel.errors import SpecError
from engine.kernel.hashing import content_hash
from engine.kernel.records import Strict
from engine.kernel.registry import register_section
from engine.report.markdown import MODEL_TEXT_LIMIT, escape, json_script_text, model_text_note, raw_html_block
from engine.report.transcript_data import CHUNK_TRIALS, BrowserData, browser_data

SCRIPT = Path(__file__).with_name("transcript_browser.js")
STYLE = """
.tb-controls { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center; margin: 0.5rem 0; }
.tb-controls label { font-size: 0.85rem; }
.tb-table tbody tr { cursor: pointer; }
.tb-table tbody tr:hover, .tb-table tbody tr.tb-open { background: #f0f0f0; }
.tb-detail { border-left: 3px solid #999; padding-left: 0.8rem; margin: 1rem 0; }
.tb-call { margin: 0.8rem 0; }
.tb-call-title { font-weight: bold; font-family: 'Helvetica Neue', Arial, sans-serif; font-size: 0.9rem; }
.tb-role { font-size: 0.75rem; text-transform: uppercase; color: #555; margin-top: 0.4rem; }
.tb-text { background: #f7f7f7; padding: 0.4rem; margin: 0.1rem 0; }
.tb-reply { background: #eef4ff; }
.tb-error { color: #a00; }
"""


def chunks_file(key: str) -> str:
    return f"transcripts/{key}-chunks.js"


def chunks_script(key: str, data: BrowserData) -> str:
    """The transcripts as a script that hands its chunks to the browser (base64: no '<' in it)."""
    return (f"(window.transcriptChunks = window.transcriptChunks || {{}})[{json_script_text(key)}] = "
            f"{json_script_text(data.chunks)};\n")


def browser_html(key: str, data: BrowserData, page_size: int, unit: tuple[str, str]) -> str:
    """The raw HTML block: container, index, script, then the chunks' script (run after the first
    page shows; embedded from its file by pandoc/Quarto)."""
    settings = {"key": key, "pageSize": page_size, "unit": list(unit), "chunkTrials": CHUNK_TRIALS}
    parts = [f"<style>{STYLE}</style>",
             f'<div class="tb" id="{key}" data-trials="{data.trials}"><p class="tb-status">'
             "The transcript browser needs JavaScript.</p></div>",
             f'<script type="application/json" id="{key}-index">{json_script_text(data.index)}</script>',
             f'<script type="application/json" id="{key}-settings">{json_script_text(settings)}</script>',
             f"<script>\n{SCRIPT.read_text()}\n</script>",
             f'<script src="{chunks_file(key)}"></script>']
    return "\n".join(parts)


@register_section
class TranscriptBrowser(Section):
    """Every trial's transcript, browsable in the HTML report."""

    type = "transcript_browser"
    shows_results = True

    class Options(Strict):
        type: str
        outcome: list[str] | None = Field(default=None, description="proportion metrics labelling a trial's outcome, "
                                          "first with a value wins (default: the headline proportions)")
        page_size: int = Field(default=50, gt=0, le=1000)
        max_chars: int = Field(default=MODEL_TEXT_LIMIT, gt=0, description="most characters of a reply shown")

    def check(self, options, scenario, key):
        for i, name in enumerate(options.outcome or []):
            check_metric(name, scenario, f"{key}.outcome.{i}")
            if next(m for m in scenario.metrics() if m.name == name).kind != "proportion":
                raise SpecError(f"metric '{name}' is a mean; an outcome is a proportion's yes or no",
                                key=f"{key}.outcome.{i}")

    def render(self, ctx, options) -> Rendered:
        one, many = ctx.scenario.unit
        data = browser_data(ctx, options.outcome, options.max_chars)
        counts = ctx.trial_counts
        if not data.trials:
            return Rendered("## Transcript browser\n\n" + escape(
                f"This study ran no {many} of its own ({data.planned} planned), so there are no transcripts to browse."))
        # The n-th browser of the report: two alike sections still get their own element ids and files.
        n = ctx.shared["transcript_browsers"] = ctx.shared.get("transcript_browsers", 0) + 1
        key = "tb-" + content_hash([ctx.spec_hash, options.model_dump(), n], 8)
        intro = (f"All {data.trials} {many if data.trials != 1 else one} this study ran ({counts['done']} finished, "
                 f"{counts['errors']} ended in an error; {data.planned} planned). Filter them by model, condition and "
                 f"outcome (the first of the study's headline rates that measured the {one}; 'error' for an errored "
                 f"{one}, 'not measured' when none did) and open one to read every model call it made: the "
                 f"messages sent and the reply. {model_text_note(options.max_chars)}")
        pdf_note = f"{data.trials} transcripts: open the HTML report (index.html) to browse them."
        return Rendered("\n\n".join([
            "## Transcript browser",
            '::: {.content-visible when-format="html"}', escape(intro),
            raw_html_block(browser_html(key, data, options.page_size, ctx.scenario.unit)), ":::",
            '::: {.content-visible unless-format="html"}', escape(pdf_note), ":::"]),
            files={chunks_file(key): chunks_script(key, data)})
