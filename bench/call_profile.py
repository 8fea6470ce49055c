"""Where a local call's time goes: replays a study's recorded calls of each model in order on a fresh
model (as bench/grammar_replay.py does) and splits each call's wall time into its parts.

    .venv/bin/python bench/call_profile.py DB [--n 40] [--threads 1] [--models gemma3_270m,smollm2_135m]

Parts, in ms per call: the chat template, tokenising the prompt, the JSON schema -> GBNF grammar and the
sampler chain it goes into, the prompt's decode and the generated tokens' decodes (llama.cpp's own
timings), sampling (llama_sampler_sample; of it, the lazy grammar's Python), detokenising, and the rest:
llama-cpp-python's Python per call and per token. Light wrappers around those functions, no profiler:
a profiler inflates the Python parts. Checks each reply against the database's. Measures; asserts nothing.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
PARTS = ("template", "tokenize", "grammar", "prompt eval", "token eval", "sampling", "lazy grammar",
         "detokenize", "rest")


def _timed(stack: ExitStack, owner: Any, attribute: str, totals: dict[str, float], part: str) -> None:
    """Add the time spent in owner.attribute to totals[part] until the stack closes."""
    original = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[part] += time.perf_counter() - started

    setattr(owner, attribute, wrapper)
    stack.callback(setattr, owner, attribute, original)


def profile(model: Any, calls: list[tuple[dict, str]], threads: int,
            provider_factory: Callable[[], Any] | None = None) -> tuple[dict[str, float], int, int]:
    """Seconds per part over the calls, the number of replies unlike the database's, and tokens generated."""
    import llama_cpp
    from llama_cpp import _internals, llama_chat_format

    from engine.providers import lazy_grammar
    from engine.providers.local_llama import LocalLlamaProvider, locate_weights, model_name

    provider = (provider_factory or LocalLlamaProvider)()
    name = model_name(model.litellm_id)
    provider.register(name, locate_weights(model.weights), model.context_window, threads, model.prompt_format)
    llama = provider._load(name).llama
    ctx = llama._ctx.ctx
    totals: dict[str, float] = defaultdict(float)
    differ = 0
    with ExitStack() as stack:
        _timed(stack, llama_chat_format.Jinja2ChatFormatter, "__call__", totals, "template")
        _timed(stack, llama_cpp.Llama, "tokenize", totals, "tokenize")
        _timed(stack, llama_chat_format, "_grammar_for_response_format", totals, "grammar")
        _timed(stack, type(llama), "_init_sampler", totals, "grammar")
        _timed(stack, _internals.LlamaSampler, "sample", totals, "sampling")
        _timed(stack, lazy_grammar.LazyGrammar, "_apply", totals, "lazy grammar")
        _timed(stack, llama_cpp.Llama, "detokenize", totals, "detokenize")
        before = llama_cpp.llama_perf_context(ctx)
        started = time.perf_counter()
        for body, text in calls:
            raw = provider.chat(name, body["messages"], body)
            differ += raw["choices"][0]["message"]["content"] != text
        wall = time.perf_counter() - started
    after = llama_cpp.llama_perf_context(ctx)
    totals["prompt eval"] = (after.t_p_eval_ms - before.t_p_eval_ms) / 1000
    totals["token eval"] = (after.t_eval_ms - before.t_eval_ms) / 1000
    measured = sum(seconds for part, seconds in totals.items() if part != "lazy grammar")  # inside sampling
    totals["rest"] = wall - measured
    totals["wall"] = wall
    totals["prompt tokens"] = after.n_p_eval - before.n_p_eval
    generated = after.n_eval - before.n_eval
    del provider
    gc.collect()
    return dict(totals), differ, generated


def main() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from grammar_replay import recorded_calls, replay_args

    db, n, threads, keys = replay_args(__doc__, 40)

    from engine import load_study

    models = load_study("model_size").spec.models
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for key in keys:
        calls = recorded_calls(db, key, models[key], n)
        totals, differ, generated = profile(models[key], calls, threads)
        count = len(calls)
        print(f"\n{key}: {count} calls, {totals['wall'] / count * 1000:.0f} ms/call, "
              f"{totals['prompt tokens'] / count:.0f} prompt tokens evaluated and {generated / count:.1f} "
              f"generated per call, {differ} replies unlike the database's")
        for part in PARTS:
            per_call = totals.get(part, 0.0) / count * 1000
            note = ""
            if part == "token eval" and generated:
                note = f"  ({totals[part] / generated * 1000:.1f} ms/token)"
            if part == "lazy grammar":
                note = "  (inside sampling)"
            print(f"  {part:13} {per_call:8.1f} ms  {totals.get(part, 0.0) / totals['wall']:6.1%}{note}")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
