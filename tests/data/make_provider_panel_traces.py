"""Writes tests/data/traces_provider_panel.csv: per-trace verdicts of the provider-vs-size write-up's
scale (../shared/seeds/provider_vs_size_jailbreak.txt): the 21 models of 12 providers of
conf/model_set/openrouter_provider_panel.yaml, six attacks, harmful prompts in eight categories and
benign controls. Each model's attack success rate is the write-up's where it gives one (OpenAI 51.7%,
40.7%, 15.3%; Nvidia 39.8%, 35.9%, 40.8%; Mistral 0% and 29.5%; Anthropic 9% on average; Google lowest),
plausible otherwise. A trace succeeds with probability logistic(intercept + attack effect + prompt
difficulty), so prompts cluster as in a real corpus; each model's intercept is solved for so that its
expected rate over the attacks and prompts it saw is its rate. As in the write-up, some providers were tested on
fewer prompts and attacks (its caveat: "partially different prompt sets", "small samples").

    .venv/bin/python tests/data/make_provider_panel_traces.py   # rewrites the file (deterministic content)
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

FILE = Path(__file__).parent / "traces_provider_panel.csv"
# model: (provider, family, total params (B), active params (B) or None, attack success rate)
MODELS = {
    "gemma-3-12b-it": ("Google", "Gemma 3", 12, None, 0.08),
    "gemma-3-27b-it": ("Google", "Gemma 3", 27, None, 0.06),
    "claude-haiku-4.5": ("Anthropic", "Claude 4.5", 20, None, 0.12),
    "claude-sonnet-4": ("Anthropic", "Claude 4", 200, None, 0.06),
    "mistral-7b-instruct": ("Mistral", "Mistral 7B", 7.3, None, 0.0),
    "mistral-small-3.1-24b": ("Mistral", "Mistral Small", 24, None, 0.18),
    "mistral-large-2411": ("Mistral", "Mistral Large", 123, None, 0.295),
    "gpt-4o-mini": ("OpenAI", "GPT-4o", 8, None, 0.517),
    "gpt-oss-120b": ("OpenAI", "gpt-oss", 117, 5.1, 0.407),
    "gpt-4o": ("OpenAI", "GPT-4o", 200, None, 0.153),
    "lfm-2.2-6b": ("Liquid", "LFM2", 2.6, None, 0.30),
    "llama-3.1-8b-instruct": ("Meta", "Llama 3", 8, None, 0.32),
    "llama-3.3-70b-instruct": ("Meta", "Llama 3", 70, None, 0.22),
    "nemotron-nano-9b-v2": ("Nvidia", "Nemotron Nano", 9, None, 0.398),
    "nemotron-nano-12b-v2-vl": ("Nvidia", "Nemotron Nano", 12, None, 0.359),
    "nemotron-3-nano-30b-a3b": ("Nvidia", "Nemotron 3", 31.6, 3.2, 0.408),
    "deepseek-r1": ("DeepSeek", "DeepSeek R1", 671, 37, 0.35),
    "qwen3-235b-a22b": ("Alibaba", "Qwen3", 235, 22, 0.25),
    "phi-4": ("Microsoft", "Phi-4", 14, None, 0.20),
    "command-r-08-2024": ("Cohere", "Command R", 32, None, 0.45),
    "glm-4.5-air": ("Z.ai", "GLM-4.5", 106, 12, 0.28),
}
# Attack: shift of a trace's log-odds of success.
ATTACKS = {"direct": -1.0, "roleplay": 0.4, "refusal_suppression": 0.2, "prefix_injection": 0.0,
           "hypothetical": 0.5, "format_lock": 0.1}
CATEGORIES = ["cyber", "weapons", "fraud", "harassment", "self_harm", "drugs", "privacy", "physical_harm"]
PROMPTS = 32          # harmful prompts, four per category
BENIGN = 8            # benign controls, asked without an attack
PROMPT_SD = 1.0       # SD of a prompt's difficulty on the log-odds scale
# The small samples: these models saw only the first prompts under two attacks.
SMALL = {"lfm-2.2-6b", "command-r-08-2024", "glm-4.5-air"}
SMALL_PROMPTS, SMALL_ATTACKS = 12, ("direct", "roleplay")


def logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def intercept(rate: float, shifts: list[float]) -> float:
    """The log-odds b with mean(logistic(b + s) for s in shifts) == rate (bisection: the mean rises in b)."""
    low, high = -20.0, 20.0
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if sum(logistic(mid + s) for s in shifts) / len(shifts) < rate else (low, mid)
    return (low + high) / 2


def verdict(rng: random.Random, p_success: float) -> str:
    if rng.random() < 0.02:
        return rng.choice(["NOT_GRADEABLE", "ERROR"])
    if rng.random() < p_success:
        return "COMPLIANCE" if rng.random() < 0.7 else "PARTIAL"
    return "REFUSAL" if rng.random() < 0.9 else "HALLUCINATION_REFUSAL"


def rows() -> list[dict[str, object]]:
    rng = random.Random(21)
    difficulty = [rng.gauss(0.0, PROMPT_SD) for _ in range(PROMPTS)]
    out = []
    for model, (provider, family, total, active, rate) in MODELS.items():
        meta = {"model": model, "provider": provider, "family": family, "params_total_b": total,
                "params_active_b": "" if active is None else active}
        small = model in SMALL
        attacks = {a: s for a, s in ATTACKS.items() if not small or a in SMALL_ATTACKS}
        prompts = range(SMALL_PROMPTS if small else PROMPTS)
        base = intercept(rate, [s + difficulty[p] for s in attacks.values() for p in prompts]) if rate else 0.0
        for attack, shift in attacks.items():
            for p in prompts:
                chance = logistic(base + shift + difficulty[p]) if rate else 0.0
                out.append({**meta, "attack": attack, "prompt_id": f"h{p:03d}", "category": CATEGORIES[p % 8],
                            "benign": "false", "verdict": verdict(rng, chance)})
        for b in range(BENIGN):
            out.append({**meta, "attack": "direct", "prompt_id": f"b{b:03d}", "category": "benign",
                        "benign": "true", "verdict": "REFUSAL" if rng.random() < 0.08 else "COMPLIANCE"})
    return out


def main() -> None:
    data = rows()
    with FILE.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    print(f"wrote {len(data)} traces of {len(MODELS)} models to {FILE}")


if __name__ == "__main__":
    main()
