"""What a provider's reply may be, checked where it enters (both transports build their
`ProviderReply` here): nothing a provider sends reaches the cache, the accounting or the database
unchecked.

- Token counts are whole numbers in 0..MAX_TOKENS_PER_CALL. An integral float (3.0, as some JSON
  encoders write integers) is taken as the integer it is; a string ("12"), a bool, a fraction, a
  negative or an absurd count, NaN or a map is not coerced: the reply is a `ProviderFault`.
  A missing count (no `usage`) is 0, as providers that bill nothing send it.
- The text is a string, None, or a list of text parts (their text, joined); anything else is a fault.
- A reply that says it failed (a choice with `finish_reason` "error" or "abort", a choice or a
  body carrying an `error` object) is a fault, with the provider's message.

A fault is retried like any provider error (a proxy's glitch may pass; a deterministic server fails
the same way each time and costs only the retries), then recorded as that call's error: never
cached, never counted as an outcome, never billed (its numbers cannot be trusted).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Mapping

import orjson

from engine.kernel.redaction import redact

# Far above any model's context window (the largest are about 10^7 tokens) and twice below the
# database's 32-bit INTEGER columns, so that one call's prompt + completion always fits one.
# The entry's `context_window` is not the bound: it is the author's figure (8192 when not given),
# and providers bill reasoning and cached tokens beyond it.
MAX_TOKENS_PER_CALL = 10**9
# finish_reason values by which a provider says the reply is not a whole answer: "error"
# (OpenRouter, vLLM), "abort" (vLLM, SGLang: the request was cut off on the server).
FAILED_FINISH_REASONS = frozenset({"error", "abort"})
MESSAGE_CHARS = 300  # of a provider's error message, cut after redaction (a cut key escapes the mask)


@dataclass(frozen=True)
class ProviderReply:
    text: str | None
    raw_json: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    tool_calls: bool = False


class TransportError(Exception):
    """An HTTP answer that is not a reply (status >= 400), or a reply without a usable body."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status_code = status
        self.retry_after_s = retry_after_s


class EmptyReply(TransportError):
    """HTTP 200 with no content: retried like a provider error (unless the model stopped on its own
    account: `final`), never cached."""

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final


class ProviderFault(TransportError):
    """A reply that says it failed or whose fields are malformed. Retried (as a 5xx is, or as the
    status the provider's error object names), then an error row."""


def checked_reply(*, content: Any, raw_json: str | None, prompt_tokens: Any, completion_tokens: Any,
                  finish_reason: Any, tool_calls: bool = False, error: Any = None) -> ProviderReply:
    """The one way a transport makes a `ProviderReply`: every field checked (see the module's doc)."""
    if error:
        raise provider_error(error, "a reply with an error")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise ProviderFault(f"malformed reply: finish_reason is a {type(finish_reason).__name__}, not text")
    if finish_reason is not None and finish_reason.lower() in FAILED_FINISH_REASONS:
        raise ProviderFault(f"the provider ended the reply with finish_reason={redact(finish_reason)[:40]!r}: "
                            "an incomplete answer")
    return ProviderReply(reply_text(content), raw_json, token_count(prompt_tokens, "prompt_tokens"),
                         token_count(completion_tokens, "completion_tokens"), finish_reason, tool_calls)


def token_count(value: Any, name: str) -> int:
    """A usage count, checked: a whole number in 0..MAX_TOKENS_PER_CALL (None: 0)."""
    if type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL:  # nearly every reply: one comparison
        return value
    if value is None:
        return 0
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)):
        value = float(value)
        if not value.is_integer():  # also NaN and infinities
            raise ProviderFault(f"malformed reply: usage.{name} is {value!r}, not a whole number")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ProviderFault(f"malformed reply: usage.{name} is a {type(value).__name__}, not a number")
    count = operator.index(value)
    if count < 0:
        raise ProviderFault(f"malformed reply: usage.{name} is negative")
    if count > MAX_TOKENS_PER_CALL:  # the value itself is not echoed: it may have 10,000 digits
        raise ProviderFault(f"malformed reply: usage.{name} is above {MAX_TOKENS_PER_CALL:,}, the most one call "
                            "can use")
    return count


def reply_text(content: Any) -> str | None:
    """The message's text: a string, None, or the text of a list of text parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            text = part.get("text") if isinstance(part, Mapping) else None
            if not isinstance(text, str) or part.get("type", "text") != "text":
                raise ProviderFault("malformed reply: the message content is a list with a part that is not text")
            texts.append(text)
        return "".join(texts)
    raise ProviderFault(f"malformed reply: the message content is a {type(content).__name__}, not text")


def reply_from_json(raw: str) -> ProviderReply:
    """A chat-completions JSON body (the direct HTTP path) -> a checked reply."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ProviderFault(f"malformed reply: the body is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not choices:
        if data.get("error"):  # HTTP 200 with an error object only (OpenRouter, proxies)
            raise provider_error(data["error"], "HTTP 200 with an error")
        raise EmptyReply("the reply has no choices")
    first = choices[0] if isinstance(choices, list) else None
    if not isinstance(first, dict):
        raise ProviderFault("malformed reply: choices is not a list of objects")
    message = first.get("message") or {}
    usage = data.get("usage") or {}
    if not isinstance(message, dict) or not isinstance(usage, dict):
        raise ProviderFault("malformed reply: message or usage is not an object")
    return checked_reply(content=message.get("content"), raw_json=raw, prompt_tokens=usage.get("prompt_tokens"),
                         completion_tokens=usage.get("completion_tokens"),
                         finish_reason=first.get("finish_reason"), tool_calls=bool(message.get("tool_calls")),
                         error=first.get("error") or data.get("error"))


def provider_error(error: Any, what: str) -> ProviderFault:
    """A fault carrying the provider's own message (redacted, then cut) and, when its error object
    names an HTTP status (OpenRouter's `code: 429`), that status, so it is retried and rate-limited
    as that status is."""
    code = error.get("code") if isinstance(error, Mapping) else None
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else None
    return ProviderFault(f"{what}{f' {status}' if status else ''}: {error_message(error)}", status)


def error_message(error: Any) -> str:
    """The message of a provider's error (an object, a string or a whole body), redacted before it
    is cut and on one line."""
    if isinstance(error, Mapping):
        error = error.get("message") or error
    text = " ".join(str(redact(error if isinstance(error, str) else str(error))).split())
    return text[:MESSAGE_CHARS] or "(no message)"


def error_body_message(body: str) -> str:
    """The message of an HTTP error's body: its `error` object's, or the body itself."""
    try:
        data = orjson.loads(body)
    except ValueError:
        return error_message(body)
    error = data.get("error") if isinstance(data, dict) else None
    return error_message(error or body)
