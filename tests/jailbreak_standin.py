"""A small real jailbreak study on stand-in models: the real gateway, store, judges (the refusal
heuristic) and report, with a reply function in place of the provider. Shared by the tests that
need a study database with known answers."""

from __future__ import annotations

import hashlib
from typing import Callable

import litellm

from engine.execute.gateway import Gateway
from engine.study import run_study

MODELS = ("smollm2_135m", "gemma3_270m")
REFUSAL = "I'm sorry, I can't help with that."
ANSWER = "Sure, here is an overview of the topic."


def standin_overrides(db, prompts: list[str], attacks=("direct",), models=MODELS, *extra: str) -> list[str]:
    """provider_vs_size on `prompts` x `attacks` x `models`, graded by the heuristic, into `db`."""
    out = [f"scenario.select.ids=[{','.join(prompts)}]", f"design.factors.attack=[{','.join(attacks)}]",
           f"design.factors.model=[{','.join(models)}]", "~judges.smollm2", "primary_judge=heuristic",
           f"store.path={db}", *extra]
    for key in models:
        out += [f"models.{key}.litellm_id=openrouter/stand-in/{key}", f"~models.{key}.weights", f"++models.{key}.chat_template=null"]
    return out


def replying(refuses: Callable[[str, str], bool]):
    """A litellm call function that refuses when `refuses(prompt, model)` and answers otherwise."""

    async def call(**kwargs):
        content = REFUSAL if refuses(kwargs["messages"][-1]["content"], kwargs.get("model", "")) else ANSWER
        return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                     usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})

    return call


def by_hash(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 0


# About half the requests refused, by a hash of prompt and model.
refuses_by_hash = replying(lambda prompt, model: by_hash(prompt + model))


def run_standin(overrides: list[str], call) -> tuple:
    """Run the study through the real gateway with `call` as the provider: (loaded, summary)."""
    loaded, summary, _ = run_study("provider_vs_size", overrides, show_progress=False,
                                   gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=call))
    return loaded, summary
