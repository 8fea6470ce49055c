"""The transcript browser, checked in headless Chromium on a real report: an escalation study
(multi-turn) played by two stand-in models through the real gateway and store, one of them writing
hostile markup in every reply, one failing on some games, plus a scripted control cell. The counts
the page shows under each filter are compared with SQL on the study database, an opened game must
show every call's prompt and reply as text, and nothing may run, be injected or be fetched."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from pathlib import Path

import duckdb
import litellm
import pytest
from jailbreak_standin import refuses_by_hash, run_standin, standin_overrides

from engine import build_report, load_study
from engine.execute.gateway import Gateway
from engine.kernel.errors import SpecError
from engine.report.context import ReportContext
from engine.report.transcript_data import browser_data
from engine.store.db import StudyStore
from engine.study import run_study

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = "</script><img src=x onerror=alert(1)> <b>bold</b>"
MODELS = ("smollm2_135m", "gemma3_270m")
PAGE_SIZE = 5


def overrides(tmp: Path, sections: str = f"[{{type: summary}}, {{type: transcript_browser, page_size: {PAGE_SIZE}}}]",
              out_dir: Path | None = None) -> list[str]:
    out = ["design.factors.agent=[smollm2_135m,gemma3_270m]", "design.factors.persona=[default,adversarial]",
           "design.controls=[{agent:[scripted:hawk]}]", "design.seeds=3", "scenario.max_turns=3",
           f"store.path={tmp / 'study.duckdb'}", f"report.output_dir={out_dir or tmp / 'report'}", f"report.sections={sections}"]
    for key in MODELS:
        out += [f"models.{key}.litellm_id=openrouter/stand-in/{key}", f"~models.{key}.weights", f"++models.{key}.chat_template=null"]
    return out


async def standin(**kwargs):
    """Moves from a hash of the prompt; SmolLM2 writes markup into its reasoning; Gemma under the
    adversarial persona is refused by the provider at turn 2, so those games end in an error."""
    model, messages = kwargs.get("model", ""), kwargs["messages"]
    user = messages[-1]["content"]
    if "gemma" in model and "Explore aggressive" in messages[0]["content"] and "Turn 2 of" in user:
        raise litellm.BadRequestError("stand-in rejects this request", model=model, llm_provider="openrouter")
    h = hashlib.sha256((model + user).encode()).digest()
    marker = f"call {h.hex()[:10]}"
    reasoning = f"{HOSTILE} {marker}" if "smollm2" in model else f"Measured reply, {marker}"
    content = json.dumps({"reasoning": reasoning, "signal_level": h[1] % 10, "action_level": h[2] % 10})
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    args = overrides(tmp)
    _, summary, _ = run_study("model_size", args, show_progress=False,
                              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=standin))
    assert summary.done and summary.errors  # both kinds of trial are there to browse
    report = build_report("model_size", args, formats=("html",), force_pandoc=True)
    return tmp / "study.duckdb", report.outputs.html, load_study("model_size", args)


def sql(db: Path, query: str, *params):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def trials_sql(db: Path, spec_hash: str, where: str = "TRUE", *params) -> int:
    return sql(db, "SELECT count(*) FROM plan p JOIN trials t USING (trial_id) LEFT JOIN escalation_episodes e"
               f" USING (trial_id) WHERE p.spec_hash = ? AND {where}", spec_hash, *params)[0][0]


JAILBREAK_PROMPTS = ["cyber-01", "cyber-02", "weapons-01", "benign-01", "benign-02"]


@pytest.fixture(scope="module")
def jailbreak_study(tmp_path_factory):
    """provider_vs_size on two stand-ins (one call per trace), graded by the refusal heuristic."""
    db = tmp_path_factory.mktemp("browser-jailbreak") / "jb.duckdb"
    loaded, summary = run_standin(standin_overrides(db, JAILBREAK_PROMPTS, ("direct", "roleplay")), refuses_by_hash)
    assert summary.done == summary.planned == len(JAILBREAK_PROMPTS) * 2 * 2
    return db, loaded


@pytest.fixture(scope="module")
def browser(study, jailbreak_study):
    # After the studies: sync playwright runs an event loop of its own, and a study's run needs none running.
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, study):
    """The report opened from file://, with every request that would leave file:// recorded and
    aborted, and every dialog recorded (and dismissed)."""
    _, html, _ = study
    page = browser.new_page()
    outside, dialogs = [], []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(html.as_uri())
    page.wait_for_selector(".tb[data-ready-ms]")
    yield page
    page.close()
    assert outside == [], "requests left file://"
    assert dialogs == [], "a dialog fired"


def matching(page) -> int:
    return int(page.get_attribute(".tb-count", "data-matching"))


def choose(page, name: str, label_prefix: str) -> str:
    """Select the first option of filter `name` whose label starts with `label_prefix`; its label."""
    options = page.eval_on_selector_all(f"select[name={name}] option", "os => os.map(o => [o.value, o.textContent])")
    value, text = next((v, t) for v, t in options if t.startswith(label_prefix))
    page.select_option(f"select[name={name}]", value)
    return re.sub(r" \(\d+\)$", "", text)


def test_total_and_first_page(page, study):
    db, _, loaded = study
    total = trials_sql(db, loaded.spec_hash)
    assert total == 15  # 2 models x 2 personas x 3 seeds + 3 scripted games
    assert matching(page) == total
    assert page.locator(".tb-table tbody tr").count() == PAGE_SIZE
    shown = 0
    while True:  # paging through every match shows each trial once
        shown += page.locator(".tb-table tbody tr").count()
        if page.is_disabled(".tb-next"):
            break
        page.click(".tb-next")
    assert shown == total


def test_model_filter_matches_sql(page, study):
    db, _, loaded = study
    for key in MODELS:
        label = choose(page, "model", loaded.spec.models[key].label)
        assert label == loaded.spec.models[key].label
        expected = trials_sql(db, loaded.spec_hash, "t.cell->>'agent' = ?", key)
        assert expected and matching(page) == expected
        rows = page.locator(".tb-table tbody tr td:nth-child(2)").all_text_contents()
        assert rows and set(rows) == {label}


def test_outcome_filter_matches_sql(page, study):
    db, _, loaded = study
    choose(page, "outcome", "error")
    assert matching(page) == trials_sql(db, loaded.spec_hash, "t.status = 'error'") > 0
    for answer, nuclear in (("yes", True), ("no", False)):
        expected = trials_sql(db, loaded.spec_hash, "t.status = 'done' AND e.nuclear = ?", nuclear)
        if expected:
            choose(page, "outcome", f"Nuclear: {answer}")
            assert matching(page) == expected
    # Filters combine: one model and its errors.
    choose(page, "model", loaded.spec.models["gemma3_270m"].label)
    choose(page, "outcome", "error")
    assert matching(page) == trials_sql(db, loaded.spec_hash, "t.status = 'error' AND t.cell->>'agent' = ?",
                                        "gemma3_270m")


def open_first(page, model_label: str, outcome: str = "") -> None:
    choose(page, "model", model_label)
    if outcome:
        choose(page, "outcome", outcome)
    page.click(".tb-table tbody tr >> nth=0")
    page.wait_for_selector(".tb-detail[data-open]")


def calls_of_first(page, db: Path, spec_hash: str) -> list[tuple]:
    """The opened game's calls (its last attempt), by SQL, in the order they were made."""
    number = int(page.get_attribute(".tb-detail", "data-open"))
    trial_id = sql(db, "SELECT trial_id FROM plan p JOIN trials USING (trial_id) WHERE p.spec_hash = ? ORDER BY p.position"
                   " LIMIT 1 OFFSET ?", spec_hash, number)[0][0]
    return sql(db, "SELECT c.messages, c.response_text FROM calls c JOIN trials t ON t.trial_id = c.trial_id"
               " AND c.trial_attempt = t.attempt WHERE c.trial_id = ? ORDER BY c.created_at, c.call_id", trial_id)


def test_opened_game_shows_every_turn_as_literal_text(page, study):
    db, _, loaded = study
    images_before = page.locator("img").count()
    open_first(page, loaded.spec.models["smollm2_135m"].label)
    calls = calls_of_first(page, db, loaded.spec_hash)
    assert len(calls) >= 2  # both sides moved at least once
    assert page.locator(".tb-detail .tb-call").count() == len(calls)
    replies = page.locator(".tb-detail .tb-reply").all_text_contents()
    assert replies == [reply for _, reply in calls]  # every reply, in order, as literal text
    assert all(HOSTILE in r for r in replies)
    detail_text = page.text_content(".tb-detail")
    for messages, _ in calls:
        for message in json.loads(messages):
            assert message["content"] in detail_text
    # The markup stayed text: nothing was injected anywhere in the page.
    assert page.locator("img").count() == images_before
    assert page.locator(".tb-detail b, .tb-detail img, .tb-detail script").count() == 0


def test_errored_game_shows_its_error_and_calls(page, study):
    db, _, loaded = study
    open_first(page, loaded.spec.models["gemma3_270m"].label, "error")
    calls = calls_of_first(page, db, loaded.spec_hash)
    assert page.locator(".tb-detail .tb-call").count() == len(calls) > 0
    assert "stand-in rejects this request" in page.text_content(".tb-detail")


def test_embedded_data_survives_pandoc(study):
    """The index JSON in the HTML parses back to exactly what the section built from the database,
    and no data element contains a raw '<'."""
    db, html, loaded = study
    page = html.read_text()
    found = re.search(r'<script type="application/json" id="(tb-[0-9a-f]+)-index">(.*?)</script>', page, re.S)
    assert found
    built = built_data(db, loaded)
    assert json.loads(found.group(2)) == built.index
    # The chunks' script file, embedded by pandoc: one inline <script> handing over exactly the chunks built.
    embedded = re.search(r'<script>\(window\.transcriptChunks = window\.transcriptChunks \|\| \{\}\)\["'
                         + found.group(1) + r'"\] = (\[.*?\]);\s*</script>', page, re.S)
    assert embedded, "the chunks' script is not embedded in the page"
    assert json.loads(embedded.group(1)) == built.chunks
    assert f'src="transcripts/{found.group(1)}-chunks.js"' not in page  # embedded, not referenced
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="?https?://', page)


def test_pdf_gets_a_note_not_the_browser(study, tmp_path):
    db, _, loaded = study
    args = overrides(db.parent, out_dir=tmp_path / "pdf")
    report = build_report("model_size", args, formats=("pdf",), force_pandoc=True)
    typ = (report.out_dir / "index.typ").read_text()
    total = trials_sql(db, loaded.spec_hash)
    assert f"{total} transcripts: open the HTML report" in typ
    assert "tb-chunk" not in typ and "DecompressionStream" not in typ


def test_outcome_must_be_a_proportion(tmp_path):
    with pytest.raises(SpecError) as info:
        load_study("model_size", overrides(tmp_path, "[{type: transcript_browser, outcome: [divergence]}]"))
    assert info.value.key == "report.sections.0.outcome.0"
    assert not (tmp_path / "study.duckdb").exists()


def built_data(db, loaded):
    """What the section builds from the study database (with its default options)."""
    store = StudyStore(db, read_only=True)
    try:
        return browser_data(ReportContext(loaded, store.con, loaded.scenario, str(db)), None, 4000)
    finally:
        store.close(checkpoint=False)


def test_single_response_scenario_packs_every_trace(jailbreak_study):
    """Jailbreak (one call per trace, graded by the refusal heuristic): every trace is in the index
    with its judged outcome, and its chunk holds the prompt sent and the reply, as SQL finds them."""
    db, loaded = jailbreak_study
    data = built_data(db, loaded)
    traces = sql(db, "SELECT p.trial_id, r.benign, v.label, c.messages, c.response_text FROM plan p"
                 " JOIN jailbreak_responses r USING (trial_id) JOIN verdicts v ON v.subject_id = p.trial_id"
                 " AND v.judge_id = 'heuristic' JOIN calls c ON c.trial_id = p.trial_id AND c.purpose = 'respond'"
                 " WHERE p.spec_hash = ? ORDER BY p.position", loaded.spec_hash)
    assert data.trials == len(traces) == len(JAILBREAK_PROMPTS) * 2 * 2
    metrics = {m.name: m.label for m in loaded.scenario.metrics()}
    expected = [f"{metrics['false_refusal']}: {'yes' if label == 'REFUSAL' else 'no'}" if benign else
                f"{metrics['asr_strict']}: {'yes' if label == 'COMPLIANCE' else 'no'}" for _, benign, label, _, _ in traces]
    assert [data.index["outcomes"][row[2]] for row in data.index["rows"]] == expected
    assert len(set(expected)) >= 3  # both rates, both answers: the labels are not all alike
    chunks = [json.loads(gzip.decompress(base64.b64decode(c))) for c in data.chunks]
    for row, (trial_id, _, _, messages, reply) in zip(data.index["rows"], traces):
        strings, (packed_id, error, calls) = chunks[row[5]]["s"], chunks[row[5]]["t"][row[6]]
        assert packed_id == trial_id and error == -1 and len(calls) == 1
        _, _, turns, shown_reply, _, _ = calls[0]
        assert strings[shown_reply] == reply
        assert [strings[i] for i in turns[1::2]] == [m["content"] for m in json.loads(messages)]


def test_keys_are_masked_in_messages_and_replies_even_if_the_database_held_one():
    import orjson as _orjson

    from engine.report.transcript_data import Chunk

    canary = "sk-canary" + "0123456789abcdef"
    chunk = Chunk(4000)
    messages = _orjson.dumps([{"role": "system", "content": f"use key {canary}"}, {"role": "user", "content": "hi"}])
    chunk.add("t1", f"failed with {canary}", [("respond", "m", messages, f"my key is {canary}", "ok", "ok", None)])
    data = json.loads(gzip.decompress(base64.b64decode(chunk.pack())))
    assert not any(canary in s for s in data["s"]) and any("[REDACTED]" in s for s in data["s"])


def test_two_browsers_in_one_report_each_get_their_own_ids_and_chunks(study, tmp_path):
    db, _, _ = study
    two = "[{type: transcript_browser}, {type: transcript_browser}]"
    report = build_report("model_size", overrides(db.parent, two, tmp_path / "two"), formats=("html",),
                          force_pandoc=True)
    page = report.outputs.html.read_text()
    ids = re.findall(r'<script type="application/json" id="(tb-[0-9a-f]+)-index">', page)
    assert len(ids) == len(set(ids)) == 2
    for key in ids:
        assert f'(window.transcriptChunks = window.transcriptChunks || {{}})["{key}"]' in page
