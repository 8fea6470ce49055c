"""A local model's reply depends on its request alone: not on the calls before it (what the KV cache held),
the order the calls come in, a restored prefix state or the thread count. So a run resumed after a kill,
or split over Slurm jobs, draws the replies an unbroken run draws (engine/providers/prefix_states.py)."""

import json
from pathlib import Path

import pytest
from llama_cpp import Llama

from engine import load_study
from engine.providers.local_llama import LocalLlamaProvider, locate_weights, model_name
from engine.providers.prefix_states import aligned

REQUESTS = json.loads((Path(__file__).parent / "data" / "escalation_requests.json").read_text())


def bodies() -> list[dict]:
    return [{"messages": [{"role": "system", "content": REQUESTS["system"]}, {"role": "user", "content": r["user"]}],
             "seed": r["seed"], **REQUESTS["params"]} for r in REQUESTS["requests"]]


@pytest.fixture(scope="module")
def gemma():
    """Gemma 3 270M, the shipped model whose logits are most sensitive to how a prompt is batched."""
    entry = load_study("model_size").spec.models["gemma3_270m"]
    path = locate_weights(entry.weights)

    def provider(threads: int) -> tuple[LocalLlamaProvider, str]:
        made = LocalLlamaProvider()
        made.register(model_name(entry.litellm_id), path, entry.context_window, threads, entry.prompt_format)
        return made, model_name(entry.litellm_id)

    return provider


def reply(provider: LocalLlamaProvider, name: str, body: dict) -> str:
    return provider.chat(name, body["messages"], body)["choices"][0]["message"]["content"]


def test_a_reply_is_the_same_after_any_history_order_or_thread_count(gemma):
    # On the code before prefix_states, requests 1, 4 and 5 drew other replies alone than after the ones
    # before them (llama.cpp decoded the unshared rest of a prompt as one batch from wherever it began).
    requests = bodies()
    provider, name = gemma(1)
    in_order = [reply(provider, name, body) for body in requests]
    llama = provider._models[name].llama
    assert llama.prefix_stats.from_live + llama.prefix_stats.from_saved == len(requests) - 1  # prefixes reused
    stats = provider.stats()[name]
    assert stats.prompt_evaluated < stats.prompt_tokens / 2

    for index in (5, 1):  # alone, as the first call after a resume is
        provider.forget_prompts()
        assert reply(provider, name, requests[index]) == in_order[index], index
    # Another process, two threads, the calls in another order: prefixes from saved states, not the call before.
    other, _ = gemma(2)
    for index in (2, 1, 0):
        assert reply(other, name, requests[index]) == in_order[index], index
    assert other._models[name].llama.prefix_stats.from_saved >= 1


def test_a_prefix_is_reused_only_up_to_an_aligned_position_the_cache_decoded_in_whole_groups(gemma):
    provider, name = gemma(1)
    first_body, second_body = bodies()[:2]
    reply(provider, name, first_body)
    llama = provider._models[name].llama
    first_len = provider.stats()[name].prompt_tokens
    first_prompt, first_reply = list(llama.input_ids[:first_len]), list(llama.input_ids[first_len:llama.n_tokens])
    assert first_reply  # generated tokens sit in the live cache after the prompt
    saved = llama.saved[-1].tokens  # the first prompt up to its last aligned position: not its tail or reply
    assert len(saved) == aligned(first_len) and list(saved) == first_prompt[: len(saved)]

    reply(provider, name, second_body)
    second_prompt = list(llama.input_ids[: provider.stats()[name].prompt_tokens - first_len])
    shared = Llama.longest_token_prefix(first_prompt, second_prompt)
    assert 0 < shared < first_len  # the player's name differs early in the user turn
    # Reused: the shared prefix cut back to an aligned position (never into a prompt's unaligned tail).
    assert llama.prefix_stats.tokens_reused == aligned(shared) > 0
