"""The gateway over real HTTP: a study runs against the loopback OpenAI-compatible server
(bench/loopback_server.py, its own process), which produces 429s with Retry-After, empty replies
and a 401 that echoes the caller's key on demand. Everything else is the real engine and a real
DuckDB file."""

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli, rows

sys.path.insert(0, str(REPO / "bench"))
from fixtures import loopback_server  # noqa: E402

from engine.execute.limits import AdaptiveLimit  # noqa: E402
from engine.execute.progress import RunProgress  # noqa: E402
from engine.execute.gateway import GatewayStats  # noqa: E402

STUDY = str(REPO / "bench" / "studies" / "gateway_bench.yaml")
CANARY = "sk-canary-0123456789abcdefghij"


def study_args(server, db: Path, *extra: str, seeds: int = 1) -> list[str]:
    # 50 behaviours x 1 attack x seeds, one call each
    return ["run", STUDY, f"models.loopback.api_base={server.api_base}", f"store.path={db}",
            f"design.seeds={seeds}", "executor.backoff_initial_s=0.05", "executor.backoff_max_s=0.2",
            "--no-report", "--no-progress", *extra]



def test_429s_halve_the_route_and_retry_after_is_honoured(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.05, "--fail-429", "8", "--retry-after", "0.6") as server:
        started = time.monotonic()
        result = run_main(*study_args(server, db, "executor.concurrency.loopback=16"),
                         env={"LOOPBACK_API_KEY": "k-test"})
        elapsed = time.monotonic() - started
        served = server.stats()
    assert result.returncode == 0, result.stderr
    # every trial finished; the 429s were retried, never outcomes
    assert rows(db, "SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM trials") == [(50, 50)]
    assert served["requests"] == 50 + 8
    assert "8 rate-limited (429)" in result.stdout
    assert "route loopback: 8 × 429, slots halved" in result.stdout
    assert elapsed > 0.6  # the route paused for Retry-After before retrying


def test_adaptive_limit_halves_once_per_round_and_recovers():
    async def scenario():
        limit = AdaptiveLimit(16)
        t0 = time.monotonic()
        limit.rate_limited(None, t0)
        assert limit.slots == 8 and limit.events.decreases == 1
        limit.rate_limited(None, t0 - 1)  # a request sent before the decrease: the same round
        assert limit.slots == 8 and limit.events.decreases == 1
        for _ in range(200):
            limit.succeeded()
        assert limit.slots == 16  # additive recovery, capped at the configured slots
        limit.rate_limited(0.3, time.monotonic())
        began = time.monotonic()
        async with limit:  # paused until Retry-After has passed
            waited = time.monotonic() - began
        assert waited >= 0.25 and limit.events.paused_s >= 0.25
        return limit

    limit = asyncio.run(scenario())
    assert limit.in_flight == 0


def test_adaptive_limit_never_exceeds_its_slots():
    async def scenario():
        limit = AdaptiveLimit(4)
        peak = 0

        async def call(i):
            nonlocal peak
            async with limit:
                peak = max(peak, limit.in_flight)
                await asyncio.sleep(0.01)
                if i == 10:
                    limit.rate_limited(None, time.monotonic())

        await asyncio.gather(*(call(i) for i in range(60)))
        return peak, limit

    peak, limit = asyncio.run(scenario())
    assert peak <= 4 and limit.in_flight == 0 and limit.events.min_slots == 2


def test_empty_replies_are_retried_and_never_cached(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.01, "--empty", "3") as server:
        result = run_main(*study_args(server, db), env={"LOOPBACK_API_KEY": "k-test"})
    assert result.returncode == 0, result.stderr
    assert "3 empty replies" in result.stdout
    assert rows(db, "SELECT count(*) FROM responses WHERE response_text = ''") == [(0,)]
    assert rows(db, "SELECT count(*) FROM trials WHERE status = 'done'") == [(50,)]


def test_only_empty_replies_make_error_trials_and_nothing_is_cached(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.01, "--empty", "1000") as server:
        result = run_main(*study_args(server, db, "executor.max_retries=1"), env={"LOOPBACK_API_KEY": "k-test"})
    assert result.returncode == 1  # every trial errored
    assert rows(db, "SELECT count(*) FROM responses") == [(0,)]
    errors = rows(db, "SELECT DISTINCT error_kind, error FROM trials")
    assert len(errors) == 1 and errors[0][0] == "provider" and "empty reply" in errors[0][1]


def test_a_key_echoed_by_the_provider_reaches_no_row_log_or_output(tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.01, "--echo-auth") as server:
        result = run_cli(*study_args(server, db, "executor.max_retries=0"), env={"LOOPBACK_API_KEY": CANARY})
        seen = server.stats()["auth"]
    assert f"Bearer {CANARY}" in seen  # the key was sent, as it must be
    assert result.returncode == 1
    assert CANARY not in result.stdout + result.stderr
    errors = rows(db, "SELECT error FROM trials")
    assert len(errors) == 50 and all("[REDACTED]" in e for (e,) in errors)
    # the whole database file, every table and the log
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_the_budget_caps_the_study_across_reruns_and_exits_3(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    # one call = about 150 prompt + 12 completion tokens at $0.15/$0.60 per Mtok: ~$3e-5
    cap = ["executor.budget.max_usd=0.0005", "executor.concurrency.loopback=2"]
    with loopback_server(0.01) as server:
        first = run_main(*study_args(server, db, *cap), env={"LOOPBACK_API_KEY": "k"})
        done_first = rows(db, "SELECT count(*) FROM trials")[0][0]
        spent_first = rows(db, "SELECT sum(cost_usd) FROM responses")[0][0]
        again = run_main(*study_args(server, db, *cap), env={"LOOPBACK_API_KEY": "k"})
        spent_again = rows(db, "SELECT sum(cost_usd) FROM responses")[0][0]
        per_call = spent_first / max(1, rows(db, "SELECT count(*) FROM responses")[0][0])
        raised = run_main(*study_args(server, db, "executor.budget.max_usd=1"), env={"LOOPBACK_API_KEY": "k"})
    assert first.returncode == 3 and again.returncode == 3, (first.stdout, again.stdout)
    assert "executor.budget.max_usd" in first.stdout and "budget reached" in first.stdout
    assert 0 < done_first < 50
    # spend already on record counts: a rerun under the same cap adds at most the calls in flight
    assert spent_first <= 0.0005 + 2 * per_call
    assert spent_again - spent_first <= 2 * per_call + 1e-12
    assert raised.returncode == 0, raised.stdout
    assert rows(db, "SELECT count(*), count(DISTINCT trial_id) FROM trials WHERE status = 'done'") == [(50, 50)]


def test_a_timeout_says_what_timed_out_and_after_how_long(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(3.0) as server:
        result = run_main(*study_args(server, db, "executor.timeout_s=0.3", "executor.max_retries=1",
                                     "scenario.select.per_category=1", "scenario.select.benign=0"),
                         env={"LOOPBACK_API_KEY": "k"})
    assert result.returncode == 1
    (error,) = {e for (e,) in rows(db, "SELECT error FROM trials")}
    assert "no reply within 0.3 s (executor.timeout_s)" in error and "after 1 retry" in error
    assert "TimeoutError:  " not in error


def test_a_missing_key_variable_is_a_spec_error_before_any_call(tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.01) as server:
        env = {k: v for k, v in os.environ.items() if k != "LOOPBACK_API_KEY"}
        result = subprocess.run([sys.executable, "-m", "engine", *study_args(server, db)], cwd=REPO,
                                capture_output=True, text=True, env=env, timeout=300)
        requests = server.stats()["requests"]
    assert result.returncode == 2, result.stderr
    assert "models.loopback.api_key_env" in result.stderr and "LOOPBACK_API_KEY" in result.stderr
    assert requests == 0


def test_two_models_on_two_servers_each_call_lands_on_its_own(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.01, "--model-alias", "server-a") as a, \
            loopback_server(0.01, "--model-alias", "server-b") as b:
        result = run_main(*study_args(a, db, "+models.second={litellm_id: openai/loopback-chat, display_name: B,"
                                     " provider: Loopback, family: Loopback, route: loopback, params: {total_b: 2},"
                                     " price: {input_per_mtok: 0, output_per_mtok: 0}, api_base: " + b.api_base
                                     + ", api_key_env: LOOPBACK_API_KEY}",
                                     "design.factors.model=[loopback,second]"), env={"LOOPBACK_API_KEY": "k"})
        served_a, served_b = a.stats()["requests"], b.stats()["requests"]
    assert result.returncode == 0, result.stderr
    by_model = dict(rows(db, "SELECT model_key, count(*) FROM calls WHERE NOT cache_hit GROUP BY 1"))
    assert by_model == {"loopback": 50, "second": 50}
    assert served_a == 50 and served_b == 50  # same model id and messages, yet not served from one cache
    models = rows(db, "SELECT model_key, json_extract_string(raw_response, '$.model') FROM calls")
    assert {m for k, m in models if k == "loopback"} == {"server-a"}
    assert {m for k, m in models if k == "second"} == {"server-b"}


def test_progress_without_a_terminal_prints_a_line_every_interval():
    out = io.StringIO()
    stats = GatewayStats(live_calls=7, cache_hits=2, cost_usd=0.0123)
    with RunProgress(10, 2, stats, out=out, line_every_s=0.0) as progress:
        progress.trial_finished("done")
        progress.trial_finished("error")
        progress.tick()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trials 4/10 · calls 7 · cache hits 2 · errors 1 · $0.0123")
    assert "ETA" in lines[0] and len(lines) == 2  # the tick and the closing line


def test_a_redirected_run_prints_progress_lines(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    with loopback_server(0.01) as server:
        args = [a for a in study_args(server, db) if a != "--no-progress"]
        result = run_main(*args, env={"LOOPBACK_API_KEY": "k"})
    assert result.returncode == 0, result.stderr
    assert "trials 50/50 · calls 50 · cache hits 0 · errors 0" in result.stdout


def test_executor_defaults_fill_the_routes_slots():
    from engine.spec.schema import Executor

    assert Executor().trials_in_flight({"openrouter"}) == 32
    assert Executor(concurrency={"a": 64, "local": 1}).trials_in_flight({"a", "local"}) == 65
    assert Executor(max_concurrent_trials=3).trials_in_flight({"a"}) == 3


def test_provider_library_is_imported_before_trials_start():
    code = ("import os, sys; os.environ['LITELLM_LOCAL_MODEL_COST_MAP']='True'\n"
            "from engine.execute.gateway import Gateway\n"
            "from engine.spec.schema import Executor, ModelEntry, Params, Price\n"
            "m = ModelEntry(litellm_id='anthropic/claude-x', display_name='x', provider='p', family='f', route='r',"
            " params=Params(total_b=1), price=Price(input_per_mtok=0, output_per_mtok=0))\n"
            "assert 'litellm' not in sys.modules\n"
            "Gateway(Executor(), None, cache=object()).warm_up([m])\n"
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_a_key_in_a_variable_of_any_name_is_masked(tmp_path):
    """api_key_env may name any variable (here not ending in _KEY): its value is masked too."""
    db = tmp_path / "s.duckdb"
    secret = "tok-4f9a8b7c6d5e4f3a2b1c"
    with loopback_server(0.01, "--echo-auth") as server:
        result = run_cli(*study_args(server, db, "executor.max_retries=0", "models.loopback.api_key_env=VLLM_AUTH"),
                         env={"VLLM_AUTH": secret})
    assert result.returncode == 1 and secret not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_an_empty_reply_cut_by_max_tokens_is_billed_and_not_retried(tmp_path):
    from engine.kernel.errors import ProviderError
    from engine.execute.gateway import ChatRequest, Gateway
    from engine.spec.schema import Executor, ModelEntry, Params, Price
    from engine.store.db import StudyStore
    from types import SimpleNamespace

    calls = []

    async def provider(**kwargs):
        calls.append(kwargs)
        choice = SimpleNamespace(message=SimpleNamespace(content=None, tool_calls=None), finish_reason="length")
        return SimpleNamespace(choices=[choice], usage=SimpleNamespace(prompt_tokens=100, completion_tokens=500))

    model = ModelEntry(litellm_id="anthropic/x", display_name="x", provider="p", family="f", route="r",
                       params=Params(total_b=1), price=Price(input_per_mtok=1.0, output_per_mtok=2.0))
    store = StudyStore(tmp_path / "g.duckdb")
    gw = Gateway(Executor(max_retries=4), store, call_fn=provider)
    with pytest.raises(ProviderError) as info:
        asyncio.run(gw.complete(ChatRequest("m", model, [{"role": "user", "content": "q"}], 0.0, 1.0, 500, 1)))
    assert len(calls) == 1  # the same request would stop the same way: not paid for again
    assert "finish_reason=length" in str(info.value) and "generation.max_tokens" in str(info.value)
    assert gw.stats.completion_tokens == 500 and gw.stats.cost_usd == pytest.approx(0.0011)
    store.close()


def test_retry_after_waits_are_capped():
    from engine.kernel.errors import ProviderError
    from engine.execute.gateway import ChatRequest, Gateway
    from engine.execute.transports import TransportError
    from engine.spec.schema import Executor, ModelEntry, Params, Price

    sleeps = []

    async def provider(**kwargs):
        raise TransportError("HTTP 429: quota", 429, retry_after_s=3600)

    async def sleep(s):
        sleeps.append(s)

    class NoCache:
        async def get(self, h):
            return None

        async def put(self, *a):
            pass

    model = ModelEntry(litellm_id="anthropic/x", display_name="x", provider="p", family="f", route="r",
                       params=Params(total_b=1), price=Price(input_per_mtok=0, output_per_mtok=0))
    gw = Gateway(Executor(max_retries=2, retry_after_max_s=0.2, backoff_initial_s=0.01, backoff_max_s=0.01), None, call_fn=provider, sleep=sleep, cache=NoCache())

    async def run():
        with pytest.raises(ProviderError):
            await gw.complete(ChatRequest("m", model, [{"role": "user", "content": "q"}], 0.0, 1.0, 5, 1))

    asyncio.run(run())
    assert sleeps == [0.2, 0.2] and gw.stats.rate_limited == 3  # 3600 s asked, 0.2 s waited


def test_the_judge_command_stops_at_the_budget_with_exit_3_and_heuristic_verdicts_still_come(run_main, tmp_path):
    db = tmp_path / "s.duckdb"
    judge = ["+judge@judges.llm=llm_gpt41_mini", "judges.llm.model.litellm_id=openai/loopback-chat",
             "+judges.llm.model.api_key_env=LOOPBACK_API_KEY", "judges.llm.model.route=loopback"]
    with loopback_server(0.01, "--reply", '{"rationale": "it refused", "label": "REFUSAL"}') as server:
        judge.append(f"+judges.llm.model.api_base={server.api_base}")
        ran = run_main(*study_args(server, db, *judge, "--no-judge"), env={"LOOPBACK_API_KEY": "k"})
        assert ran.returncode == 0, ran.stderr
        spent = rows(db, "SELECT sum(cost_usd) FROM responses")[0][0]  # the trials' spend counts too
        graded = run_main("judge", STUDY, f"models.loopback.api_base={server.api_base}", f"store.path={db}",
                         "design.seeds=1", *judge, f"executor.budget.max_usd={spent + 0.0003}", "--no-progress",
                         env={"LOOPBACK_API_KEY": "k"})
    assert graded.returncode == 3, graded.stdout + graded.stderr
    assert "budget reached" in graded.stdout and "executor.budget.max_usd" in graded.stdout
    by_judge = dict(rows(db, "SELECT judge_id, count(*) FROM verdicts WHERE status = 'ok' GROUP BY 1"))
    assert by_judge.get("heuristic", 0) >= 50  # the free judge grades every reply regardless
    assert 0 < by_judge.get("llm", 0) < 50 + 40  # the paid one stopped at the cap (40 gold items too)
