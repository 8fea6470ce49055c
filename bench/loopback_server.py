"""A loopback OpenAI-compatible chat server that answers after a fixed latency.

A benchmark and test fixture, not a feature: it measures the engine's own overhead (the server
costs ~0.1 ms of CPU per request, so its latency is the only wait) and produces provider
failures on demand for the gateway's error-handling tests (HTTP 429 with Retry-After, empty
replies, a 401 that echoes the caller's key).

    python bench/loopback_server.py --port 0 --latency 0.2    # prints "PORT <n>" when listening

GET /stats returns {"requests": n, "by_model": {...}, "in_flight": n, "max_in_flight": n, "auth": [...]}.
POST /latency {"latency": s} sets the latency of the calls that arrive from then on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

try:  # a faster event loop where installed; the stdlib loop otherwise
    import uvloop  # type: ignore
except ImportError:  # pragma: no cover
    uvloop = None


class Behaviour:
    def __init__(self, latency: float, fail_429: int = 0, retry_after: float | None = None,
                 empty: int = 0, echo_auth: bool = False, reply: str = "I can't help with that.",
                 model_alias: str | None = None, completion_tokens: int = 12):
        self.latency = latency
        self.fail_429 = fail_429
        self.retry_after = retry_after
        self.empty = empty
        self.echo_auth = echo_auth
        self.reply = reply
        self.model_alias = model_alias
        self.completion_tokens = completion_tokens
        self.requests = 0
        self.by_model: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth: set[str] = set()


def _response(status: int, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: keep-alive\r\n{extra}\r\n").encode() + body


class ChatProtocol(asyncio.Protocol):
    def __init__(self, behaviour: Behaviour):
        self.b = behaviour
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            headers = {}
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4:head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            self.handle(head.split(" ", 2), headers, body)

    def handle(self, request_line: list[str], headers: dict[str, str], body: bytes) -> None:
        b = self.b
        method, path = request_line[0], request_line[1] if len(request_line) > 1 else "/"
        if method == "GET" and path.endswith("/stats"):
            stats = {"requests": b.requests, "by_model": b.by_model, "in_flight": b.in_flight,
                     "max_in_flight": b.max_in_flight,
                     "auth": sorted(b.auth)}
            self.transport.write(_response(200, json.dumps(stats).encode()))
            return
        if method == "POST" and path.endswith("/latency"):  # a test's run goes on faster once it has met the server
            b.latency = float(json.loads(body)["latency"])
            self.transport.write(_response(200, b"{}"))
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self.transport.write(_response(404, b'{"error": {"message": "not found"}}'))
            return
        b.requests += 1
        request = json.loads(body or b"{}")
        model = str(request.get("model", ""))
        b.by_model[model] = b.by_model.get(model, 0) + 1
        auth = headers.get("authorization", "")
        b.auth.add(auth)
        if b.echo_auth:
            # What a careless provider does: the caller's key, verbatim, in the error text.
            msg = json.dumps({"error": {"message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}",
                                        "type": "invalid_request_error", "code": "invalid_api_key"}})
            self.transport.write(_response(401, msg.encode()))
            return
        if b.fail_429 > 0:
            b.fail_429 -= 1
            extra = f"Retry-After: {b.retry_after:g}\r\n" if b.retry_after is not None else ""
            self.transport.write(_response(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                                           extra))
            return
        empty = b.empty > 0
        if empty:
            b.empty -= 1
        b.in_flight += 1
        b.max_in_flight = max(b.max_in_flight, b.in_flight)
        reply = {
            "id": f"chatcmpl-{b.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": b.model_alias or model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None if empty else b.reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": max(1, len(body) // 4), "completion_tokens": b.completion_tokens,
                      "total_tokens": max(1, len(body) // 4) + b.completion_tokens},
        }
        out = _response(200, json.dumps(reply).encode())
        asyncio.get_running_loop().call_later(b.latency, self._send, out)

    def _send(self, out: bytes) -> None:
        self.b.in_flight -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)


async def serve(port: int, behaviour: Behaviour) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ChatProtocol(behaviour), "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--fail-429", type=int, default=0, help="answer the first N requests with HTTP 429")
    p.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on those 429s")
    p.add_argument("--empty", type=int, default=0, help="answer the first N requests with no content")
    p.add_argument("--echo-auth", action="store_true", help="401 whose message carries the caller's key")
    p.add_argument("--reply", default="I can't help with that.")
    p.add_argument("--model-alias", default=None, help="the model name every reply reports")
    args = p.parse_args(argv)
    behaviour = Behaviour(args.latency, args.fail_429, args.retry_after, args.empty, args.echo_auth, args.reply,
                          args.model_alias)
    runner = uvloop.run if uvloop is not None else asyncio.run
    try:
        runner(serve(args.port, behaviour))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
