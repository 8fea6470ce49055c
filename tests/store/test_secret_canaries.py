"""No key reaches any file a command writes, nor its output: canary secrets of four shapes (and two
literals in the study file) go through `run`, `run -m`, `report`, `export inspect`, `summary` and
`plan` against a loopback OpenAI-compatible server that echoes every credential it receives back in
its replies and in its error messages. Then every column of every table of every DuckDB file, every
file written (and every member of a zip archive such as an .eval) and the captured output are
searched for each canary."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import threading
import zipfile
from pathlib import Path

import duckdb
import pytest

from engine.cli import main

STUDY = """\
defaults:
  - base
  - scenario: jailbreak
  - /judge@judges.heuristic: refusal_heuristic
  - executor: local
  - _self_

name: canary
title: "Canary study"
primary_judge: heuristic
model_set: canary
models:
  keyed:     {{litellm_id: openai/keyed, api_base: "{base}", api_key_env: CANARY_OPENAI_API_KEY, {common}}}
  custom:    {{litellm_id: openai/custom, api_base: "{base}", api_key_env: CANARY_LOOPBACK_CRED, {common}}}
  header:
    litellm_id: openai/header
    api_base: "{base}"
    extra_params:
      extra_headers:
        Authorization: "Token ${{oc.env:CANARY_HEADER_VALUE}}"
        X-Upstream-Token: "Bearer {literal_bearer}"
      API_KEY: "{literal_param}"
    {common_block}
  userinfo:  {{litellm_id: openai/userinfo, api_base: "http://127.0.0.1:9/v1", {common}}}
design:
  factors:
    model: [keyed, custom, header, userinfo]
    attack: [direct]
  seeds: 1
scenario:
  select: {{ids: [cyber-01, cyber-02, benign-01]}}
generation: {{max_tokens: 32}}
executor:
  budget: {{max_usd: null, max_tokens: null}}
  max_retries: 1
  backoff_initial_s: 0.01
  backoff_max_s: 0.02
"""
COMMON = {"display_name": "Canary", "provider": "Loopback", "family": "Loopback", "route": "loopback",
          "params": "{total_b: 1.0}", "price": "{input_per_mtok: 0.1, output_per_mtok: 0.1}"}


def echo_server() -> tuple[asyncio.AbstractEventLoop, int, threading.Thread, list[str]]:
    """An OpenAI-compatible server that repeats every credential it is sent: in the reply's text, and
    (every third request of a model) in an HTTP 400's error message."""
    from aiohttp import web

    counts: dict[str, int] = {}
    heard_all: list[str] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        heard = " | ".join(f"{h}={request.headers.get(h, '')}" for h in ("Authorization", "X-Upstream-Token"))
        heard += f" | API_KEY={body.get('API_KEY', '')}"
        heard_all.append(heard)
        model = str(body.get("model"))
        counts[model] = counts.get(model, 0) + 1
        if counts[model] % 3 == 0:
            return web.json_response({"error": {"message": f"rejected credentials {heard}"}}, status=400)
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"I can't help with that. You sent {heard}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    return loop, port[0], thread, heard_all


@pytest.fixture
def server():
    loop, port, thread, heard = echo_server()
    yield port, heard
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def found_in_databases(root: Path, canaries: list[str]) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*.duckdb")):
        con = duckdb.connect(str(path), read_only=True)
        try:
            columns = con.execute("SELECT table_name, column_name FROM information_schema.columns"
                                  " WHERE table_schema = 'main'").fetchall()
            assert columns, path
            for table, column in columns:
                values = con.execute(f'SELECT CAST("{column}" AS VARCHAR) FROM "{table}"').fetchall()
                text = "\n".join(v for (v,) in values if v is not None)
                hits += [f"{path.name}:{table}.{column}: {c}" for c in canaries if c in text]
        finally:
            con.close()
    return hits


def found_in_files(root: Path, canaries: list[str], skip: set[Path]) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in skip):
        data = path.read_bytes()
        blobs = {str(path): data}
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                blobs |= {f"{path}!{name}": archive.read(name) for name in archive.namelist()}
        hits += [f"{where}: {c}" for where, blob in blobs.items() for c in canaries if c.encode() in blob]
    return hits


def test_no_canary_reaches_a_database_a_file_or_the_output(tmp_path, server, monkeypatch, capfd):
    server, heard = server
    key = "sk-canary" + secrets.token_hex(12)                 # key-shaped, in a *_API_KEY variable
    custom = "Qz!" + secrets.token_hex(6) + "~r#Wv"           # no key shape, in a variable of any name
    header = "hdr.Canary" + secrets.token_hex(6)              # only ever in ${oc.env:...} of a header
    password = "pw!Canary" + secrets.token_hex(5)             # in api_base's user info, on the command line
    literal_bearer = "LitBearer" + secrets.token_hex(6)       # literals in the study file itself
    literal_param = "LitParam" + secrets.token_hex(6)
    monkeypatch.chdir(tmp_path)  # whatever a command writes where it runs is searched too
    monkeypatch.setenv("CANARY_OPENAI_API_KEY", key)
    monkeypatch.setenv("CANARY_LOOPBACK_CRED", custom)
    monkeypatch.setenv("CANARY_HEADER_VALUE", header)
    basic = base64.b64encode(f"canary:{password}".encode()).decode()  # as aiohttp sends it
    canaries = [key, custom, header, password, literal_bearer, literal_param, basic]

    base = f"http://127.0.0.1:{server}/v1"
    common = ", ".join(f"{k}: {v}" for k, v in COMMON.items())
    study = tmp_path / "canary.yaml"
    block = "\n    ".join(f"{k}: {v}" for k, v in COMMON.items())
    study.write_text(STUDY.format(base=base, common=common, common_block=block, literal_bearer=literal_bearer,
                                  literal_param=literal_param))
    args = [str(study), f"models.userinfo.api_base='http://canary:{password}@127.0.0.1:{server}/v1'"]

    codes = {
        "run": main(["run", *args, "--no-progress", "--formats", "html"]),
        "run -m": main(["run", *args, "-m", "generation.temperature=0,0.5", "--no-progress", "--formats", "html"]),
        "report": main(["report", *args, "--formats", "html"]),
        "export": main(["export", "inspect", *args]),
        "summary": main(["summary", *args]),
        "plan": main(["plan", *args]),
    }
    out = capfd.readouterr()
    assert codes == {"run": 0, "run -m": 0, "report": 0, "export": 0, "summary": 0, "plan": 0}, out.err

    # The canaries did travel: the server heard every one (the password as HTTP Basic), and the
    # database holds its echoes, masked.
    assert all(c in " ".join(heard) for c in canaries if c != password)
    con = duckdb.connect(str(tmp_path / "results" / "canary.duckdb"), read_only=True)
    try:
        replies = [r for (r,) in con.execute("SELECT response_text FROM responses").fetchall()]
        errors = [e for (e,) in con.execute("SELECT error FROM calls WHERE status = 'error'").fetchall()]
        shards = list((tmp_path / "results").rglob("shards/*.duckdb"))
    finally:
        con.close()
    assert replies and errors and len(shards) == 2
    assert all("[REDACTED]" in r for r in replies) and all("rejected credentials" in e for e in errors)
    assert (tmp_path / "results" / "canary-inspect").is_dir() and (tmp_path / "reports" / "canary").is_dir()

    hits = found_in_databases(tmp_path, canaries) + found_in_files(tmp_path, canaries, skip={study})
    hits += [f"{name}: {c}" for name, text in (("stdout", out.out), ("stderr", out.err)) for c in canaries if c in text]
    lines_with_canaries = [line for line in out.out.splitlines() if any(c in line for c in canaries)]
    assert not hits, "\n".join(hits + lines_with_canaries)
