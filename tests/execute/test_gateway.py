"""The gateway's own error handling: retries, backoff bounds, budget, cache, and secrets.

The provider is replaced by an injected function here, and only here, to produce HTTP 429/500,
timeouts and bad requests on demand; everything else is the real gateway and a real DuckDB file.
"""

import asyncio

import httpx
import litellm
import pytest

from engine.kernel.errors import BudgetExhausted, ProviderError
from engine.execute.gateway import ChatRequest, Gateway
from engine.spec.schema import Budget, Executor, ModelEntry, Params, Price, Weights
from engine.store.db import StudyStore

MODEL = ModelEntry(litellm_id="openrouter/test/model", display_name="T", provider="P", family="F",
                   route="openrouter", params=Params(total_b=8), price=Price(input_per_mtok=1.0, output_per_mtok=2.0))


def request(content="hi", seed=1) -> ChatRequest:
    return ChatRequest("m", MODEL, [{"role": "user", "content": content}], 0.0, 1.0, 16, seed)


def ok_response(text="hello", prompt=100, completion=50):
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": text}}],
                                 usage={"prompt_tokens": prompt, "completion_tokens": completion,
                                        "total_tokens": prompt + completion})


def rate_limit():
    return litellm.RateLimitError("slow down", llm_provider="openrouter", model="test/model")


def server_error():
    return litellm.InternalServerError("boom", llm_provider="openrouter", model="test/model")


def bad_request():
    return litellm.BadRequestError("bad", llm_provider="openrouter", model="test/model")


class Scripted:
    """Raises the given failures in order, then answers."""

    def __init__(self, failures, hang_s=0.0):
        self.failures = list(failures)
        self.calls = 0
        self.hang_s = hang_s
        self.kwargs = []

    async def __call__(self, **kwargs):
        self.calls += 1
        self.kwargs.append(kwargs)
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "hang":
                await asyncio.sleep(self.hang_s)
            else:
                raise failure
        return ok_response()


@pytest.fixture
def store(tmp_path):
    s = StudyStore(tmp_path / "g.duckdb")
    yield s
    s.close()


def gateway(store, provider, sleeps=None, **executor):
    async def fake_sleep(seconds):
        sleeps.append(seconds) if sleeps is not None else None

    ex = Executor(**{"max_retries": 3, "backoff_initial_s": 1.0, "backoff_max_s": 3.0, **executor})
    return Gateway(ex, store, call_fn=provider, sleep=fake_sleep)


def test_retries_429_and_500_with_exponential_backoff_then_succeeds(store):
    provider, sleeps = Scripted([rate_limit(), server_error(), rate_limit()]), []
    result = asyncio.run(gateway(store, provider, sleeps).complete(request()))
    assert result.text == "hello" and result.retries == 3 and provider.calls == 4
    # jittered between 50% and 100% of 1, 2, then 4 capped at 3 seconds
    assert 0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2 and 1.5 <= sleeps[2] <= 3


def test_gives_up_after_max_retries(store):
    provider = Scripted([server_error()] * 10)
    gw = gateway(store, provider, [])
    with pytest.raises(ProviderError, match="after 3 retries") as info:
        asyncio.run(gw.complete(request()))
    assert info.value.retries == 3 and provider.calls == 4 and gw.stats.failed_calls == 1
    assert store.cached_response(request().request_hash) is None  # errors are never cached


def test_bad_request_is_not_retried(store):
    provider = Scripted([bad_request()])
    with pytest.raises(ProviderError) as info:
        asyncio.run(gateway(store, provider, []).complete(request()))
    assert provider.calls == 1 and info.value.retries == 0


def test_timeout_is_retried(store):
    provider = Scripted(["hang"], hang_s=5)
    result = asyncio.run(gateway(store, provider, [], timeout_s=0.2).complete(request()))
    assert result.retries == 1 and provider.calls == 2


def test_an_in_process_local_model_is_waited_for_not_timed_out(store):
    # Its llama.cpp call cannot be cancelled: a timeout would leave it running and the retry would
    # start from another KV-cache state, so its reply would differ from an uninterrupted run's.
    local = MODEL.model_copy(update={"litellm_id": "local/m", "route": "local", "weights": Weights(
        source="package_file", package="p", file="m.gguf", sha256="0" * 64)})
    provider = Scripted(["hang"], hang_s=0.5)
    gw = gateway(store, provider, [], timeout_s=0.1)
    result = asyncio.run(gw.complete(ChatRequest("m", local, [{"role": "user", "content": "hi"}], 0.0, 1.0, 16, 1)))
    assert result.retries == 0 and provider.calls == 1 and gw.stats.timeouts == 0


def test_http_status_errors_are_classified_by_code(store):
    resp = httpx.Response(503, request=httpx.Request("POST", "http://x"))
    err = litellm.APIError(503, "unavailable", "openrouter", "test/model", request=resp.request)
    provider = Scripted([err])
    assert asyncio.run(gateway(store, provider, []).complete(request())).retries == 1


def test_cache_hit_makes_no_call_and_counts_no_cost(store):
    provider = Scripted([])
    gw = gateway(store, provider)
    first = asyncio.run(gw.complete(request()))
    second = asyncio.run(gw.complete(request()))
    other_seed = asyncio.run(gw.complete(request(seed=2)))
    assert (first.cache_hit, second.cache_hit, other_seed.cache_hit) == (False, True, False)
    assert provider.calls == 2 and gw.stats.cache_hits == 1 and gw.stats.live_calls == 2
    assert first.cost_usd == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6)


def test_budget_in_usd_stops_new_calls(store):
    provider = Scripted([])
    gw = gateway(store, provider, budget=Budget(max_usd=0.0004))  # each call costs 0.0002
    asyncio.run(gw.complete(request("a")))
    asyncio.run(gw.complete(request("b")))
    with pytest.raises(BudgetExhausted):
        asyncio.run(gw.complete(request("c")))
    assert provider.calls == 2
    # cached answers are still served: they cost nothing
    assert asyncio.run(gw.complete(request("a"))).cache_hit


def test_budget_in_tokens_stops_new_calls(store):
    provider = Scripted([])
    gw = gateway(store, provider, budget=Budget(max_tokens=150))
    asyncio.run(gw.complete(request("a")))
    with pytest.raises(BudgetExhausted):
        asyncio.run(gw.complete(request("b")))
    assert provider.calls == 1


def test_per_route_concurrency_limit(store):
    active, peak = 0, 0

    async def provider(**kwargs):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return ok_response()

    gw = gateway(store, provider, concurrency={"default": 8, "openrouter": 2})

    async def many():
        await asyncio.gather(*(gw.complete(request(str(i))) for i in range(8)))

    asyncio.run(many())
    assert peak == 2


def test_json_schema_is_requested_when_model_supports_it(store):
    provider = Scripted([])
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    req = ChatRequest("m", MODEL, [{"role": "user", "content": "x"}], 0.0, 1.0, 16, 1, schema)
    asyncio.run(gateway(store, provider).complete(req))
    assert provider.kwargs[0]["response_format"]["json_schema"]["schema"] == schema
    assert provider.kwargs[0]["seed"] == 1 and provider.kwargs[0]["num_retries"] == 0


def test_a_reply_written_by_an_earlier_batch_of_the_same_run_is_a_cache_hit(store):
    """The cache's keys are read once per run; replies written since are found too."""
    provider = Scripted([])
    gw = gateway(store, provider)
    asyncio.run(gw.complete(request("first")))  # loads the key set, queues the reply
    store.writer.flush()  # written: no longer queued
    again = asyncio.run(gw.complete(request("first")))
    assert again.cache_hit and provider.calls == 1


def test_a_bad_row_costs_only_its_own_trial_and_stops_the_run(store):
    """A batch that fails is written again trial by trial: the good trials and the cached replies
    are kept, and the failure is raised (a bug is never an outcome, nor silently dropped)."""
    from engine.kernel.records import CachedResponse

    def trial(tid, attempt=1):
        return {"trial_id": tid, "scenario": "s", "cell_id": "c", "cell": {}, "seed": 0, "inputs": {},
                "status": "done", "error_kind": None, "error": None, "attempt": attempt}

    store.commit_trial(trial("a"), [], {})
    store.writer.add_response("h1", "m", CachedResponse("r", None, 1, 1, 0.0, 0.1))
    store.writer.add_trial(trial("a"), [], {})  # a duplicate of a stored trial: a bug
    store.writer.add_trial(trial("b"), [], {})

    async def run():
        async with store.writer.running(interval_s=0.01):
            for _ in range(1000):  # the writer's thread fails the batch, then records the failure
                if store.writer.failure is not None:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(Exception):
                store.writer.check()  # the executors stop playing at once

    with pytest.raises(Exception):
        asyncio.run(run())
    ids = sorted(r[0] for r in store.con.execute("SELECT trial_id FROM trials").fetchall())
    assert ids == ["a", "b"]
    assert store.con.execute("SELECT count(*) FROM responses").fetchone()[0] == 1


def test_openai_compatible_routes_take_the_direct_path_and_keys_stay_with_their_server(monkeypatch):
    from engine.execute.transports import api_key, endpoint, is_openai_compatible

    def entry(litellm_id, **kw):
        return ModelEntry(litellm_id=litellm_id, display_name="m", provider="p", family="f", route="r",
                          params=Params(total_b=1), price=Price(input_per_mtok=0, output_per_mtok=0), **kw)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-0123456789")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-0123456789")
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-key-0123")
    router = entry("openrouter/meta-llama/llama-3.1-8b-instruct")
    assert is_openai_compatible(router) and not is_openai_compatible(entry("anthropic/claude"))
    assert endpoint(router, "m") == "https://openrouter.ai/api/v1/chat/completions"
    assert api_key(router, "m") == "sk-or-0123456789"
    # an openai/ entry pointed at another server never carries OPENAI_API_KEY there
    assert api_key(entry("openai/local", api_base="http://127.0.0.1:8080/v1"), "m") is None
    assert api_key(entry("openai/gpt-4o"), "m") == "sk-openai-0123456789"
    # hosted_vllm's own variable is meant for the vLLM server
    assert api_key(entry("hosted_vllm/llama", api_base="http://gpu:8000/v1"), "m") == "vllm-key-0123"


def test_retry_after_reads_seconds_and_http_dates():
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone

    from engine.execute.transports import parse_retry_after

    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(later) <= 31
