"""Real local LLMs through litellm (llama.cpp custom provider), and a small real study."""

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess

import duckdb
import litellm
import pytest
from conftest import REPO, run_cli

from engine.kernel.errors import WeightsError
from engine.providers.prepare import prepare_models
from engine.providers.local_llama import locate_weights
from engine.scenarios.escalation.agents import REPLY_SCHEMA, parse_reply
from engine import load_study
from engine.spec.load import CONFIG_PATH_ENV
from engine.spec.schema import Weights

pytestmark = pytest.mark.slow

MODELS = load_study("model_size").spec.models
# A small real study: SmolLM2 in mirror matches, 2 seeds x 2 turns (8 calls), beside the scripted null control.
SMALL_STUDY = ["run", "model_size", "design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]",
               "design.controls=[{agent: [scripted:null]}]", "design.seeds=2", "scenario.max_turns=2",
               "--no-progress", "--no-report"]


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> tuple[str, subprocess.CompletedProcess]:
    """SMALL_STUDY run once for the module, in this process as `run_main` runs it: its database (tests
    read it; one that writes copies it) and its exit code and output. Replies do not depend on what the
    tests before left in the models' KV caches (engine/providers/prefix_states.py)."""
    from engine.cli import main

    db = tmp_path_factory.mktemp("small_study") / "small.duckdb"
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        if not os.environ.get(CONFIG_PATH_ENV):
            mp.delenv(CONFIG_PATH_ENV, raising=False)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*SMALL_STUDY, f"store.path={db}"])
    return str(db), subprocess.CompletedProcess(SMALL_STUDY, code, out.getvalue(), err.getvalue())


def live_replies(db: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute("SELECT trial_id, purpose, request_hash, response_text FROM calls "
                           "WHERE NOT cache_hit ORDER BY trial_id, purpose").fetchall()
    finally:
        con.close()


def smollm_call(seed: int, content: str = "Turn 1. Current level: you 0, opponent 3. Your move?"):
    prepare_models(MODELS, {"smollm2_135m"}, local_threads=2)
    return asyncio.run(litellm.acompletion(
        model="local/smollm2-135m-instruct", seed=seed, temperature=0.8, max_tokens=80,
        messages=[{"role": "system", "content": "You lead a nation in a crisis. Reply in JSON."},
                  {"role": "user", "content": content}],
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": REPLY_SCHEMA}}))


def test_smollm2_through_litellm_answers_schema_json_reproducibly():
    first, again = smollm_call(seed=3), smollm_call(seed=3)
    text = first.choices[0].message.content
    value, status = parse_reply(text)
    assert status == "ok", text  # grammar-constrained output parses as it is
    assert set(json.loads(text)) == {"reasoning", "signal_level", "action_level"}
    assert again.choices[0].message.content == text  # same seed, same reply
    assert first.usage.prompt_tokens > 10 and first.usage.completion_tokens > 0
    # Seeds vary the reply: some seed of 4..8 gives another (asked one at a time, until one does).
    assert any(smollm_call(seed=s).choices[0].message.content != text for s in range(4, 9))


def test_weight_checksum_mismatch_is_refused():
    w = MODELS["smollm2_135m"].weights
    bad = Weights(source=w.source, package=w.package, file=w.file, sha256="0" * 64)
    with pytest.raises(WeightsError, match="does not match"):
        locate_weights(bad)
    missing = Weights(source="package_file", package="no_such_weights_pkg", file="x.gguf", sha256="0" * 64)
    with pytest.raises(WeightsError, match="not installed"):
        locate_weights(missing)


def test_small_real_study_end_to_end_then_rerun_makes_no_calls(small_study, tmp_path, run_main):
    db, first = small_study
    assert first.returncode == 0, first.stderr
    assert "SmolLM2 135M" in first.stdout and "scripted:null" in first.stdout
    con = duckdb.connect(db, read_only=True)
    trials = con.execute("SELECT status, count(*) FROM trials GROUP BY status").fetchall()
    assert dict(trials).get("done", 0) + dict(trials).get("error", 0) == 4
    calls = con.execute("SELECT count(*), count(*) FILTER (WHERE cache_hit), min(prompt_tokens) FROM calls").fetchone()
    assert calls[0] >= 2 * 2 * 2 * (dict(trials).get("done", 0) > 0) and calls[1] == 0 and calls[2] > 0
    turns = con.execute("SELECT count(*) FROM escalation_turns t JOIN trials USING (trial_id) "
                        "WHERE cell->>'agent' = 'smollm2_135m'").fetchone()[0]
    assert turns > 0
    spec = con.execute("SELECT spec, package_versions FROM studies").fetchone()
    assert json.loads(spec[0])["name"] == "model_size" and "llama_cpp_python" in json.loads(spec[1])
    con.close()

    rerun = tmp_path / "rerun.duckdb"
    shutil.copy(db, rerun)
    again = run_main(*SMALL_STUDY, f"store.path={rerun}")
    assert again.returncode == 0, again.stderr
    assert "4 already finished, 0 done now" in again.stdout and "live calls 0" in again.stdout


def test_api_keys_never_reach_the_database(tmp_path):
    """A real OpenRouter call fails here (no network); the key must not be stored or printed."""
    db = tmp_path / "keys.duckdb"
    secret = "sk-or-v1-THIS-IS-A-TEST-SECRET-0123456789"
    result = run_cli("run", "model_size", "model_set=openrouter_size_paper", "design.factors.agent=[llama31_8b]",
                     "design.factors.persona=[default]", "design.controls=[]", "design.seeds=1",
                     "scenario.max_turns=1", "executor.max_retries=1", "executor.backoff_initial_s=0.01",
                     "executor.timeout_s=5", f"store.path={db}", "--no-progress",
                     env={"OPENROUTER_API_KEY": secret})
    assert secret not in result.stdout + result.stderr
    con = duckdb.connect(str(db), read_only=True)
    status, error = con.execute("SELECT status, error FROM trials").fetchone()
    assert status == "error" and "llama-3.1-8b" in error  # recorded as an error, not an outcome
    assert con.execute("SELECT count(*) FROM escalation_episodes").fetchone()[0] == 0
    for table in ("studies", "trials", "calls", "responses"):
        dump = con.execute(f"SELECT * FROM {table}").fetchall()
        assert secret not in repr(dump)


def test_token_budget_stops_the_run_and_a_rerun_resumes_from_cache(tmp_path, run_main):
    # A call takes about 400 tokens (prompt and reply), a trial makes 2: the cap is passed at the first call
    # of the first trial, which is left unfinished with the other trial not started.
    db = tmp_path / "budget.duckdb"
    args = ["run", "model_size", "design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]",
            "design.controls=[]", "design.seeds=2", "scenario.max_turns=1", "executor.max_concurrent_trials=1",
            f"store.path={db}", "--no-progress", "--no-report"]
    capped = run_main(*args, "executor.budget.max_tokens=300")
    assert capped.returncode == 3, capped.stderr  # stopped by the budget: says so, names the key, exits 3
    assert "0 done now" in capped.stdout and "2 not run (budget)" in capped.stdout
    assert "budget reached" in capped.stdout and "executor.budget.max_tokens=300" in capped.stdout
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 0  # nothing half-counted
    spent = con.execute("SELECT count(*), sum(prompt_tokens + completion_tokens) FROM responses").fetchone()
    con.close()
    assert spent[0] == 1 and spent[1] >= 300  # stopped at the first call past the cap, mid-trial

    resumed = run_main(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 done now" in resumed.stdout and f"cache hits {spent[0]}" in resumed.stdout


def test_two_runs_give_byte_identical_replies(small_study, tmp_path, run_main):
    """Same trials, same seeds, same replies: the module's run and a second run of the same study in this
    process (its model loaded, its KV cache holding the last prompt of whatever ran before) give the same
    replies."""
    first_db, _ = small_study
    db = tmp_path / "second.duckdb"
    result = run_main(*SMALL_STUDY, f"store.path={db}")
    assert result.returncode == 0, result.stderr
    first, second = live_replies(first_db), live_replies(str(db))
    assert len(first) >= 4 and first == second
