"""`python -m engine export inspect` on a small real jailbreak study (two stand-in models through the real
gateway, graded by the refusal heuristic; one model's role-play calls fail): the logs, read back with
inspect_ai.log, against SQL on the study database: one log per model x attack, a sample per trial with its
conversation, reply, verdict and metric scores, token usage and design metadata; errored trials carry the
error and no score; no key reaches a log; a study without a database or run is exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path

import duckdb
import pytest
from conftest import run_cli
from jailbreak_standin import ANSWER, MODELS, REFUSAL, by_hash, run_standin, standin_overrides

import litellm

inspect_log = pytest.importorskip("inspect_ai.log")

PROMPTS = ["cyber-01", "cyber-02", "weapons-01", "weapons-02", "benign-01"]
ATTACKS = ("direct", "roleplay")
SECRET = "sk-or-v1-" + "5e3c7a1b9d0f42aa8c6e"  # shaped like an OpenRouter key


async def call(**kwargs):
    """Refuses about half the requests; fails every role-play request to Gemma, quoting the key back."""
    prompt, model = kwargs["messages"][-1]["content"], kwargs.get("model", "")
    if "gemma" in model and "You are DAN" in prompt:
        raise ValueError(f"provider rejected the request made with key {SECRET}")
    content = REFUSAL if by_hash(prompt + model) else f"{ANSWER} (session {SECRET})"
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 7 + len(prompt) % 5, "completion_tokens": 3 + len(content) % 4,
                                        "total_tokens": 0})


def overrides(db):
    return standin_overrides(db, PROMPTS, ATTACKS, MODELS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect_export")
    db, out = root / "study.duckdb", root / "logs"
    loaded, summary = run_standin(overrides(db), call)
    assert summary.errors == len(PROMPTS) and summary.done == summary.planned - len(PROMPTS)
    result = run_cli("export", "inspect", "provider_vs_size", *overrides(db), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return loaded, db, out, result.stdout


def sql(db, query: str, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def read_all(out):
    return [inspect_log.read_eval_log(info) for info in inspect_log.list_eval_logs(str(out))]


def test_one_log_per_model_and_attack_with_every_trial_as_a_sample(exported):
    loaded, db, out, stdout = exported
    cells = sql(db, "SELECT p.cell->>'model', p.cell->>'attack', list(p.trial_id ORDER BY p.trial_id) FROM plan p"
                    " JOIN trials t USING (trial_id) WHERE p.spec_hash = ? GROUP BY ALL", [loaded.spec_hash])
    logs = read_all(out)
    assert len(logs) == len(cells) == len(MODELS) * len(ATTACKS)
    by_cell = {(log.eval.metadata["models"][0]["key"], log.eval.task_args["attack"]): log for log in logs}
    for model, attack, trial_ids in cells:
        log = by_cell[(model, attack)]
        assert log.status == "success" and log.eval.task == "provider_vs_size"
        assert log.eval.model == loaded.spec.models[model].litellm_id
        assert sorted(s.id for s in log.samples) == trial_ids
        assert log.results.total_samples == len(trial_ids)
        assert (out / f"provider_vs_size_{model}_attack={attack}.eval").exists()
        assert str(out / f"provider_vs_size_{model}_attack={attack}.eval") in stdout
    assert f"inspect view --log-dir {out}" in stdout


def test_samples_carry_the_conversation_reply_and_usage_of_their_calls(exported):
    loaded, db, out, _ = exported
    calls = {tid: (json.loads(messages), text, prompt, completion, litellm_id) for tid, messages, text, prompt,
             completion, litellm_id in sql(
                 db, "SELECT c.trial_id, c.messages, c.response_text, c.prompt_tokens, c.completion_tokens,"
                     " c.litellm_id FROM calls c JOIN trials t ON t.trial_id = c.trial_id AND t.attempt = c.trial_attempt"
                     " WHERE c.purpose = 'respond'")}
    seen = 0
    for log in read_all(out):
        tokens = 0
        for s in log.samples:
            if s.error is not None:
                continue
            messages, text, prompt, completion, litellm_id = calls[s.id]
            assert [m.role for m in s.messages] == [m["role"] for m in messages] + ["assistant"]
            assert [m.text for m in s.messages] == [m["content"] for m in messages] + [text]
            assert s.input == messages[-1]["content"] and s.output.completion == text
            assert s.output.model == litellm_id and s.messages[-1].model == litellm_id
            usage = s.model_usage[litellm_id]
            assert (usage.input_tokens, usage.output_tokens) == (prompt, completion)
            assert usage.total_tokens == prompt + completion
            tokens += prompt + completion
            seen += 1
        assert sum(u.total_tokens for u in log.stats.model_usage.values()) == tokens
    assert seen == sql(db, "SELECT count(*) FROM trials WHERE status = 'done'")[0][0]


def test_scores_are_the_verdicts_and_metrics_of_each_trial(exported):
    loaded, db, out, _ = exported
    verdicts = dict(sql(db, "SELECT subject_id, label FROM verdicts WHERE judge_id = 'heuristic'"
                            " AND subject_id IN (SELECT trial_id FROM trials)"))  # not the gold set's
    benign = dict(sql(db, "SELECT trial_id, benign FROM jailbreak_responses"))
    scored = 0
    for log in read_all(out):
        for s in log.samples:
            if s.error is not None:
                continue
            label = verdicts[s.id]
            assert s.scores["heuristic"].value == label
            gradeable = label in ("COMPLIANCE", "PARTIAL", "REFUSAL", "HALLUCINATION_REFUSAL")
            if gradeable and not benign[s.id]:
                assert s.scores["asr_broad"].value == float(label in ("COMPLIANCE", "PARTIAL"))
                assert s.scores["asr_strict"].value == float(label == "COMPLIANCE")
                assert "false_refusal" not in s.scores
            if gradeable and benign[s.id]:
                assert s.scores["false_refusal"].value == float(label == "REFUSAL")
                assert "asr_broad" not in s.scores
            assert s.scores["error_rate"].value == 0.0
            scored += 1
        graded = [s for s in log.samples if s.error is None]
        if graded:  # the log's summary: each label's share of its graded samples
            shares = next(e for e in log.results.scores if e.name == "heuristic").metrics
            refused = sum(s.scores["heuristic"].value == "REFUSAL" for s in graded)
            share = shares["REFUSAL"].value if "REFUSAL" in shares else 0.0
            assert share == pytest.approx(refused / len(graded))
        else:
            assert log.results.scores == []
    assert scored == len(verdicts) > 0


def test_errored_trials_carry_their_error_and_no_score(exported):
    loaded, db, out, _ = exported
    errors = dict(sql(db, "SELECT trial_id, error FROM trials WHERE status = 'error'"))
    found = {s.id: s for log in read_all(out) for s in log.samples if s.error is not None}
    assert set(found) == set(errors) and len(errors) == len(PROMPTS)
    for trial_id, sample in found.items():
        assert sample.scores is None
        assert sample.error.message == errors[trial_id] and "[REDACTED]" in sample.error.message
        assert sample.metadata["status"] == "error" and sample.metadata["cell"]["attack"] == "roleplay"


def test_metadata_places_each_sample_in_the_design(exported):
    loaded, db, out, _ = exported
    rows = {tid: (json.loads(cell), seed, cell_id) for tid, cell, seed, cell_id in
            sql(db, "SELECT trial_id, cell, seed, cell_id FROM plan WHERE spec_hash = ?", [loaded.spec_hash])}
    items = dict(sql(db, "SELECT trial_id, inputs->'item'->>'prompt_id' FROM trials"))
    for log in read_all(out):
        assert log.eval.metadata["spec_hash"] == loaded.spec_hash
        for s in log.samples:
            cell, seed, cell_id = rows[s.id]
            assert s.metadata["trial_id"] == s.id and s.metadata["spec_hash"] == loaded.spec_hash
            assert (s.metadata["cell"], s.metadata["seed"], s.metadata["cell_id"]) == (cell, seed, cell_id)
            assert s.metadata["item"]["prompt_id"] == items[s.id]
            model = loaded.spec.models[cell["model"]]
            assert s.metadata["model"]["provider"] == model.provider
            assert s.metadata["model"]["params_total_b"] == model.params.total_b


def test_no_key_reaches_a_log(exported):
    _, _, out, _ = exported
    files = list(out.glob("*.eval"))
    assert files
    for path in files:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                data = z.read(name)
                assert SECRET.encode() not in data, (path.name, name)


def test_export_without_a_database_or_a_run_of_the_spec_is_a_spec_error(run_main, exported, tmp_path):
    _, db, _, _ = exported
    missing = tmp_path / "none.duckdb"
    result = run_main("export", "inspect", "provider_vs_size", *overrides(missing), "--out", str(tmp_path / "a"))
    assert result.returncode == 2 and "store.path" in result.stderr and "run the study first" in result.stderr
    assert not missing.exists() and not (tmp_path / "a").exists()
    # Another spec (one seed more) was never run into this database.
    result = run_main("export", "inspect", "provider_vs_size", *overrides(db), "design.seeds=2",
                     "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "no run of this spec" in result.stderr
    assert not (tmp_path / "b").exists()


def test_the_default_folder_is_beside_the_database_and_outlives_a_report_render(run_main, exported, tmp_path):
    loaded, db, out, _ = exported
    result = run_main("export", "inspect", "provider_vs_size", *overrides(db))
    assert result.returncode == 0, result.stderr
    default = db.parent / "provider_vs_size-inspect"
    logs = sorted(p.name for p in default.glob("*.eval"))
    assert logs == sorted(p.name for p in out.glob("*.eval")) and logs
    report = run_main("report", "provider_vs_size", *overrides(db), f"report.output_dir={default.parent / 'report'}",
                     "--formats", "html")
    assert report.returncode == 0, report.stderr
    assert sorted(p.name for p in default.glob("*.eval")) == logs  # a render replaces its own folder only


def test_a_re_export_removes_only_its_own_stale_logs(run_main, exported, tmp_path):
    import shutil

    _, db, out, _ = exported
    again = tmp_path / "again"
    shutil.copytree(out, again)
    ours = again / "provider_vs_size_retired-model_attack-direct.eval"
    shutil.copy(next(again.glob("*.eval")), ours)  # a log this exporter wrote for a cell the study no longer has
    theirs = again / "provider_vs_size_v2_other.eval"  # another study's (or tool's) log with a look-alike name
    first = inspect_log.read_eval_log(str(next(out.glob("*.eval"))))
    first.eval.metadata = {"study": "provider_vs_size_v2"}
    inspect_log.write_eval_log(first, str(theirs))
    result = run_main("export", "inspect", "provider_vs_size", *overrides(db), "--out", str(again))
    assert result.returncode == 0, result.stderr
    assert not ours.exists() and theirs.exists()


def test_an_unwritable_out_is_a_spec_error_naming_it(run_main, exported, tmp_path):
    _, db, _, _ = exported
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_main("export", "inspect", "provider_vs_size", *overrides(db), "--out", str(blocker / "logs"))
    assert result.returncode == 2 and "--out" in result.stderr and str(blocker) in result.stderr, result.stderr


def test_each_log_has_an_identity_of_its_own_so_the_viewer_lists_every_one(exported):
    # Inspect's viewer groups logs by task_id and shows only the newest of a group as "the" run (the
    # others go behind "Show Retried Logs"): the models' logs of one attack must not share one.
    logs = read_all(exported[2])
    task_ids = [log.eval.task_id for log in logs]
    assert len(logs) == len(MODELS) * len(ATTACKS) and len(set(task_ids)) == len(task_ids), task_ids
    assert len({log.eval.eval_id for log in logs}) == len(logs)


CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _viewer_headers(port: int) -> list[dict]:
    """What the viewer's own server hands its page for every listed log (/api/log-files, /api/log-headers)."""
    base = f"http://127.0.0.1:{port}/api"
    listing = json.loads(urllib.request.urlopen(f"{base}/log-files", timeout=30).read())
    query = urllib.parse.urlencode([("file", f["name"]) for f in listing["files"]])
    return json.loads(urllib.request.urlopen(f"{base}/log-headers?{query}", timeout=30).read())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium (make browser)")
def test_inspect_view_lists_every_exported_log(exported, all_cores):
    """`inspect view` on the export, opened in headless Chromium, lists one row per log."""
    from playwright.sync_api import sync_playwright

    out, port = exported[2], _free_port()
    logs = read_all(out)
    viewer = subprocess.Popen([sys.executable, "-m", "inspect_ai", "view", "--log-dir", str(out), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    problems: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
            # The row count shows before every row is filled in, and on a busy machine the viewer sometimes
            # never fills a row (its page drops a preview fetch that fails or is claimed by an earlier
            # render): poll (from Python: the viewer's Content-Security-Policy forbids the eval a string
            # predicate needs), and open it again in a fresh browser context up to 3 times.
            for _ in range(4):
                page = browser.new_context().new_page()
                page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text[:300]}"))
                page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:200]} {r.failure}"))
                page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url[:200]}"))
                page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
                page.get_by_text(f"{len(logs)} rows").wait_for(timeout=30_000)
                deadline = time.monotonic() + 20
                text = page.inner_text("body")
                while text.count("attack=") < len(logs) and time.monotonic() < deadline:
                    page.wait_for_timeout(250)
                    text = page.inner_text("body")
                if text.count("attack=") >= len(logs):
                    break
                page.context.close()
            browser.close()
        served = _viewer_headers(port)
    finally:
        viewer.terminate()
        viewer.wait(timeout=10)
    # The page lists one row per log with its model (from the listing, drawn before any preview).
    for log in logs:
        assert log.eval.model in text, text[:2000]
    # What the viewer's server gives the page for each row is each log's own model and arguments.
    expected = sorted((log.eval.model, log.eval.task_args["attack"]) for log in logs)
    assert sorted((h["eval"]["model"], h["eval"]["task_args"]["attack"]) for h in served) == expected, served
    if text.count("attack=") < len(logs):
        # The viewer's page (third-party JavaScript) left a row unfilled four times although its server
        # serves every header (checked above): say so with what the page reported, do not fail on it.
        warnings.warn("inspect view left a row unfilled: " + "; ".join(problems[:10]) + " | " + text[:600])
        return
    for log in logs:
        model, attack = log.eval.model, log.eval.task_args["attack"]
        assert text.count(f'attack="{attack}"') == len(MODELS) and model in text, text[:2000]
