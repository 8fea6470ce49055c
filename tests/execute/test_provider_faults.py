"""Whatever a provider sends, it costs at most its own call: absurd, negative or mistyped usage,
a reply that says it failed, an error object with HTTP 200, content that is not text, and one
route's 429s must neither stop the writer, lower the recorded spend, become an outcome, nor hold
up another route's trials.

The provider is an injected `call_fn` (the litellm path) or a loopback aiohttp server (the direct
HTTP path): both only to produce the faults; the gateway, the runner and DuckDB are the real ones.
"""

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp.web
import litellm
import pytest
from conftest import REPO, rows

from engine.execute.gateway import ChatRequest, Gateway
from engine.execute.limits import AdaptiveLimit
from engine.execute.replies import MAX_TOKENS_PER_CALL
from engine.execute.transports import TransportError
from engine.kernel.errors import ProviderError
from engine.kernel.redaction import redact
from engine.spec.request_params import ENGINE_REQUEST_KEYS
from engine.spec.schema import Executor, ModelEntry, Params, Price, Weights
from engine.store.db import StudyStore
from engine.study import run_study

STUDY = str(REPO / "bench" / "studies" / "gateway_bench.yaml")
MODEL = ModelEntry(litellm_id="anthropic/test-model", display_name="T", provider="P", family="F", route="r",
                   params=Params(total_b=8), price=Price(input_per_mtok=1.0, output_per_mtok=2.0))
CANARY = "sk-canary-faults-0123456789abcdef"


def request(content="hi", model=MODEL, schema=None) -> ChatRequest:
    return ChatRequest("m", model, [{"role": "user", "content": content}], 0.0, 1.0, 16, 1, schema)


def reply(content="hello", prompt=100, completion=50, finish_reason="stop", **choice):
    """A reply as any provider object may be: litellm does not get to clean it up."""
    message = SimpleNamespace(content=content, tool_calls=None)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish_reason, **choice)],
                           usage=SimpleNamespace(prompt_tokens=prompt, completion_tokens=completion))


async def no_sleep(_seconds):
    pass


@pytest.fixture
def store(tmp_path):
    s = StudyStore(tmp_path / "g.duckdb")
    yield s
    s.close()


def call(store, provider, req=None, **executor):
    gw = Gateway(Executor(**{"max_retries": 2, **executor}), store, call_fn=provider, sleep=no_sleep)
    return gw, asyncio.run(gw.complete(req or request()))


# --------------------------------------------------------------------- provider numbers (case 1)

@pytest.mark.parametrize("field, value", [
    ("prompt_tokens", 10**15), ("completion_tokens", MAX_TOKENS_PER_CALL + 1), ("prompt_tokens", -3),
    ("completion_tokens", "12"), ("prompt_tokens", 3.5), ("completion_tokens", True),
    ("prompt_tokens", {"n": 1}), ("completion_tokens", float("nan")), ("prompt_tokens", float("inf")),
    pytest.param("prompt_tokens", 10**5000, id="prompt_tokens-5000-digits"),
])
def test_a_reply_with_odd_usage_is_a_provider_error_retried_and_never_cached(store, field, value):
    calls = []

    async def provider(**kwargs):
        calls.append(kwargs)
        return reply(**{field.split("_")[0]: value})

    gw = Gateway(Executor(max_retries=2), store, call_fn=provider, sleep=no_sleep)
    with pytest.raises(ProviderError, match=f"usage.{field}") as info:
        asyncio.run(gw.complete(request()))
    assert len(calls) == 3 and info.value.retries == 2  # retried, then this call's error
    assert len(str(info.value)) < 400  # a 5,000-digit count is not echoed
    # not billed, not counted, not cached: the spend on record never goes down
    assert (gw.stats.cost_usd, gw.stats.tokens, gw.stats.live_calls) == (0.0, 0, 0)
    assert gw.stats.faulty_replies == 3
    assert store.cached_response(request().request_hash) is None


def test_usage_that_is_whole_but_written_as_a_float_or_missing_is_taken(store):
    async def provider(**kwargs):
        return SimpleNamespace(choices=reply().choices, usage=SimpleNamespace(prompt_tokens=30.0))

    gw, result = call(store, provider)
    assert (result.prompt_tokens, result.completion_tokens) == (30, 0)
    assert type(result.prompt_tokens) is int and result.cost_usd == pytest.approx(30 / 1e6)


def two_model_args(db: Path, *extra: str) -> list[str]:
    """gateway_bench with a second model on a route of its own: 8 behaviours x 1 seed per model."""
    second = ("+models.second={litellm_id: openrouter/x/second, display_name: B, provider: P, family: F, "
              "route: rb, params: {total_b: 2}, price: {input_per_mtok: 1, output_per_mtok: 1}}")
    return [f"store.path={db}", "design.seeds=1", "models.loopback.litellm_id=openrouter/x/first",
            "models.loopback.route=ra", "~models.loopback.api_key_env", "~models.loopback.api_base", second,
            "design.factors.model=[loopback,second]", "scenario.select.per_category=1", "scenario.select.benign=0",
            "executor.max_retries=1", "executor.backoff_initial_s=0.01", "executor.backoff_max_s=0.01", *extra]


def ok(model: str, prompt=10, completion=5):
    return litellm.ModelResponse(model=model, choices=[{"message": {"role": "assistant", "content": "I can't help"}}],
                                 usage={"prompt_tokens": prompt, "completion_tokens": completion,
                                        "total_tokens": prompt + completion})



@pytest.mark.parametrize("poison", [10**15, -3])
def test_a_poisoned_usage_costs_its_own_trial_only_and_a_rerun_plays_only_it(tmp_path, poison):
    """Today 10^15 tokens overflowed the writer and lost every finished, paid trial of the batch,
    and -3 lowered the spend on record."""
    db = tmp_path / "s.duckdb"
    poisoned: set[str] = set()
    healed = False

    async def provider(**kwargs):
        prompt = kwargs["messages"][-1]["content"]
        if kwargs["model"].endswith("first") and not healed and (prompt in poisoned or len(poisoned) < 2):
            poisoned.add(prompt)  # the same prompt is poisoned on every retry
            return ok(kwargs["model"], prompt=poison)
        return ok(kwargs["model"])

    def run():
        return run_study(STUDY, two_model_args(db), show_progress=False, judge=False,
                         gateway_factory=lambda ex, s: Gateway(ex, s, call_fn=provider))[1]

    first = run()
    assert (first.done, first.errors) == (14, 2)
    by_status = dict(rows(db, "SELECT status || ':' || (cell->>'model'), count(*) FROM trials GROUP BY 1"))
    assert by_status == {"done:loopback": 6, "error:loopback": 2, "done:second": 8}
    (error,) = {e for (e,) in rows(db, "SELECT error FROM trials WHERE status = 'error'")}
    assert "usage.prompt_tokens" in error and "after 1 retry" in error
    # what is stored is what was counted, and nothing of the poisoned replies
    assert rows(db, "SELECT count(*), sum(prompt_tokens), min(cost_usd) > 0 FROM responses") == [(14, 140, True)]
    assert first.stats.cost_usd == pytest.approx(rows(db, "SELECT sum(cost_usd) FROM responses")[0][0])
    assert first.stats.tokens == 14 * (10 + 5)

    healed = True
    again = run()
    assert (again.skipped_done, again.done, again.errors, again.stats.live_calls) == (14, 2, 0, 2)
    assert rows(db, "SELECT count(*) FROM trials WHERE status = 'done'") == [(16,)]


# ------------------------------------------------------- replies that say they failed (cases 2-4)

def test_finish_reason_error_with_partial_text_is_retried_never_cached(store):
    answers = [reply("partial answ", finish_reason="error"), reply("partial", finish_reason="abort"), reply()]

    async def provider(**kwargs):
        return answers.pop(0)

    gw, result = call(store, provider)
    assert result.text == "hello" and result.retries == 2 and gw.stats.faulty_replies == 2
    assert gw.stats.live_calls == 1 and gw.stats.tokens == 150  # only the whole answer is counted


def test_a_litellm_reply_whose_native_finish_reason_is_error_is_a_provider_error(store):
    """litellm maps OpenRouter's "error" (and Cohere's "ERROR") to "stop"; the original decides."""
    async def provider(**kwargs):
        return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": "half an ans"},
                                               "finish_reason": "error"}],
                                     usage={"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10})

    gw = Gateway(Executor(max_retries=1), store, call_fn=provider, sleep=no_sleep)
    with pytest.raises(ProviderError, match="finish_reason='error'"):
        asyncio.run(gw.complete(request()))
    assert store.cached_response(request().request_hash) is None and gw.stats.cost_usd == 0


@pytest.mark.parametrize("content, text", [(["a ", "b"], None), (5, None), ({"text": "x"}, None),
                                           ([{"type": "image_url", "image_url": {}}], None),
                                           ([{"type": "text", "text": "a "}, {"text": "b"}], "a b")])
def test_content_is_text_none_or_text_parts_else_a_provider_error(store, content, text):
    async def provider(**kwargs):
        return reply(content)

    if text is None:
        gw = Gateway(Executor(max_retries=0), store, call_fn=provider, sleep=no_sleep)
        with pytest.raises(ProviderError, match="content"):
            asyncio.run(gw.complete(request()))
        assert store.cached_response(request().request_hash) is None
    else:
        assert call(store, provider)[1].text == text


def test_redact_takes_anything():
    assert redact(5) == "5" and redact(None) is None and redact({"k": CANARY}) == "{'k': '[REDACTED]'}"


async def serve(bodies: list, seen: list):
    """A loopback OpenAI-compatible server answering HTTP 200 with each body in turn."""
    async def chat(req):
        seen.append(await req.json())
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return aiohttp.web.Response(text=body if isinstance(body, str) else json.dumps(body),
                                    content_type="application/json")

    app = aiohttp.web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def direct(bodies, tmp_path, executor=None, schema=None):
    """One call over the direct HTTP path: (the completion or the ProviderError, requests seen, stats)."""
    seen: list = []

    async def go():
        runner, base = await serve(bodies, seen)
        model = MODEL.model_copy(update={"litellm_id": "openai/loopback", "api_base": base})
        store = StudyStore(tmp_path / "d.duckdb")
        gw = Gateway(executor or Executor(max_retries=2, backoff_initial_s=0.0), store)
        try:
            return await gw.complete(request(model=model, schema=schema)), store.cached_response(
                request(model=model, schema=schema).request_hash), gw.stats
        except ProviderError as exc:
            return exc, store.cached_response(request(model=model, schema=schema).request_hash), gw.stats
        finally:
            await gw.close()
            await runner.cleanup()
            store.close()

    result, cached, stats = asyncio.run(go())
    return result, cached, stats, seen


def body(content="hello", finish_reason="stop", usage=None, **extra):
    return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
            "usage": usage or {"prompt_tokens": 7, "completion_tokens": 3}, **extra}


def test_direct_path_finish_reason_error_is_retried_then_an_error_never_an_outcome(tmp_path):
    result, cached, stats, seen = direct([body("partial answer", "error")], tmp_path)
    assert isinstance(result, ProviderError) and "finish_reason='error'" in str(result)
    assert len(seen) == 3 and cached is None and stats.cost_usd == 0


@pytest.mark.parametrize("bad", [
    body(usage={"prompt_tokens": 10**15, "completion_tokens": 1}), body(usage={"prompt_tokens": -2}),
    body(usage={"prompt_tokens": "12"}), body(content=7), body(content={"a": 1}), "[1, 2]",
    {"choices": "nope"}, body(usage=[1]),
])
def test_direct_path_malformed_replies_are_provider_errors(tmp_path, bad):
    result, cached, stats, seen = direct([bad], tmp_path)
    assert isinstance(result, ProviderError) and "malformed reply" in str(result), result
    assert cached is None and stats.cost_usd == 0 and len(seen) == 3


def test_an_error_object_with_http_200_shows_the_providers_message_redacted(tmp_path):
    error = {"error": {"message": f"Upstream provider overloaded (key {CANARY} rejected) " + "x" * 500,
                       "code": 502}}
    result, cached, stats, seen = direct([error, error, body()], tmp_path)
    assert result.text == "hello" and len(seen) == 3  # retried as the 502 its object names
    result, *_ = direct([error], tmp_path)
    message = str(result)
    assert "Upstream provider overloaded" in message and "has no choices" not in message
    assert CANARY not in message and "[REDACTED]" in message and len(message) < 500
    # an error object that names a status that is not worth retrying is not retried
    result, _, _, seen = direct([{"error": {"message": "invalid model", "code": 400}}], tmp_path)
    assert isinstance(result, ProviderError) and "invalid model" in str(result) and len(seen) == 1


def test_every_parameter_the_engine_sends_is_refused_in_extra_params(tmp_path):
    """ENGINE_REQUEST_KEYS is the list the spec refuses: it holds every key either transport sends."""
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    _, _, _, seen = direct([body()], tmp_path, schema=schema)
    sent = []

    async def provider(**kwargs):
        sent.append(kwargs)
        return reply()

    store = StudyStore(tmp_path / "k.duckdb")
    model = MODEL.model_copy(update={"api_base": "http://127.0.0.1:9/v1", "api_key_env": "FAULTS_TEST_KEY"})
    import os
    os.environ["FAULTS_TEST_KEY"] = CANARY
    try:
        asyncio.run(Gateway(Executor(), store, call_fn=provider).complete(request(model=model, schema=schema)))
    finally:
        del os.environ["FAULTS_TEST_KEY"]
        store.close()
    assert {"messages", "response_format", "seed"} <= set(seen[0]) and {"api_key", "num_retries"} <= set(sent[0])
    assert set(seen[0]) | set(sent[0]) <= ENGINE_REQUEST_KEYS


# ----------------------------------------------------------------------- routes (case 7)

def test_a_rate_limited_route_does_not_hold_up_another_routes_trials(tmp_path):
    """Route ra answers only 429 with Retry-After; route rb answers in 50 ms. rb's trials finish in
    about their own time, not when ra's trials have used up their retries."""
    db = tmp_path / "s.duckdb"
    t0 = time.monotonic()
    done: dict[str, list[float]] = {"first": [], "second": []}

    async def provider(**kwargs):
        name = kwargs["model"].rsplit("/", 1)[1]
        if name == "first":
            done[name].append(time.monotonic() - t0)
            raise TransportError("HTTP 429: slow down", 429, retry_after_s=0.1)
        await asyncio.sleep(0.05)
        done[name].append(time.monotonic() - t0)
        return ok(kwargs["model"])

    args = two_model_args(db, "design.seeds=2", "executor.max_retries=2", "+executor.concurrency.ra=2",
                          "+executor.concurrency.rb=2")
    summary = run_study(STUDY, args, show_progress=False, judge=False,
                        gateway_factory=lambda ex, s: Gateway(ex, s, call_fn=provider))[1]
    assert (summary.done, summary.errors) == (16, 16)
    started = min(done["first"][0], done["second"][0])
    a_took, b_took = done["first"][-1] - started, done["second"][-1] - started
    # 16 trials x 3 calls on ra, each pausing the route 0.1 s: about 5 s; rb's 16 x 50 ms on
    # 2 slots: under a second. Before, rb's last trials waited for ra's to give up.
    assert a_took > 2.5 and b_took < a_took / 3, (a_took, b_took)
    events = summary.routes["ra"]
    assert events.rate_limited == 48 and events.decreases == 1 and events.min_slots == 1  # 2 -> 1, once
    assert "rb" not in summary.routes


def test_halvings_are_counted_only_when_the_slots_go_down():
    limit = AdaptiveLimit(4)
    for _ in range(5):
        limit.rate_limited(None, time.monotonic())
        time.sleep(0.001)
    assert limit.slots == 1 and limit.events.decreases == 2 and limit.events.rate_limited == 5


# --------------------------------------------------------------- a local model's silence (issue 20)

LOCAL = MODEL.model_copy(update={"litellm_id": "local/test-model", "route": "local", "weights": Weights(
    source="package_file", package="p", file="f.gguf", sha256="0" * 64)})


def test_a_local_model_that_ends_its_turn_without_text_gives_its_answer_once_and_it_is_kept(store):
    calls = []

    async def provider(**kwargs):
        calls.append(kwargs)
        return reply(content="", completion=0, finish_reason="stop")

    gw, completion = call(store, provider, request(model=LOCAL))
    # Deterministic: asked again it would say nothing again, so it is asked once and its silence kept.
    assert len(calls) == 1 and completion.text == "" and completion.retries == 0
    assert gw.stats.silent_replies == 1 and gw.stats.empty_replies == 0 and gw.stats.live_calls == 1
    store.writer.flush()
    assert store.cached_response(request(model=LOCAL).request_hash).response_text == ""


def test_an_api_models_empty_reply_is_still_retried_then_an_error(store):
    calls = []

    async def provider(**kwargs):
        calls.append(kwargs)
        return reply(content="", completion=0, finish_reason="stop")

    with pytest.raises(ProviderError, match="empty reply"):
        call(store, provider)
    assert len(calls) == 3 and store.cached_response(request().request_hash) is None
