"""The one model gateway: every model call goes through `Gateway.complete`.

It adds, around litellm: a content-addressed response cache (DuckDB), per-route concurrency
limits, bounded exponential backoff on 429/5xx/timeouts, and a USD/token budget.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncContextManager, Awaitable, Callable, Protocol

from engine.errors import BudgetExhausted, ProviderError
from engine.hashing import content_hash
from engine.spec.schema import Executor, ModelEntry
from engine.store.db import CachedResponse, StudyStore

# litellm tries to download a price map on import unless told otherwise (no network here).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


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

    @property
    def request_hash(self) -> str:
        # Weights' hash is part of the key: a different GGUF file is a different model.
        weights = self.model.weights.sha256 if self.model.weights else None
        return content_hash({"model": self.model.litellm_id, "weights": weights,
                             "params": self.params(), "messages": self.messages}, 32)


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


@dataclass
class GatewayStats:
    live_calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Budget:
    """Stops new live calls once spent. Calls already in flight finish and are counted."""

    max_usd: float | None
    max_tokens: int | None
    stats: GatewayStats = field(default_factory=GatewayStats)

    @property
    def exhausted(self) -> bool:
        return ((self.max_usd is not None and self.stats.cost_usd >= self.max_usd)
                or (self.max_tokens is not None and self.stats.tokens >= self.max_tokens))

    def check(self) -> None:
        if self.exhausted:
            raise BudgetExhausted(
                f"budget reached: ${self.stats.cost_usd:.4f} of {self.max_usd}, "
                f"{self.stats.tokens} tokens of {self.max_tokens}")


def is_retryable(exc: BaseException) -> bool:
    import litellm

    if isinstance(exc, (asyncio.TimeoutError, litellm.Timeout, litellm.APIConnectionError,
                        litellm.RateLimitError, litellm.InternalServerError,
                        litellm.ServiceUnavailableError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in RETRYABLE_STATUS


CallFn = Callable[..., Awaitable[Any]]


class ResponseCache(Protocol):
    async def get(self, request_hash: str) -> CachedResponse | None: ...
    async def put(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None: ...


class RouteLimits(Protocol):
    def slot(self, route: str) -> AsyncContextManager[None]: ...


class StoreCache:
    """The study database's response table (this process holds the database)."""

    def __init__(self, store: StudyStore):
        self.store = store

    async def get(self, request_hash: str) -> CachedResponse | None:
        return self.store.cached_response(request_hash)

    async def put(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        self.store.put_response(request_hash, litellm_id, response)


class LocalRouteLimits:
    """Concurrent calls per route within this process."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self._semaphores: dict[tuple[int, str], asyncio.Semaphore] = {}

    def slot(self, route: str) -> asyncio.Semaphore:
        # Per event loop: one gateway (and its budget) serves both the run and the judge stage.
        key = (id(asyncio.get_running_loop()), route)
        if key not in self._semaphores:
            self._semaphores[key] = asyncio.Semaphore(self.executor.limit_for(route))
        return self._semaphores[key]


class Gateway:
    def __init__(self, executor: Executor, store: StudyStore | None, *, call_fn: CallFn | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, cache: ResponseCache | None = None,
                 limits: RouteLimits | None = None, budget: Budget | None = None):
        """`store` serves as the cache unless another `cache` is given (a Ray worker's, for one)."""
        if store is None and cache is None:
            raise ValueError("a gateway needs the study store or another response cache")
        self.executor = executor
        self.cache = cache or StoreCache(store)
        self.limits = limits or LocalRouteLimits(executor)
        self.stats = GatewayStats()
        self.budget = budget or Budget(executor.budget.max_usd, executor.budget.max_tokens)
        self.budget.stats = self.stats
        self._call_fn = call_fn
        self._sleep = sleep
        self._jitter = random.Random()  # backoff jitter only; never affects results

    async def complete(self, req: ChatRequest) -> Completion:
        cached = await self.cache.get(req.request_hash)
        if cached is not None:
            self.stats.cache_hits += 1
            return Completion(cached.response_text, cached.raw_response, cached.prompt_tokens,
                              cached.completion_tokens, cached.cost_usd, cached.latency_s, True, 0)
        self.budget.check()
        async with self.limits.slot(req.model.route):
            self.budget.check()  # may have been spent while waiting for a slot
            response, latency, retries = await self._call_with_retries(req)
        text = response.choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = req.model.price.cost(prompt_tokens, completion_tokens)
        self.stats.live_calls += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost_usd += cost
        raw = _raw_json(response)
        await self.cache.put(req.request_hash, req.model.litellm_id,
                             CachedResponse(text, raw, prompt_tokens, completion_tokens, cost, latency))
        return Completion(text, raw, prompt_tokens, completion_tokens, cost, latency, False, retries)

    async def _call_with_retries(self, req: ChatRequest) -> tuple[Any, float, int]:
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                response = await asyncio.wait_for(self._call(req), timeout=self.executor.timeout_s)
                return response, time.perf_counter() - started, retries
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                if not is_retryable(exc) or retries >= self.executor.max_retries:
                    self.stats.failed_calls += 1
                    raise ProviderError(
                        f"{req.model.litellm_id}: {type(exc).__name__}: {_short(exc)} "
                        f"(after {retries} retries)", retries=retries) from exc
                retries += 1
                self.stats.retries += 1
                delay = min(self.executor.backoff_max_s, self.executor.backoff_initial_s * 2 ** (retries - 1))
                await self._sleep(delay * (0.5 + 0.5 * self._jitter.random()))

    async def _call(self, req: ChatRequest) -> Any:
        kwargs: dict[str, Any] = {
            "model": req.model.litellm_id, "messages": req.messages, "temperature": req.temperature,
            "top_p": req.top_p, "max_tokens": req.max_tokens, "seed": req.seed,
            "timeout": self.executor.timeout_s, "num_retries": 0,
        }
        if req.response_schema is not None and req.model.json_schema_output:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": req.response_schema,
                                                         "strict": True}}
        if self._call_fn is not None:
            return await self._call_fn(**kwargs)
        import litellm

        return await litellm.acompletion(**kwargs)


def _raw_json(response: Any) -> str | None:
    try:
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        return json.dumps(data, default=str)
    except Exception:  # noqa: BLE001 - raw copy is best effort; the text is stored regardless
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]
