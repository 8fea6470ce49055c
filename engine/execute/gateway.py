"""The one model gateway: every model call goes through `Gateway.complete`.

Around the transport (engine/execute/transports.py: direct HTTP for OpenAI-compatible endpoints,
litellm for the rest) it adds a content-addressed response cache (the study database), adaptive
per-route concurrency (engine/execute/limits.py), bounded exponential backoff that honours
Retry-After, a USD/token budget for the whole study, and redaction of keys from every error.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Awaitable, Callable, Protocol

from engine.kernel.errors import BudgetExhausted, ProviderError
from engine.execute.limits import Lane, LocalRouteLimits, RouteLimits
from engine.execute.replies import EmptyReply, ProviderFault, ProviderReply, TransportError
from engine.execute.transports import RETRYABLE_STATUS, LiteLLM, OpenAICompatible, is_openai_compatible, \
    parse_retry_after
from engine.kernel.hashing import content_hash
from engine.kernel.redaction import redact
from engine.kernel.spec_redaction import without_credentials
from engine.spec.schema import Executor, ModelEntry
from engine.kernel.records import CachedResponse
from engine.store.db import StudyStore

# litellm tries to download a price map on import unless told otherwise (no network here).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass(frozen=True)
class ChatRequest:
    model_key: str
    model: ModelEntry
    messages: list[dict[str, str]]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    response_schema: dict[str, Any] | None = None

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "response_schema": self.response_schema}

    @cached_property
    def request_hash(self) -> str:
        # Weights' hash is part of the key: a different GGUF file is a different model. So are the
        # server and the extra parameters, when set (absent, the key is what it always was); their
        # credentials are not (a rotated key keeps the cache, and the stored hash tests no guess of them).
        weights = self.model.weights.sha256 if self.model.weights else None
        key: dict[str, Any] = {"model": self.model.litellm_id, "weights": weights, "params": self.params(),
                               "messages": self.messages}
        if self.model.api_base:
            key["api_base"] = without_credentials(self.model.api_base)
        if self.model.extra_params:
            key["extra_params"] = without_credentials(self.model.extra_params)
        if self.model.prompt_format:  # the same messages in another format are another prompt
            key["prompt_format"] = self.model.prompt_format
        return content_hash(key, 32)

    def body(self) -> dict[str, Any]:
        """The chat-completions parameters (the transport adds the model and the endpoint)."""
        body: dict[str, Any] = {"messages": self.messages, "temperature": self.temperature, "top_p": self.top_p,
                                "max_tokens": self.max_tokens, "seed": self.seed}
        if self.response_schema is not None and self.model.json_schema_output:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": self.response_schema, "strict": True}}
        return body


@dataclass
class Completion:
    text: str
    raw_response: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cache_hit: bool
    retries: int
    finish_reason: str | None = None


@dataclass
class GatewayStats:
    live_calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    rate_limited: int = 0  # HTTP 429 answers (each retried or, after the retries, an error)
    empty_replies: int = 0  # HTTP 200 without content (retried; never cached)
    silent_replies: int = 0  # a local model ended its turn without text: its answer, counted by the scenario
    faulty_replies: int = 0  # replies that said they failed or were malformed (retried; never cached)
    timeouts: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Budget:
    """The study's cap: spend already on record (earlier runs) plus this run's. Stops new live
    calls once reached; calls already in flight finish and are counted."""

    max_usd: float | None
    max_tokens: int | None
    stats: GatewayStats = field(default_factory=GatewayStats)
    spent_before_usd: float = 0.0
    spent_before_tokens: int = 0

    @property
    def spent_usd(self) -> float:
        return self.spent_before_usd + self.stats.cost_usd

    @property
    def spent_tokens(self) -> int:
        return self.spent_before_tokens + self.stats.tokens

    @property
    def exhausted(self) -> bool:
        return ((self.max_usd is not None and self.spent_usd >= self.max_usd)
                or (self.max_tokens is not None and self.spent_tokens >= self.max_tokens))

    def describe(self) -> str:
        parts = []
        if self.max_usd is not None:
            parts.append(f"${self.spent_usd:.4f} spent of executor.budget.max_usd={self.max_usd:g}")
        if self.max_tokens is not None:
            parts.append(f"{self.spent_tokens:,} tokens of executor.budget.max_tokens={self.max_tokens}")
        return "; ".join(parts) or "no cap"

    def check(self) -> None:
        if self.exhausted:
            raise BudgetExhausted(f"budget reached: {self.describe()}")


def retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, TransportError):
        return exc.retry_after_s
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            return parse_retry_after(headers.get("retry-after"))
        except AttributeError:
            return None
    return None


def is_rate_limit(exc: BaseException) -> bool:
    return getattr(exc, "status_code", None) == 429 or type(exc).__name__ == "RateLimitError"


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, EmptyReply):
        return not exc.final
    if isinstance(exc, asyncio.TimeoutError):
        return True
    if isinstance(exc, TransportError):
        return exc.status_code is None or exc.status_code in RETRYABLE_STATUS
    if type(exc).__module__.startswith("litellm"):
        import litellm

        if isinstance(exc, (litellm.Timeout, litellm.APIConnectionError, litellm.RateLimitError,
                            litellm.InternalServerError, litellm.ServiceUnavailableError)):
            return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in RETRYABLE_STATUS


CallFn = Callable[..., Awaitable[Any]]


class ResponseCache(Protocol):
    async def get(self, request_hash: str) -> CachedResponse | None: ...
    async def put(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None: ...


class StoreCache:
    """The study database's response table (this process holds the database)."""

    def __init__(self, store: StudyStore):
        self.store = store

    async def get(self, request_hash: str) -> CachedResponse | None:
        return self.store.cached_response(request_hash)

    async def put(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        self.store.put_response(request_hash, litellm_id, response)


class Gateway:
    def __init__(self, executor: Executor, store: StudyStore | None, *, call_fn: CallFn | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, cache: ResponseCache | None = None,
                 limits: RouteLimits | None = None, budget: Budget | None = None):
        """`store` serves as the cache unless another `cache` is given (a Ray worker's, for one).
        `call_fn` replaces the provider (tests of our own error handling inject failures with it)."""
        if store is None and cache is None:
            raise ValueError("a gateway needs the study store or another response cache")
        self.executor = executor
        self.cache = cache or StoreCache(store)
        self.limits = limits or LocalRouteLimits(executor)
        self.stats = GatewayStats()
        self.budget = budget or Budget(executor.budget.max_usd, executor.budget.max_tokens)
        if budget is None and store is not None:
            self.budget.spent_before_usd, self.budget.spent_before_tokens = store.spent()
            share = store.budget_share()  # a sweep job gets its share of what the study had left
            if share is not None:
                self.budget.max_usd = _tighter(self.budget.max_usd, share[0])
                self.budget.max_tokens = _tighter(self.budget.max_tokens, share[1])
        self.budget.stats = self.stats
        self._litellm = LiteLLM(call_fn)
        self._direct = None if call_fn is not None else OpenAICompatible()
        self._sleep = sleep
        self._jitter = random.Random()  # backoff jitter only; never affects results

    def warm_up(self, models: list[ModelEntry]) -> None:
        """Import what the calls need before any trial starts, outside every call's timeout."""
        if any(self._transport(m) is self._litellm for m in models) and self._litellm._call_fn is None:
            LiteLLM.warm_up()
        if any(self._transport(m) is self._direct for m in models):
            import aiohttp  # noqa: F401

    def _transport(self, model: ModelEntry) -> LiteLLM | OpenAICompatible:
        return self._direct if self._direct is not None and is_openai_compatible(model) else self._litellm

    async def close(self) -> None:
        """Close this event loop's connection pools and route limits (at the end of each run)."""
        if self._direct is not None:
            await self._direct.close()
        forget = getattr(self.limits, "forget_loop", None)
        if forget is not None:
            forget()

    async def complete(self, req: ChatRequest) -> Completion:
        cached = await self.cache.get(req.request_hash)
        if cached is not None:
            self.stats.cache_hits += 1
            return Completion(cached.response_text, cached.raw_response, cached.prompt_tokens,
                              cached.completion_tokens, cached.cost_usd, cached.latency_s, True, 0,
                              cached.finish_reason)
        self.budget.check()
        reply, latency, retries = await self._call_with_retries(req)
        text = redact(reply.text or "")
        raw = redact(reply.raw_json)
        cost = self._account(req, reply)
        self.stats.live_calls += 1
        await self.cache.put(req.request_hash, req.model.litellm_id,
                             CachedResponse(text, raw, reply.prompt_tokens, reply.completion_tokens, cost, latency,
                                            reply.finish_reason))
        return Completion(text, raw, reply.prompt_tokens, reply.completion_tokens, cost, latency, False, retries,
                          reply.finish_reason)

    def _account(self, req: ChatRequest, reply: ProviderReply) -> float:
        # The counts were checked where the reply entered (0..10^9 each: engine/execute/replies.py)
        # and prices are finite and >= 0, so the spend on record only ever grows, by a bounded amount.
        cost = req.model.price.cost(reply.prompt_tokens, reply.completion_tokens)
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        self.stats.cost_usd += cost
        return cost

    async def _call_with_retries(self, req: ChatRequest) -> tuple[ProviderReply, float, int]:
        retries = 0
        route, lane = req.model.route, Lane.of(req.model).key
        while True:
            slot = self.limits.slot(route, lane)
            async with slot:
                self.budget.check()  # may have been spent while waiting for a slot
                started = time.monotonic()
                try:
                    async with asyncio.timeout(_timeout_s(req.model, self.executor)):
                        reply = await self._transport(req.model).complete(req.model_key, req.model, req.body())
                    if not reply.text and not reply.tool_calls and _ended_its_turn_silently(req, reply):
                        # A local model is deterministic: asked again it would say nothing again. Its
                        # silence is its answer, which the scenario counts as a non-answer (a parse
                        # failure, NOT_GRADEABLE, an unparseable action), never a reason to drop it.
                        self.stats.silent_replies += 1
                        slot.succeeded()
                        return reply, time.monotonic() - started, retries
                    if not reply.text and not reply.tool_calls:
                        self._account(req, reply)  # an empty reply is still billed
                        if reply.finish_reason in ("length", "content_filter"):
                            # The same request would stop the same way: retrying only pays again.
                            raise EmptyReply(f"empty reply: the model stopped (finish_reason={reply.finish_reason})"
                                             + (" before any text; raise generation.max_tokens"
                                                if reply.finish_reason == "length" else ""), final=True)
                        raise EmptyReply("HTTP 200 with an empty reply")
                    slot.succeeded()
                    return reply, time.monotonic() - started, retries
                except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                    error, wait = exc, retry_after(exc)
                    if wait is not None:  # a provider may ask for an hour; we wait at most this long
                        wait = min(wait, self.executor.retry_after_max_s)
                    if is_rate_limit(exc):
                        self.stats.rate_limited += 1
                        slot.rate_limited(wait, started)
                    elif isinstance(exc, EmptyReply):
                        self.stats.empty_replies += 1
                    elif isinstance(exc, ProviderFault):
                        self.stats.faulty_replies += 1
                    elif isinstance(exc, TimeoutError):
                        self.stats.timeouts += 1
            if not is_retryable(error) or retries >= self.executor.max_retries:
                self.stats.failed_calls += 1
                raise ProviderError(f"{req.model.litellm_id}: {describe_error(error, self.executor)} "
                                    f"(after {retries} {'retry' if retries == 1 else 'retries'})",
                                    retries=retries) from None
            retries += 1
            self.stats.retries += 1
            delay = min(self.executor.backoff_max_s, self.executor.backoff_initial_s * 2 ** (retries - 1))
            delay *= 0.5 + 0.5 * self._jitter.random()
            await self._sleep(max(delay, wait or 0.0))


def _timeout_s(model: ModelEntry, executor: Executor) -> float | None:
    """An in-process local model gets no timeout: its llama.cpp call runs in a thread that cannot be
    cancelled, so a timeout would leave it running beside the retry, both on one model that takes a
    call at a time. It is bounded by max_tokens."""
    return None if model.weights is not None else executor.timeout_s


def _ended_its_turn_silently(req: ChatRequest, reply: ProviderReply) -> bool:
    """A local model (our own llama.cpp) that stopped on its own account before any text. An API's
    empty reply may be a glitch of the service: it is retried, then an error."""
    return req.model.weights is not None and reply.finish_reason == "stop"


def _tighter(cap, share):
    return share if cap is None else cap if share is None else min(cap, share)


def describe_error(exc: BaseException, executor: Executor) -> str:
    """One line a researcher can act on, with any key masked."""
    if isinstance(exc, TimeoutError):
        return f"no reply within {executor.timeout_s:g} s (executor.timeout_s)"
    text = redact(str(exc)).strip().splitlines()  # redacted before it is cut: no half key survives
    message = (text[0] if text else "")[:300]
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
