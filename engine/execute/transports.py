"""How a request leaves the gateway: one HTTP request to an OpenAI-compatible endpoint, or
litellm for every other provider (and for our own `local/` llama.cpp models).

OpenAI-compatible endpoints (`openai/...`, `hosted_vllm/...`: vLLM, llama.cpp's server, Ollama's
/v1, OpenAI itself) take the direct path: one pooled aiohttp session per endpoint, the request body
the chat-completions JSON, the reply parsed once. Measured against a loopback server (200 ms,
64 slots): 0.3 ms of CPU per call, where the openai SDK over httpx took 17 ms (measured with other
work on the machine); see the README's throughput section. Both paths return the same `ProviderReply` and raise
`TransportError` (or litellm's exceptions) that the gateway classifies the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Awaitable, Callable, Mapping

import orjson

from engine.execute.replies import FAILED_FINISH_REASONS, EmptyReply, ProviderReply, TransportError, \
    checked_reply, error_body_message, reply_from_json
from engine.kernel.errors import SpecError
from engine.kernel.redaction import redactor
from engine.spec.schema import ModelEntry

# litellm providers that speak the OpenAI chat-completions protocol over HTTP, with their endpoints.
OPENAI_COMPATIBLE = {"openai": "https://api.openai.com/v1", "hosted_vllm": None,
                     "openrouter": "https://openrouter.ai/api/v1"}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "hosted_vllm": "HOSTED_VLLM_API_KEY",
                   "openrouter": "OPENROUTER_API_KEY"}
# Providers whose default variable holds a key meant for whatever server api_base names.
OWN_KEY_VARIABLE = {"hosted_vllm"}
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


def provider_of(model: ModelEntry) -> str:
    return model.litellm_id.split("/", 1)[0]


def is_openai_compatible(model: ModelEntry) -> bool:
    return provider_of(model) in OPENAI_COMPATIBLE


def api_key(model: ModelEntry, model_key: str) -> str | None:
    """The key from the environment variable the model entry names (never from a config). The
    provider's default variable (OPENAI_API_KEY) is used only for the provider's own endpoint: a
    key is never sent to another server unless its entry names the variable."""
    provider = provider_of(model)
    default = DEFAULT_KEY_ENV.get(provider) if model.api_base is None or provider in OWN_KEY_VARIABLE else None
    name = model.api_key_env or default
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None and model.api_key_env:
        raise SpecError(f"the environment variable {name} named by api_key_env is not set",
                        key=f"models.{model_key}.api_key_env")
    if value:
        redactor().add(value)  # whatever the variable is called, its value is masked everywhere
    return value


def check_credentials(models: dict[str, ModelEntry]) -> None:
    """Before anything runs: every key variable a model entry names is set (a SpecError otherwise)."""
    for key, model in models.items():
        if model.api_key_env and not os.environ.get(model.api_key_env):
            raise SpecError(f"the environment variable {model.api_key_env} named by api_key_env is not set "
                            f"(export it with the key of {model.display_name})", key=f"models.{key}.api_key_env")
        if model.api_key_env:
            redactor().add(os.environ[model.api_key_env])


def endpoint(model: ModelEntry, model_key: str) -> str:
    base = model.api_base or OPENAI_COMPATIBLE.get(provider_of(model))
    if base is None:
        raise SpecError(f"{model.litellm_id} needs the URL of its server in api_base",
                        key=f"models.{model_key}.api_base")
    return base.rstrip("/") + "/chat/completions"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import datetime, timezone

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


class OpenAICompatible:
    """Direct HTTP to OpenAI-compatible endpoints: one connection pool per endpoint and event loop."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[int, str], Any] = {}

    def _session(self, url: str) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        key = (id(loop), url.split("/", 3)[2] if "://" in url else url)
        session = self._sessions.get(key)
        if session is None or session.closed:
            # The gateway's route slots bound concurrency; the pool must not add a second limit.
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                            timeout=aiohttp.ClientTimeout(total=None),
                                            cookie_jar=aiohttp.DummyCookieJar())
            self._sessions[key] = session
        return session

    async def complete(self, model_key: str, model: ModelEntry, body: dict[str, Any]) -> ProviderReply:
        import aiohttp

        url = endpoint(model, model_key)
        key = api_key(model, model_key)
        extra = dict(model.extra_params)
        headers = {"Content-Type": "application/json", **extra.pop("extra_headers", {})}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # As litellm does: extra_body's keys go into the request body itself (vLLM's chat_template_kwargs).
        # What the engine sets comes last: the request sent is the one recorded (the spec refuses
        # extra_params that would override it: ENGINE_REQUEST_KEYS in engine/spec/request_params.py).
        payload = {**extra.pop("extra_body", {}), **extra, **body, "model": model.litellm_id.split("/", 1)[1]}
        try:
            async with self._session(url).post(url, data=orjson.dumps(payload, default=str), headers=headers) as response:
                text = (await response.read()).decode("utf-8", errors="replace")
                if response.status >= 400:
                    raise TransportError(f"HTTP {response.status}: {error_body_message(text)}", response.status,
                                         parse_retry_after(response.headers.get("Retry-After")))
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc} ({url})") from exc
        try:
            return reply_from_json(text)
        except (ValueError, AttributeError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise TransportError(f"unreadable reply from {url}: {exc}") from exc

    async def close(self) -> None:
        """Close the pools of the running event loop (each asyncio.run has its own)."""
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._sessions if k[0] == loop_id]:
            await self._sessions.pop(key).close()


class LiteLLM:
    """Every other provider, and our `local/` models (a litellm custom provider)."""

    def __init__(self, call_fn: Callable[..., Awaitable[Any]] | None = None):
        self._call_fn = call_fn

    @staticmethod
    def warm_up() -> None:
        """Import litellm now, outside any call's timeout (the import takes seconds)."""
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = False

    async def complete(self, model_key: str, model: ModelEntry, body: dict[str, Any]) -> ProviderReply:
        # What the engine sets comes last, as on the direct path.
        kwargs = {**model.extra_params, **body, "model": model.litellm_id, "num_retries": 0}
        if model.api_base:
            kwargs["api_base"] = model.api_base
        key = api_key(model, model_key) if model.api_key_env else None
        if key:
            kwargs["api_key"] = key
        if self._call_fn is not None:
            response = await self._call_fn(**kwargs)
        else:
            import litellm

            response = await litellm.acompletion(**kwargs)
        choices = _field(response, "choices")
        if not choices:
            raise EmptyReply("the reply has no choices")
        choice = choices[0]
        usage = _field(response, "usage")
        message = _field(choice, "message")
        # litellm maps a provider's failure ("error", Cohere's "ERROR") to "stop" and keeps the original.
        native = _field(_field(choice, "provider_specific_fields"), "native_finish_reason")
        finish_reason = _field(choice, "finish_reason")
        if isinstance(native, str) and native.lower() in FAILED_FINISH_REASONS:
            finish_reason = native
        return checked_reply(content=_field(message, "content"), raw_json=_raw_json(response),
                             prompt_tokens=_field(usage, "prompt_tokens"),
                             completion_tokens=_field(usage, "completion_tokens"), finish_reason=finish_reason,
                             tool_calls=bool(_field(message, "tool_calls")), error=_field(choice, "error"))


def _field(obj: Any, name: str) -> Any:
    """A field of a litellm object, a plain dict or whatever a test's provider returns (None if absent)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _raw_json(response: Any) -> str | None:
    try:
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        return json.dumps(data, default=str)
    except Exception:  # noqa: BLE001 - raw copy is best effort; the text is stored regardless
        return None
