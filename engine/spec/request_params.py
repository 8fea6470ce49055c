"""What a model entry may add to its requests (`api_base`, `extra_params`), checked at load time:
a value that could only fail at run time (after a database is written, and after every retry) or
that would change the request behind the database's back is a spec error naming its key.

No message here quotes a value: an `api_base` may carry a password and a header value a key.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

# Request parameters the engine sets itself: ChatRequest.body() (engine/execute/gateway.py) and the
# transports (engine/execute/transports.py) send them, and the database records them as the
# design's. An `extra_params` key (or `extra_body` key, merged into the body) among them would send
# another request than the one recorded. tests/execute/test_provider_faults.py checks that every
# parameter the transports send is listed here.
ENGINE_REQUEST_KEYS = frozenset({
    "messages", "temperature", "top_p", "max_tokens", "seed", "response_format",  # ChatRequest.body()
    "model", "num_retries", "api_base", "api_key",  # the transports
    # Other names or consequences of the same settings: litellm's alias of api_base, OpenAI's newer
    # name of max_tokens, several choices (one is read, all are billed), a stream (never read).
    "base_url", "max_completion_tokens", "n", "stream",
})
# RFC 9110's token: the characters of a header name.
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
UNSAFE_HEADER_VALUE = re.compile(r"[\r\n\x00]")


def api_base_problem(url: str) -> str | None:
    """Why `url` cannot be a model server's address (None if it can)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "api_base contains a space, a line break or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port  # urllib checks the range (0..65535) and that it is a number
    except ValueError:
        return "api_base is not a valid URL (unbalanced [ ], an invalid host or a port that is not a number " \
               "in 1..65535)"
    if parts.scheme not in ("http", "https"):
        return "api_base must be a URL starting with http:// or https://"
    if not parts.hostname:
        return "api_base names no host (e.g. http://127.0.0.1:8000/v1)"
    if port == 0:
        return "api_base has port 0: give a port in 1..65535"
    return None


def extra_params_problems(extra: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key below extra_params, "" for extra_params itself; message) for each problem of a model
    entry's `extra_params`."""
    for name in extra:
        if name in ENGINE_REQUEST_KEYS:
            yield name, (f"the engine sets '{name}' itself (from the design, generation and the model entry); "
                         "an extra parameter may not override it, or the database would record another "
                         "request than the one sent")
    headers = extra.get("extra_headers")
    if headers is not None:
        yield from _header_problems(headers)
    body = extra.get("extra_body")
    if body is not None:
        if not isinstance(body, Mapping):
            yield "extra_body", "extra_body must be a map of request fields (it is merged into the request body)"
        else:
            for name in body:
                if name in ENGINE_REQUEST_KEYS:
                    yield f"extra_body.{name}", (f"the engine sets '{name}' itself; extra_body may not override it")
    yield from _json_problems(extra, "")


def _header_problems(headers: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(headers, Mapping):
        yield "extra_headers", "extra_headers must be a map of header names to text values"
        return
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            yield "extra_headers", "extra_headers has a name that is not an HTTP header name (letters, digits, -)"
            continue
        if not isinstance(value, str):
            yield f"extra_headers.{name}", "a header value must be text (quote it in the YAML)"
        elif UNSAFE_HEADER_VALUE.search(value):
            yield f"extra_headers.{name}", "a header value may not contain a line break (CR or LF) or a NUL"


def _json_problems(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Values the request's JSON cannot carry: a map key that is not text, a number that is not finite."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                yield path.strip("."), "a map key is not text (quote it in the YAML)"
                continue
            yield from _json_problems(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _json_problems(item, f"{path}.{i}")
    elif isinstance(value, float) and not math.isfinite(value):
        yield path.strip("."), "a number is not finite (nan or inf)"
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        yield path.strip("."), f"a {type(value).__name__} cannot be sent in a JSON request"
