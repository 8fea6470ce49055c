"""What a scenario (or a judge) sees while it works: a chat method that records every call.

Calls belong to an owner: a trial while it is played, or a judged subject while it is graded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from engine.kernel.errors import ParseFailure, ProviderError
from engine.execute.gateway import ChatRequest, Completion, Gateway
from engine.kernel.hashing import content_hash, derived_seed
from engine.spec.schema import ModelEntry
from engine.kernel.records import now

ParseStatus = str  # 'ok' | 'repaired' | 'failed'
Parser = Callable[[str], tuple[Any, ParseStatus]]


@dataclass(frozen=True)
class Reply:
    value: Any
    parse_status: ParseStatus
    call_id: str
    text: str
    asks: int


class CallContext:
    def __init__(self, owner_id: str, seed: int, attempt: int, gateway: Gateway, models: dict[str, ModelEntry],
                 parse_retries: int, on_call: Callable[[], None] = lambda: None):
        self.owner_id = owner_id
        self.seed = seed
        self.attempt = attempt
        self.gateway = gateway
        self.models = models
        self.parse_retries = parse_retries
        self.calls: list[dict[str, Any]] = []
        self._on_call = on_call

    async def chat(self, *, model_key: str, messages: list[dict[str, str]], purpose: str,
                   generation: dict[str, Any], parse: Parser,
                   response_schema: dict[str, Any] | None = None) -> Reply:
        """Ask a model; re-ask (with a new derived seed) while the reply fails to parse.

        Raises ParseFailure when every ask failed: a failure is never turned into an outcome.
        """
        model = self.models[model_key]
        for ask in range(self.parse_retries + 1):
            request = ChatRequest(
                model_key=model_key, model=model, messages=messages,
                temperature=generation["temperature"], top_p=generation["top_p"],
                max_tokens=generation["max_tokens"],
                # A retried trial or verdict asks anew: the cached replies of the failed attempt would
                # only fail again. First attempts keep their seeds (and cache keys) across reruns.
                seed=derived_seed(self.seed, purpose, ask) if self.attempt == 1 else
                derived_seed(self.seed, purpose, ask, self.attempt),
                response_schema=response_schema)
            call_id = content_hash([self.owner_id, self.attempt, purpose, ask], 24)
            try:
                completion = await self.gateway.complete(request)
            except ProviderError as exc:
                self._record(call_id, purpose, request, None, None, "error", str(exc), exc.retries)
                raise
            value, status = parse(completion.text)
            self._record(call_id, purpose, request, completion, status, "ok", None)
            if status != "failed":
                return Reply(value, status, call_id, completion.text, ask + 1)
        raise ParseFailure(f"{purpose}: {model_key} gave no parseable reply in {self.parse_retries + 1} asks")

    def _record(self, call_id: str, purpose: str, request: ChatRequest, completion: Completion | None,
                parse_status: str | None, status: str, error: str | None, retries: int = 0) -> None:
        c = completion
        self.calls.append({
            "call_id": call_id, "trial_id": self.owner_id, "trial_attempt": self.attempt,
            "purpose": purpose, "model_key": request.model_key, "litellm_id": request.model.litellm_id,
            "request_hash": request.request_hash, "messages": request.messages, "params": request.params(),
            "response_text": c.text if c else None, "raw_response": c.raw_response if c else None,
            "prompt_tokens": c.prompt_tokens if c else None,
            "completion_tokens": c.completion_tokens if c else None,
            "cost_usd": c.cost_usd if c else None, "latency_s": c.latency_s if c else None,
            "cache_hit": c.cache_hit if c else False, "parse_status": parse_status,
            "retries": c.retries if c else retries, "status": status,
            "error": error, "created_at": now(), "finish_reason": c.finish_reason if c else None,
        })
        self._on_call()
