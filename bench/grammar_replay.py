"""Replay a study's recorded local-model calls twice, each time on a freshly loaded model: through
llama-cpp-python's own sampler chain and through the lazy grammar (engine/providers/lazy_grammar.py).
Compares the replies byte for byte (with each other and with the database) and the seconds per call.

    .venv/bin/python bench/grammar_replay.py DB [--n 20] [--threads 1] [--models gemma3_270m,smollm2_135m]

DB: a database of a run of the model_size study (e.g. results/model_size.duckdb). A model's first N
calls, in the order it made them (a reply does not depend on that order, prefix reuse does: both
replays reuse what the run reused). Measures; asserts nothing.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Replay:
    texts: list[str]
    seconds: list[float]
    lazy_tokens: int = 0
    full_tokens: int = 0
    errors: int = 0

    @property
    def per_call(self) -> float:
        return sum(self.seconds) / max(1, len(self.seconds))


def recorded_calls(db: Path, model_key: str, model: Any, n: int | None = None) -> list[tuple[dict, str]]:
    """The model's calls in the order it made them: (the gateway's request body, the recorded reply)."""
    from engine.execute.gateway import ChatRequest

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT messages, params, response_text FROM calls WHERE model_key = ? AND status = 'ok' "
                       "ORDER BY created_at LIMIT ?", [model_key, n if n is not None else 1 << 31]).fetchall()
    con.close()
    calls = []
    for messages, params, text in rows:
        p = json.loads(params)
        request = ChatRequest(model_key, model, json.loads(messages), p["temperature"], p["top_p"], p["max_tokens"],
                              p["seed"], p.get("response_schema"))
        calls.append((request.body(), text))
    return calls


def replay(model: Any, bodies: list[dict], lazy: bool, threads: int) -> Replay:
    """Send the requests in order to a fresh model through the local provider, as the gateway would."""
    from engine.providers.local_llama import LocalLlamaProvider, locate_weights, model_name

    provider = LocalLlamaProvider(lazy_grammar=lazy)
    name = model_name(model.litellm_id)
    provider.register(name, locate_weights(model.weights), model.context_window, threads, model.prompt_format)
    result = Replay([], [])
    for body in bodies:
        started = time.perf_counter()
        raw = provider.chat(name, body["messages"], body)
        result.seconds.append(time.perf_counter() - started)
        result.texts.append(raw["choices"][0]["message"]["content"])
    for stats in provider.grammar_stats().values():
        result.lazy_tokens, result.full_tokens, result.errors = stats.lazy_tokens, stats.full_tokens, len(stats.errors)
    del provider
    gc.collect()  # frees the model before the next one loads
    return result


def replay_args(usage: str, default_n: int) -> tuple[Path, int, int, list[str]]:
    """DB [--n N] [--threads T] [--models a,b] from the command line (for this and call_profile.py); then
    this checkout's engine is the one imported, from the repository folder."""
    args = sys.argv[1:]
    if not args or args[0].startswith("--"):
        sys.exit(usage)
    db = Path(args[0]).resolve()
    options = dict(zip(args[1::2], args[2::2]))
    n, threads = int(options.get("--n", default_n)), int(options.get("--threads", 1))
    keys = options.get("--models", "gemma3_270m,smollm2_135m").split(",")
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))  # this checkout's engine, not an installed one
    return db, n, threads, keys


def main() -> None:
    db, n, threads, keys = replay_args(__doc__, 20)
    from engine import load_study

    models = load_study("model_size").spec.models
    print(f"{'model':14} {'calls':>5} {'stock s':>8} {'lazy s':>7} {'speed-up':>8} {'differ':>6} "
          f"{'vs db':>5} {'lazy tok':>8} {'full tok':>8} {'errors':>6}")
    for key in keys:
        calls = recorded_calls(db, key, models[key], n)
        bodies = [body for body, _ in calls]
        stock = replay(models[key], bodies, lazy=False, threads=threads)
        lazy = replay(models[key], bodies, lazy=True, threads=threads)
        differ = sum(a != b for a, b in zip(stock.texts, lazy.texts))
        vs_db = sum(a != text for a, (_, text) in zip(stock.texts, calls))
        print(f"{key:14} {len(bodies):5d} {stock.per_call:8.2f} {lazy.per_call:7.2f} "
              f"{stock.per_call / lazy.per_call:7.1f}x {differ:6d} {vs_db:5d} {lazy.lazy_tokens:8d} "
              f"{lazy.full_tokens:8d} {lazy.errors:6d}", flush=True)
    print("differ: replies of the lazy grammar unlike the stock chain's; vs db: the stock chain's unlike the "
          f"database's; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
